"""BevEvaluator with the visibility-aware LiDAR reference: only observed cells are scored."""

from __future__ import annotations

import numpy as np
import pytest
from eval_testutil import GRID, ORIGIN, cell, wall_scene

from lss_bev_ros.eval.evaluator import BevEvaluator


def prediction(*xy: tuple[float, float]) -> np.ndarray:
    """X x Y probabilities: 1 on the cells of the given points (m), 0 elsewhere."""
    p = np.zeros((GRID.nx, GRID.ny), np.float32)
    for x, y in xy:
        p[cell(x, y)] = 1.0
    return p


def wall_and_hidden_box() -> np.ndarray:
    """A correct prediction: the wall, and the box that stands unseen behind it."""
    pts = [(8.0, y) for y in np.arange(-3.0, 3.0, 0.5)]
    pts += [(x, y) for x in (10.2, 10.7) for y in (-0.8, -0.3, 0.2, 0.7)]
    return prediction(*pts)


def test_hidden_box_is_not_a_false_positive_under_visibility_reference() -> None:
    ev = BevEvaluator(GRID, "lidar_visibility", sensor_origin=ORIGIN)
    ev.add_points(1.0, wall_scene())
    (r,) = ev.add_grid(1.0, wall_and_hidden_box())
    assert r.confusion.fp == 0 and r.iou == pytest.approx(1.0)


def test_hidden_box_is_a_false_positive_under_plain_lidar_reference() -> None:
    ev = BevEvaluator(GRID, "lidar")
    ev.add_points(1.0, wall_scene())
    (r,) = ev.add_grid(1.0, wall_and_hidden_box())
    assert r.confusion.fp >= 8 and r.iou < 0.7


def test_prediction_in_observed_free_space_is_a_false_positive() -> None:
    ev = BevEvaluator(GRID, "lidar_visibility", sensor_origin=ORIGIN)
    ev.add_points(1.0, wall_scene())
    (r,) = ev.add_grid(1.0, prediction((6.5, 0.2)))
    assert r.confusion.fp == 1 and r.confusion.tp == 0


def test_observed_fraction_is_the_share_of_cells_scored() -> None:
    ev = BevEvaluator(GRID, "lidar_visibility", sensor_origin=ORIGIN)
    ev.add_points(1.0, wall_scene())
    (r,) = ev.add_grid(1.0, wall_and_hidden_box())
    assert 0.0 < r.observed_fraction < 0.2
    assert r.observed_fraction == pytest.approx(r.confusion.total / (GRID.nx * GRID.ny))
    assert r.mean_observed_fraction == pytest.approx(r.observed_fraction)


def test_origin_passed_per_cloud_is_used() -> None:
    ev = BevEvaluator(GRID, "lidar_visibility")
    ev.add_points(1.0, wall_scene(), origin=ORIGIN)
    (r,) = ev.add_grid(1.0, wall_and_hidden_box())
    assert r.iou == pytest.approx(1.0)


def test_visibility_reference_without_origin_is_refused() -> None:
    ev = BevEvaluator(GRID, "lidar_visibility")
    with pytest.raises(ValueError, match="origin"):
        ev.add_points(1.0, wall_scene())
