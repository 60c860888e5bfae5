"""Ray-cast spinning lidar against the synthetic world (flat ground + oriented boxes, numpy)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lss_bev_ros.data.render import Snapshot
from lss_bev_ros.data.world import CATEGORY_STYLE, GROUND_INTENSITY, World

_SURFACE_INTENSITY = np.array(
    [
        GROUND_INTENSITY["grass"],
        GROUND_INTENSITY["road"],
        GROUND_INTENSITY["sidewalk"],
        GROUND_INTENSITY["marking"],
    ],
    dtype=np.float32,
)
INSIDE_NUDGE_M = 0.03  # box hits are moved this far into the box (at most half the chord)


@dataclass
class LidarSweep:
    """One lidar sweep in the sensor frame."""

    points: np.ndarray  # P x 5 float32: x, y, z (m, lidar frame), intensity (0..255), ring
    box_index: np.ndarray  # P int: index of the box hit (into the snapshot), -1 for ground

    def counts(self, n_boxes: int) -> np.ndarray:
        """Number of points on each box (n_boxes,)."""
        hits = self.box_index[self.box_index >= 0]
        return np.bincount(hits, minlength=n_boxes)


def ray_box_intersect(
    origin: np.ndarray, dirs: np.ndarray, centers: np.ndarray, half: np.ndarray, yaws: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Slab test of R rays (shared `origin` 3, `dirs` R x 3) against M yawed boxes.

    Returns entry and exit distances (M x R); entry = inf where a ray misses a box or the box is
    behind the origin.
    """
    c, s = np.cos(yaws)[:, None], np.sin(yaws)[:, None]  # M x 1
    rel = origin[None, :2] - centers[:, :2]  # M x 2
    # Rotate into each box frame (rotation by -yaw).
    ox = c * rel[:, 0:1] + s * rel[:, 1:2]  # M x 1
    oy = -s * rel[:, 0:1] + c * rel[:, 1:2]
    oz = np.full_like(ox, origin[2]) - centers[:, 2:3]
    dx = c * dirs[None, :, 0] + s * dirs[None, :, 1]  # M x R
    dy = -s * dirs[None, :, 0] + c * dirs[None, :, 1]
    dz = np.broadcast_to(dirs[None, :, 2], dx.shape)
    t_near = np.zeros(dx.shape)
    t_far = np.full(dx.shape, np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        for o, d, hh in ((ox, dx, half[:, 0:1]), (oy, dy, half[:, 1:2]), (oz, dz, half[:, 2:3])):
            inv = 1.0 / d
            t1 = (-hh - o) * inv
            t2 = (hh - o) * inv
            lo = np.minimum(t1, t2)
            hi = np.maximum(t1, t2)
            # Rays parallel to a slab: inside it → no constraint, outside → miss.
            par = d == 0
            inside = np.abs(o) <= hh
            lo = np.where(par, np.where(inside, -np.inf, np.inf), lo)
            hi = np.where(par, np.where(inside, np.inf, -np.inf), hi)
            t_near = np.maximum(t_near, lo)
            t_far = np.minimum(t_far, hi)
    miss = (t_far < t_near) | (t_near <= 0)
    return np.where(miss, np.inf, t_near), t_far


def cast_lidar(world: World, snap: Snapshot, t: float, rng: np.random.Generator) -> LidarSweep:
    """Sweep of LIDAR_TOP at time `t` against the ground plane and the snapshot's boxes."""
    model = world.rig.lidar_model
    dirs_l, rings = model.ray_directions()  # R x 3 lidar frame
    T = world.sensor_pose(world.rig.lidar, t)  # lidar → global
    R, origin = T[:3, :3], T[:3, 3]
    dirs = dirs_l @ R.T  # global directions (unit)

    # Ground z = 0.
    with np.errstate(divide="ignore", invalid="ignore"):
        t_ground = np.where(dirs[:, 2] < -1e-9, -origin[2] / dirs[:, 2], np.inf)
    best = np.minimum(t_ground, model.max_range_m + 1e-6)
    hit_box = np.full(len(dirs), -1)
    t_exit = np.zeros(len(dirs))

    boxes = snap.boxes
    if len(boxes):
        reach = np.linalg.norm(boxes.centers[:, :2] - origin[:2], axis=1) - 0.5 * np.hypot(
            boxes.sizes[:, 0], boxes.sizes[:, 1]
        )
        cand = np.flatnonzero(reach < model.max_range_m)
        if len(cand):
            half = boxes.sizes[cand][:, [1, 0, 2]] / 2.0  # box frame: x along length
            t_in, t_out = ray_box_intersect(
                origin, dirs, boxes.centers[cand], half, boxes.yaws[cand]
            )
            j = np.argmin(t_in, axis=0)
            tj = t_in[j, np.arange(len(dirs))]
            closer = tj < best
            best = np.where(closer, tj, best)
            hit_box = np.where(closer, cand[j], -1)
            t_exit = np.where(closer, t_out[j, np.arange(len(dirs))], 0.0)

    valid = best <= model.max_range_m
    on_box = valid & (hit_box >= 0)
    # Move box hits slightly inside their box so containment tests are unambiguous.
    nudge = np.minimum(INSIDE_NUDGE_M, 0.5 * (t_exit - best))
    rng_m = np.where(on_box, best + nudge, best)
    pts_l = dirs_l * rng_m[:, None]

    intensity = np.zeros(len(dirs), dtype=np.float32)
    gmask = valid & ~on_box
    if gmask.any():
        xy = origin[None, :2] + dirs[gmask, :2] * best[gmask, None]
        intensity[gmask] = _SURFACE_INTENSITY[world.road.surface(xy)]
    if on_box.any():
        cats = [world.objects[i].category for i in boxes.index[hit_box[on_box]]]
        intensity[on_box] = np.array([CATEGORY_STYLE[c][2] for c in cats], dtype=np.float32)
    intensity[valid] *= rng.uniform(0.8, 1.2, size=int(valid.sum())).astype(np.float32)
    intensity = np.clip(np.round(intensity), 0, 255)

    pts = np.concatenate([pts_l[valid], intensity[valid, None], rings[valid, None]], axis=1).astype(
        np.float32
    )
    return LidarSweep(pts, hit_box[valid])
