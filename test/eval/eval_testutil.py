"""Hand-made LiDAR scenes for the evaluation tests."""

from __future__ import annotations

import numpy as np

from lss_bev_ros.conversions.grid import GridSpec

GRID = GridSpec(xmin=-10.0, ymin=-10.0, resolution=0.5, nx=60, ny=40)  # x -10..20, y -10..10 m
ORIGIN = (0.0, 0.0, 1.8)  # roof LiDAR, m


def cell(x: float, y: float) -> tuple[int, int]:
    ix, iy, inside = GRID.cell_of(np.array([x]), np.array([y]))
    assert inside[0]
    return int(ix[0]), int(iy[0])


def wall_scene() -> np.ndarray:
    """A wall at x = 8 m (y -3..3 m, 0.5..2 m high) and road returns in front of it (x 4.5..7.5,
    ahead of the ego body, whose own returns LidarFilter drops): P x 3.

    A box stands behind the wall at x 10..11 m, y -1..1 m; LiDAR cannot reach it, so it has no
    returns (that is what occlusion means)."""
    ys = np.arange(-3.0, 3.0, 0.1)
    zs = np.arange(0.5, 2.0, 0.25)
    wall = np.array([[8.0, y, z] for y in ys for z in zs])
    ground = np.array([[x, y, 0.0] for x in np.arange(4.5, 7.9, 0.5) for y in (-1.0, 0.0, 1.0)])
    return np.concatenate([wall, ground])
