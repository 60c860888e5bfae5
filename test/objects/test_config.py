"""``ObjectsConfig`` validation and ``parse_overrides`` (the benches' ``field=value`` option)."""

from __future__ import annotations

import pytest

from lss_bev_ros.objects.config import ObjectsConfig, parse_overrides


def test_overrides_are_typed_by_the_field_defaults() -> None:
    over = parse_overrides("overlap_iou=1, confirm_hits=3,mode=bev,fuse_blob_position=false")
    assert over == {"overlap_iou": 1.0, "confirm_hits": 3, "mode": "bev",
                    "fuse_blob_position": False}
    assert isinstance(over["overlap_iou"], float) and isinstance(over["confirm_hits"], int)
    cfg = ObjectsConfig(**over)  # type: ignore[arg-type]
    assert cfg.overlap_iou == 1.0 and cfg.mode == "bev" and not cfg.fuse_blob_position
    assert parse_overrides("") == {}


@pytest.mark.parametrize("text", ["nope=1", "bev_classes=car", "overlap_iou", "confirm_hits=x",
                                  "fuse_blob_position=maybe"])
def test_bad_overrides_name_the_problem(text: str) -> None:
    with pytest.raises(ValueError):
        parse_overrides(text)


@pytest.mark.parametrize("value", [-0.1, 1.5])
def test_overlap_iou_outside_0_1_is_refused(value: float) -> None:
    with pytest.raises(ValueError, match="overlap_iou"):
        ObjectsConfig(overlap_iou=value)
