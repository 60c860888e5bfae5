"""One ground-truth colour table: bags (lss-bev-bag convert) and the live player agree."""

from __future__ import annotations

from lss_bev_ros.visualization import CATEGORY_RGBA, category_rgba
from rosbag_tools.convert import box_marker


def test_first_matching_prefix_wins_and_unknown_is_grey() -> None:
    assert category_rgba("vehicle.car") == dict(CATEGORY_RGBA)["vehicle.car"]
    assert category_rgba("vehicle.truck") == dict(CATEGORY_RGBA)["vehicle"]
    assert category_rgba("human.pedestrian.adult") == dict(CATEGORY_RGBA)["human"]
    assert category_rgba("movable_object.barrier")[:3] == (0.6, 0.6, 0.6)


def test_bag_markers_use_the_table() -> None:
    m = box_marker(1_000_000_000, "vehicle.truck", 0, (1.0, 2.0, 0.5), (1.0, 0, 0, 0),
                   (5.0, 2.0, 2.0))
    assert (m.color.r, m.color.g, m.color.b, m.color.a) == category_rgba("vehicle.truck")
