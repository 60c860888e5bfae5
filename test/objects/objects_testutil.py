"""Shared helpers of the objects tests: the synthetic rig, boxes projected into its cameras and
BEV grids painted from box footprints (real geometry, no mocks)."""

from __future__ import annotations

import numpy as np

from lss_bev_ros.calibration import CameraCalibration, RigCalibration
from lss_bev_ros.conversions import GridSpec
from lss_bev_ros.data.world import nominal_rig
from lss_bev_ros.detection.types import Detections

GRID = GridSpec(-50.0, -50.0, 0.5, 200, 200)
CAR = (4.5, 1.9, 1.6)  # length, width, height m


def synth_rig() -> RigCalibration:
    """The synthetic generator's nominal six-camera rig as a RigCalibration."""
    r = nominal_rig()
    return RigCalibration(tuple(
        CameraCalibration(c.channel, c.width, c.height, c.intrinsic, c.rotation, c.translation)
        for c in r.cameras
    ))


def box_corners(x: float, y: float, yaw: float, size=CAR) -> np.ndarray:
    """8 x 3 corners (base_link) of a box standing on the ground."""
    length, width, height = size
    xs = length / 2 * np.array([1, 1, 1, 1, -1, -1, -1, -1])
    ys = width / 2 * np.array([1, -1, -1, 1, 1, -1, -1, 1])
    zs = height * np.array([1, 1, 0, 0, 1, 1, 0, 0])
    c, s = np.cos(yaw), np.sin(yaw)
    return np.stack([c * xs - s * ys + x, s * xs + c * ys + y, zs], axis=1)


def project_box(cam: CameraCalibration, corners: np.ndarray) -> np.ndarray | None:
    """Axis-aligned image box (x1, y1, x2, y2) of the corners, None when not fully in front or
    mostly outside the image."""
    pc = (corners - cam.translation) @ cam.rotation  # base -> optical
    if (pc[:, 2] < 0.5).any():
        return None
    uv = (cam.intrinsics @ pc.T).T
    uv = uv[:, :2] / uv[:, 2:3]
    x1, y1 = uv.min(0)
    x2, y2 = uv.max(0)
    cx1, cy1 = max(x1, 0.0), max(y1, 0.0)
    cx2, cy2 = min(x2, cam.width), min(y2, cam.height)
    if cx2 - cx1 < 0.5 * (x2 - x1) or cy2 - cy1 < 0.5 * (y2 - y1):
        return None
    return np.array([cx1, cy1, cx2, cy2])


def detections_for(rig: RigCalibration, boxes: list[tuple[float, float, float]],
                   cls: int = 0, conf: float = 0.9) -> dict[str, Detections]:
    """Per camera, the projected boxes of cars at (x, y, yaw) base_link."""
    out = {}
    for cam in rig.cameras:
        xyxy = [b for b in (project_box(cam, box_corners(*p)) for p in boxes) if b is not None]
        out[cam.name] = Detections(np.array(xyxy).reshape(-1, 4), np.full(len(xyxy), conf),
                                   np.full(len(xyxy), cls), (cam.height, cam.width))
    return out


def painted_grid(boxes: list[tuple[float, float, float]], p: float = 0.9,
                 size=CAR) -> np.ndarray:
    """nx x ny probability grid [ix, iy] with ``p`` inside each box footprint, 0.02 elsewhere."""
    xs = GRID.xmin + (np.arange(GRID.nx) + 0.5) * GRID.resolution
    ys = GRID.ymin + (np.arange(GRID.ny) + 0.5) * GRID.resolution
    X, Y = np.meshgrid(xs, ys, indexing="ij")
    prob = np.full((GRID.nx, GRID.ny), 0.02, np.float32)
    for x, y, yaw in boxes:
        c, s = np.cos(yaw), np.sin(yaw)
        lx = c * (X - x) + s * (Y - y)
        ly = -s * (X - x) + c * (Y - y)
        prob[(np.abs(lx) <= size[0] / 2) & (np.abs(ly) <= size[1] / 2)] = p
    return prob
