"""BEV probability map <-> nav_msgs/OccupancyGrid data.

The LSS output is indexed ``bev[ix, iy]`` (ix along base_link x / forward, iy along y / left, both
from the grid's lower bound). OccupancyGrid data is row-major with rows along y and columns along
x, origin at the (xmin, ymin) cell corner, so ``data[iy * width + ix]`` = ``bev[ix, iy]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lss_bev_ros.conversions.errors import ConversionError


class GridConversionError(ConversionError):
    """OccupancyGrid data does not match its declared size."""


@dataclass(frozen=True)
class GridSpec:
    """Square-cell BEV grid in ``frame_id`` (metres)."""

    xmin: float = -50.0
    ymin: float = -50.0
    resolution: float = 0.5  # metres per cell
    nx: int = 200  # cells along x (OccupancyGrid width)
    ny: int = 200  # cells along y (OccupancyGrid height)
    frame_id: str = "base_link"

    @classmethod
    def from_bounds(cls, xbound, ybound, frame_id: str = "base_link") -> GridSpec:
        """From LSS-style bounds ``(lo, hi, step)``."""
        if abs(xbound[2] - ybound[2]) > 1e-9:
            raise ValueError("OccupancyGrid needs square cells")
        nx = round((xbound[1] - xbound[0]) / xbound[2])
        ny = round((ybound[1] - ybound[0]) / ybound[2])
        return cls(float(xbound[0]), float(ybound[0]), float(xbound[2]), nx, ny, frame_id)

    def cell_of(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Metric points -> (ix, iy, inside mask)."""
        ix = np.floor((np.asarray(x) - self.xmin) / self.resolution).astype(np.int64)
        iy = np.floor((np.asarray(y) - self.ymin) / self.resolution).astype(np.int64)
        inside = (ix >= 0) & (ix < self.nx) & (iy >= 0) & (iy < self.ny)
        return ix, iy, inside


def probability_to_occupancy(
    prob_xy: np.ndarray, visible_xy: np.ndarray | None = None
) -> np.ndarray:
    """nx x ny probabilities (0..1, indexed [ix, iy]) -> int8 row-major OccupancyGrid data.

    Cells where ``visible_xy`` is False get -1 (unknown).
    """
    p = np.asarray(prob_xy, dtype=np.float32)
    occ = np.rint(np.clip(np.nan_to_num(p, nan=0.0), 0.0, 1.0) * 100.0).astype(np.int8)
    if visible_xy is not None:
        occ = np.where(np.asarray(visible_xy, dtype=bool), occ, np.int8(-1))
    return np.ascontiguousarray(occ.T).reshape(-1)


def occupancy_to_probability(data, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """OccupancyGrid data -> (nx x ny probabilities indexed [ix, iy], nx x ny known mask).

    Raises :class:`GridConversionError` when the data does not hold ``width * height`` cells.
    """
    if width <= 0 or height <= 0:
        raise GridConversionError(f"grid is {width} x {height} cells")
    try:
        arr = np.asarray(data, dtype=np.int8).reshape(-1)
    except (TypeError, ValueError, OverflowError) as exc:
        raise GridConversionError(f"grid data is not int8 cells: {exc}") from exc
    if arr.size != width * height:
        raise GridConversionError(f"grid data has {arr.size} cells, expected {width} x {height}")
    grid = arr.reshape(height, width).T
    known = grid >= 0
    return np.where(known, grid.astype(np.float32) / 100.0, 0.0), known
