"""Lifting 2D boxes to the ground plane: geometry cues, BEV ray range, blobs."""

from __future__ import annotations

import numpy as np
import pytest
from objects_testutil import GRID, box_corners, painted_grid, project_box, synth_rig

from lss_bev_ros.objects.classes import prior
from lss_bev_ros.objects.config import ObjectsConfig
from lss_bev_ros.objects.lift import find_blobs, find_peaks, fuse_ranges, lift_box

CFG = ObjectsConfig()


def _lift(x: float, y: float, yaw: float = 0.0, prob=None, cam: str = "CAM_FRONT"):
    c = synth_rig().camera(cam)
    box = project_box(c, box_corners(x, y, yaw))
    blobs = find_blobs(prob, GRID, CFG) if prob is not None else None
    return lift_box(c, box, prior("car"), prob, blobs, GRID, CFG, prob is not None)


def test_ground_plane_range_of_a_car_ahead_is_within_half_a_metre() -> None:
    lift = _lift(20.0, 0.5)
    assert set(lift.ranges) == {"ground", "height"}
    np.testing.assert_allclose(lift.position, [20.0, 0.5], atol=0.5)


def test_range_variance_grows_with_distance() -> None:
    assert _lift(40.0, 0.0).range_var > 3 * _lift(12.0, 0.0).range_var


def test_bev_blob_on_the_ray_pulls_the_range_to_it() -> None:
    # the grid shows the car 2 m further than the image geometry: the fused range moves there
    lift = _lift(18.0, 0.0, prob=painted_grid([(20.0, 0.0, 0.0)]))
    bev_x = lift.origin[0] + lift.ranges["bev"][0] * lift.direction[0]
    assert abs(bev_x - 20.0) < 0.5
    assert lift.range > lift.ranges["ground"][0] + 0.3


def test_bev_blob_outside_the_gate_is_ignored() -> None:
    lift = _lift(18.0, 0.0, prob=painted_grid([(35.0, 0.0, 0.0)]))
    assert "bev" not in lift.ranges


def test_box_above_the_horizon_without_bev_has_no_range() -> None:
    c = synth_rig().camera("CAM_FRONT")
    v = c.intrinsics[1, 2] - 50.0  # well above the principal point: ray never meets the ground
    box = np.array([800.0, v - 40.0, 840.0, v])
    assert lift_box(c, box, prior("car"), None, None, GRID, CFG, False) is None


def test_inverse_variance_fusion_weights_the_precise_cue() -> None:
    r, v = fuse_ranges({"a": (10.0, 1.0), "b": (20.0, 9.0)})
    assert r == pytest.approx(11.0) and v == pytest.approx(0.9)


def test_blob_gives_footprint_centre_and_heading() -> None:
    bm = find_blobs(painted_grid([(12.0, -6.0, 0.5)]), GRID, CFG)
    (blob,) = bm.blobs.values()
    np.testing.assert_allclose(blob.centre, [12.0, -6.0], atol=0.3)
    assert abs(blob.yaw - 0.5) < 0.15
    assert 3.8 < blob.length < 5.2 and 1.4 < blob.width < 2.6


def test_two_touching_cars_give_two_peaks() -> None:
    prob = painted_grid([(10.0, 8.0, 0.0), (14.6, 8.0, 0.0)])
    bm = find_blobs(prob, GRID, CFG)
    assert len(bm.blobs) == 1
    peaks = find_peaks(prob, bm, GRID, 4.45 * 1.85, 1.5)
    xs = sorted(p.centre[0] for p in peaks)
    assert len(peaks) == 2 and abs(xs[0] - 10.0) < 1.0 and abs(xs[1] - 14.6) < 1.0
