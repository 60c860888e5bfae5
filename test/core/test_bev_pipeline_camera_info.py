"""camera_info_error: what makes a CameraInfo unusable (plain pytest, no ROS)."""

from __future__ import annotations

import pytest

from lss_bev_ros.bev_pipeline import camera_info_error

GOOD = [1266.4, 0.0, 816.3, 0.0, 1266.4, 491.5, 0.0, 0.0, 1.0]


def test_a_nuscenes_camera_info_is_valid() -> None:
    assert camera_info_error(GOOD, 1600, 900) is None


@pytest.mark.parametrize(("k", "size", "why"), [
    ([*GOOD[:8], 0.0], (1600, 900), "last row"),
    ([float("nan"), *GOOD[1:]], (1600, 900), "not finite"),
    ([0.0, *GOOD[1:]], (1600, 900), "focal"),
    ([*GOOD[:2], -1e6, *GOOD[3:]], (1600, 900), "principal point"),
    (GOOD, (40000, 40000), "size"),
    (GOOD, (0, 900), "size"),
    (GOOD[:8], (1600, 900), "9"),
])
def test_invalid_camera_infos_are_named(k, size, why) -> None:
    err = camera_info_error(k, *size)
    assert err is not None and why in err
