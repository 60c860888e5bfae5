"""Object boxes drawn over the BEV picture (lss_bev_ros.visualization.draw_bev_objects): where
they land, which way they face, and that they carry their track id."""

from __future__ import annotations

import math

import numpy as np

from lss_bev_ros.conversions.objects import CLASS_COLORS
from lss_bev_ros.visualization import colorize_bev, draw_bev_objects

CAR_RGB = tuple(int(255 * v) for v in CLASS_COLORS["car"])


def _drawn(obj: dict, scale: int = 2) -> np.ndarray:
    """Pixels (row, col) that the overlay changed on an empty grid picture."""
    base = colorize_bev(np.zeros((200, 200), np.float32), None, scale=scale, ego_size_m=None)
    img = draw_bev_objects(base.copy(), [obj], scale=scale)
    return np.argwhere((img != base).any(axis=2))


def test_car_ahead_and_left_is_drawn_above_and_left_of_the_ego():
    rows_cols = _drawn({"x": 15.0, "y": 5.0, "yaw": 0.0, "length": 4.5, "width": 1.9,
                        "label": "car", "id": -1})
    # display: forward up, left on the left; ego (0, 0) at row 200, col 200 with scale 2
    assert rows_cols[:, 0].min() >= 200 - 2 * (15 + 2.25) / 0.5 - 2
    assert rows_cols[:, 0].max() <= 200 - 2 * (15 - 2.25) / 0.5 + 2
    assert rows_cols[:, 1].max() < 200  # left of the ego
    assert abs(rows_cols[:, 1].mean() - (200 - 2 * 5 / 0.5)) < 2


def test_a_car_facing_left_is_wider_than_tall_and_has_its_front_on_the_left():
    base = colorize_bev(np.zeros((200, 200), np.float32), None, scale=2, ego_size_m=None)
    img = draw_bev_objects(base.copy(), [{"x": 0.0, "y": 20.0, "yaw": math.pi / 2,
                                          "length": 4.5, "width": 1.9, "label": "car",
                                          "id": -1}], scale=2)
    rc = np.argwhere((img != base).any(axis=2))
    height, width = np.ptp(rc[:, 0]), np.ptp(rc[:, 1])
    assert width > 1.5 * height  # 4.5 m along y, 1.9 m along x
    white = np.argwhere((img > 150).all(axis=2))  # anti-aliased white
    assert white[:, 1].mean() < rc[:, 1].mean()  # front edge (white) towards +y = left
    colour = np.argwhere(np.abs(img.astype(int) - CAR_RGB).sum(axis=2) < 60)
    assert len(colour) > 20  # the outline in the car colour


def test_tracked_objects_carry_their_id_text():
    plain = _drawn({"x": 10.0, "y": 0.0, "yaw": 0.0, "length": 4.5, "width": 1.9,
                    "label": "car", "id": -1})
    with_id = _drawn({"x": 10.0, "y": 0.0, "yaw": 0.0, "length": 4.5, "width": 1.9,
                      "label": "car", "id": 12})
    extra = len(with_id) - len(plain)
    assert extra > 20  # the "#12" glyphs, right of the box
    assert with_id[:, 1].max() > plain[:, 1].max() + 10


def test_non_finite_objects_are_skipped():
    assert len(_drawn({"x": math.nan, "y": 0.0, "yaw": 0.0, "length": 4.5, "width": 1.9,
                       "label": "car", "id": 1})) == 0
