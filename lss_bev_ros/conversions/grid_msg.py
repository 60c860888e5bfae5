"""Fill ``nav_msgs/OccupancyGrid`` and ``sensor_msgs/Image`` messages from numpy results.

Duck-typed: the functions fill a message object the caller created (an rclpy message, or any
object with the same attributes), so they are testable without ROS.
"""

from __future__ import annotations

import array
import math
from typing import Any

import numpy as np

from lss_bev_ros.conversions.grid import GridConversionError, GridSpec, occupancy_to_probability
from lss_bev_ros.conversions.image import rgb_to_image_bytes


def fill_occupancy_grid(msg: Any, grid: GridSpec, data: np.ndarray, stamp: Any) -> Any:
    """``msg`` <- grid geometry + ``data`` (``ny * nx`` int8 cells, row-major along x, -1
    unknown; see :func:`~lss_bev_ros.conversions.grid.probability_to_occupancy`). ``stamp`` is
    the input's header stamp object, copied as is (also as ``map_load_time``)."""
    cells = np.asarray(data, dtype=np.int8).reshape(-1)
    if cells.size != grid.nx * grid.ny:
        raise GridConversionError(f"{cells.size} cells for a {grid.nx} x {grid.ny} grid")
    msg.header.stamp = stamp
    msg.header.frame_id = grid.frame_id
    msg.info.map_load_time = stamp
    msg.info.resolution = float(grid.resolution)
    msg.info.width, msg.info.height = int(grid.nx), int(grid.ny)
    msg.info.origin.position.x = float(grid.xmin)
    msg.info.origin.position.y = float(grid.ymin)
    msg.info.origin.orientation.w = 1.0
    msg.data = array.array("b", cells.tobytes())
    return msg


def fill_rgb8_image(msg: Any, rgb: np.ndarray, stamp: Any, frame_id: str) -> Any:
    """``msg`` (sensor_msgs/Image) <- ``H x W x 3`` uint8 RGB as ``rgb8``."""
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.height, msg.width, msg.step, msg.data = rgb_to_image_bytes(rgb)
    msg.encoding = "rgb8"
    return msg


def occupancy_grid_to_probability(msg: Any, expected: GridSpec) -> tuple[np.ndarray, np.ndarray]:
    """``nav_msgs/OccupancyGrid`` -> (X x Y probabilities, X x Y known) indexed [ix, iy],
    after checking its frame, size, resolution and origin against ``expected``. Raises
    :class:`GridConversionError` naming both geometries when they differ."""
    g, info = expected, msg.info
    ok = (msg.header.frame_id == g.frame_id and int(info.width) == g.nx
          and int(info.height) == g.ny
          and math.isclose(info.resolution, g.resolution, abs_tol=1e-6)
          and math.isclose(info.origin.position.x, g.xmin, abs_tol=1e-4)
          and math.isclose(info.origin.position.y, g.ymin, abs_tol=1e-4))
    if not ok:
        raise GridConversionError(
            f"grid {info.width}x{info.height} @ {info.resolution} m, origin "
            f"({info.origin.position.x}, {info.origin.position.y}) in "
            f"{msg.header.frame_id!r}; expected {g.nx}x{g.ny} @ {g.resolution} m, origin "
            f"({g.xmin}, {g.ymin}) in {g.frame_id!r}")
    return occupancy_to_probability(msg.data, g.nx, g.ny)
