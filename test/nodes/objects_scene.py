"""A synthetic scene for the objects_node tests (not a test module): a car driving past the
moving ego, seen by the synthetic generator's real six-camera rig. Its 2D boxes come from
projecting the 3D box through each camera (lss_bev_ros.detection.gt.project_silhouette, the
same projection the 2D ground truth uses), its BEV grid from the box footprint."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lss_bev_ros.calibration import (
    NUSCENES_CAMERAS,
    CameraCalibration,
    RigCalibration,
    save_rig_yaml,
)
from lss_bev_ros.conversions import GridSpec
from lss_bev_ros.data.world import nominal_rig
from lss_bev_ros.detection.gt import project_silhouette

GRID = GridSpec()
CAR = (4.5, 1.9, 1.6)  # length, width, height, m


def synth_rig() -> RigCalibration:
    """The synthetic generator's nominal rig (1600 x 900 images) in NUSCENES_CAMERAS order."""
    r = nominal_rig()
    cams = {c.channel: CameraCalibration(c.channel, c.width, c.height, c.intrinsic, c.rotation,
                                         c.translation) for c in r.cameras}
    return RigCalibration(tuple(cams[n] for n in NUSCENES_CAMERAS))


def write_rig(path: Path) -> Path:
    return save_rig_yaml(synth_rig(), path)


@dataclass(frozen=True)
class Scene:
    """Ego drives straight at ``ego_speed`` along ``ego_yaw`` from ``ego_start`` (map); the car
    moves at a constant velocity relative to base_link from ``car_start`` (so at a constant
    world velocity as well). Seconds from ``t0`` (stamp of frame 0)."""

    t0: float = 1000.0
    ego_start: tuple[float, float] = (100.0, 50.0)
    ego_yaw: float = 0.3
    ego_speed: float = 4.0
    car_start: tuple[float, float] = (18.0, 3.0)  # base_link at t0
    car_rel_velocity: tuple[float, float] = (-2.0, -6.0)  # base_link, m/s

    def ego(self, t: float) -> tuple[float, float, float]:
        """map -> base_link (x, y, yaw) at stamp ``t``."""
        d = self.ego_speed * (t - self.t0)
        return (self.ego_start[0] + d * math.cos(self.ego_yaw),
                self.ego_start[1] + d * math.sin(self.ego_yaw), self.ego_yaw)

    def car_base(self, t: float) -> tuple[float, float, float]:
        """Car centre (x, y) and yaw in base_link at ``t`` (heading = world motion)."""
        dt = t - self.t0
        x = self.car_start[0] + self.car_rel_velocity[0] * dt
        y = self.car_start[1] + self.car_rel_velocity[1] * dt
        vw = self.world_velocity()
        yaw = math.atan2(vw[1], vw[0]) - self.ego_yaw
        return x, y, yaw

    def world_velocity(self) -> tuple[float, float]:
        """Car velocity over ground in map (m/s)."""
        vx = self.car_rel_velocity[0] + self.ego_speed
        vy = self.car_rel_velocity[1]
        c, s = math.cos(self.ego_yaw), math.sin(self.ego_yaw)
        return c * vx - s * vy, s * vx + c * vy

    def car_map(self, t: float) -> tuple[float, float]:
        ex, ey, eyaw = self.ego(t)
        x, y, _ = self.car_base(t)
        c, s = math.cos(eyaw), math.sin(eyaw)
        return ex + c * x - s * y, ey + s * x + c * y


def box_corners(x: float, y: float, yaw: float, size=CAR) -> np.ndarray:
    """3 x 8 corners (base_link) of a box standing on the ground plane."""
    length, width, height = size
    xs = length / 2 * np.array([1, 1, 1, 1, -1, -1, -1, -1])
    ys = width / 2 * np.array([1, -1, -1, 1, 1, -1, -1, 1])
    zs = height * np.array([1, 1, 0, 0, 1, 1, 0, 0])
    c, s = math.cos(yaw), math.sin(yaw)
    return np.stack([c * xs - s * ys + x, s * xs + c * ys + y, zs])


def project(cam: CameraCalibration, corners: np.ndarray, min_in_image: float = 0.25,
            min_size_px: float = 8.0) -> np.ndarray | None:
    """Axis-aligned box (x1, y1, x2, y2) pixels of the visible silhouette, or None."""
    pc = cam.rotation.T @ (corners - cam.translation[:, None])  # base_link -> optical
    sil = project_silhouette(pc, cam.intrinsics, (cam.height, cam.width))
    if sil is None or sil[1] < min_in_image:
        return None
    poly = sil[0]
    (x1, y1), (x2, y2) = poly.min(axis=0), poly.max(axis=0)
    if x2 - x1 < min_size_px or y2 - y1 < min_size_px:
        return None
    return np.array([x1, y1, x2, y2])


def boxes_per_camera(rig: RigCalibration, car: tuple[float, float, float],
                     rng: np.random.Generator | None = None, noise_px: float = 1.5
                     ) -> dict[str, np.ndarray]:
    """Camera name -> K x 4 boxes (K = 0 or 1) of the car at (x, y, yaw) base_link."""
    out = {}
    corners = box_corners(*car)
    for cam in rig.cameras:
        b = project(cam, corners)
        if b is not None and rng is not None:
            b = b + rng.normal(0.0, noise_px, 4)
        out[cam.name] = np.zeros((0, 4)) if b is None else b[None]
    return out


def footprint_grid(cars: list[tuple[float, float, float]], p: float = 0.9,
                   size=CAR) -> np.ndarray:
    """nx x ny probabilities [ix, iy]: ``p`` inside each car footprint, 0.02 elsewhere."""
    xs = GRID.xmin + (np.arange(GRID.nx) + 0.5) * GRID.resolution
    ys = GRID.ymin + (np.arange(GRID.ny) + 0.5) * GRID.resolution
    X, Y = np.meshgrid(xs, ys, indexing="ij")
    prob = np.full((GRID.nx, GRID.ny), 0.02, np.float32)
    for x, y, yaw in cars:
        c, s = math.cos(yaw), math.sin(yaw)
        lx = c * (X - x) + s * (Y - y)
        ly = -s * (X - x) + c * (Y - y)
        prob[(np.abs(lx) <= size[0] / 2) & (np.abs(ly) <= size[1] / 2)] = p
    return prob
