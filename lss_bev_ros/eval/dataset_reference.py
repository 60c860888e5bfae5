"""Visibility-aware LiDAR references for nuScenes-schema samples (offline, ROS-free).

The same reference as ``eval_node`` with ``reference: lidar_visibility`` builds online, for the
key frames of a dataset (real nuScenes or ``lss-bev-synth``), so training benches can score a
model against what LiDAR observed as well as against the GT footprints::

    pts, origin = lidar_points_ego(nusc, sample_token)  # P x 3 ego (base_link) m, (x, y, z) m
    refs = visibility_references(nusc, tokens, cfg.grid)  # [(occupied, observed)] X x Y bool
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from lss_bev_ros.conversions.grid import GridSpec
from lss_bev_ros.eval.reference import LidarFilter, lidar_visibility

Reference = tuple[np.ndarray, np.ndarray]  # (occupied, observed), X x Y bool indexed [ix, iy]


def _transform(rotation: Sequence[float], translation: Sequence[float]) -> np.ndarray:
    """4 x 4 from a nuScenes quaternion (w, x, y, z) and translation (m)."""
    from pyquaternion import Quaternion

    T = np.eye(4)
    T[:3, :3] = Quaternion(list(rotation)).rotation_matrix
    T[:3, 3] = np.asarray(translation, dtype=np.float64)
    return T


def lidar_points_ego(nusc: Any, sample_token: str) -> tuple[np.ndarray, np.ndarray]:
    """LIDAR_TOP returns of a sample in its ego frame (P x 3, m) and the sensor origin (3, m)."""
    from nuscenes.utils.data_classes import LidarPointCloud

    sample = nusc.get("sample", sample_token)
    sd = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
    cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
    pts = LidarPointCloud.from_file(nusc.get_sample_data_path(sd["token"])).points[:3]
    T = _transform(cs["rotation"], cs["translation"])
    ego = (T[:3, :3] @ pts.astype(np.float64) + T[:3, 3:4]).T
    return ego, T[:3, 3].copy()


def grid_spec(grid: Any) -> GridSpec:
    """GridSpec of an ``lss.config.GridConfig`` (same cells as the model output)."""
    return GridSpec.from_bounds(grid.xbound, grid.ybound)


def visibility_references(
    nusc: Any,
    sample_tokens: Sequence[str],
    grid: Any,
    filt: LidarFilter | None = None,
) -> list[Reference]:
    """``(occupied, observed)`` per sample (see :func:`.reference.lidar_visibility`)."""
    filt = filt if filt is not None else LidarFilter()
    spec = grid_spec(grid)
    out: list[Reference] = []
    for tok in sample_tokens:
        pts, origin = lidar_points_ego(nusc, tok)
        out.append(lidar_visibility(pts, spec, origin, filt))
    return out
