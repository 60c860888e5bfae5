"""Visibility-aware LiDAR reference: ray-cast free space on hand-made scenes."""

from __future__ import annotations

import numpy as np
import pytest
from eval_testutil import GRID, ORIGIN, cell, wall_scene

from lss_bev_ros.eval.reference import LidarFilter, ReferenceKind, lidar_visibility


def test_wall_cells_are_observed_occupied() -> None:
    occupied, observed = lidar_visibility(wall_scene(), GRID, ORIGIN)
    for y in (-2.0, 0.0, 2.0):
        assert occupied[cell(8.0, y)] and observed[cell(8.0, y)]


def test_cells_between_sensor_and_wall_are_observed_free() -> None:
    occupied, observed = lidar_visibility(wall_scene(), GRID, ORIGIN)
    for x in (5.0, 6.5, 7.5):
        assert observed[cell(x, 0.2)] and not occupied[cell(x, 0.2)]


def test_box_cells_behind_the_wall_are_unknown_not_free() -> None:
    _, observed = lidar_visibility(wall_scene(), GRID, ORIGIN)
    for x in (10.2, 10.7):
        for y in (-0.8, 0.0, 0.8):
            assert not observed[cell(x, y)]


def test_cells_beside_the_beams_are_unknown() -> None:
    _, observed = lidar_visibility(wall_scene(), GRID, ORIGIN)
    assert not observed[cell(0.0, 8.0)] and not observed[cell(-6.0, 0.0)]


def test_a_beam_passing_over_a_car_roof_does_not_free_the_car_cells() -> None:
    # a return on a facade 9.5 m ahead at 1.7 m: the beam stays ~1.75 m high, over a 1.5 m car
    # standing at x = 5 m, which it never touches
    over = np.array([[9.5, 0.0, 1.7]])
    _, observed = lidar_visibility(over, GRID, ORIGIN, LidarFilter(free_z_max=1.0))
    assert not observed[cell(5.0, 0.0)]


def test_a_beam_low_enough_to_hit_a_car_frees_the_cells_it_crosses() -> None:
    # a ground return 9.5 m ahead: the beam is below 1 m from x ~ 4.3 m on
    _, observed = lidar_visibility(np.array([[9.5, 0.0, 0.0]]), GRID, ORIGIN)
    assert observed[cell(5.0, 0.0)] and observed[cell(7.0, 0.0)]
    assert not observed[cell(2.0, 0.0)]  # still 1.4 m high there: it could pass over a car


def test_ground_return_cell_is_observed_free() -> None:
    occupied, observed = lidar_visibility(np.array([[6.2, -4.1, 0.05]]), GRID, ORIGIN)
    assert observed[cell(6.2, -4.1)] and not occupied[cell(6.2, -4.1)]


def test_empty_cloud_observes_nothing() -> None:
    occupied, observed = lidar_visibility(np.zeros((0, 3)), GRID, ORIGIN)
    assert not occupied.any() and not observed.any()


def test_non_finite_origin_is_refused() -> None:
    with pytest.raises(ValueError, match="origin"):
        lidar_visibility(wall_scene(), GRID, (0.0, float("nan"), 1.8))


def test_lidar_visibility_kind_parses_and_needs_lidar() -> None:
    kind = ReferenceKind.parse("lidar_visibility")
    assert kind == ReferenceKind.LIDAR_VISIBILITY == 3
    assert kind.needs_lidar and not kind.needs_boxes and kind.scores_observed_only
