"""Lift 2D detections to the ground plane of base_link, with BEV evidence.

Per detection (pixels of the original image, camera calibration K, R, t camera(optical) ->
base_link) three range cues along the viewing ray through the box's horizontal centre:

* ``ground``: the ray through the box's bottom centre hits the ground plane ``z = ground_z``; the
  hit is the near edge of the object, so half the class footprint is added. Variance from the
  bottom-edge pixel error (range^2 / (f * h) law) and the flat-ground error.
* ``height``: the class height prior over the box's pixel height (pinhole), when neither the top
  nor the bottom edge is truncated.
* ``bev``: the BEV probability along the horizontal ray: the run of cells above threshold (the
  blob the ray hits) closest to the geometric range, its probability-weighted mean range.

They are fused by inverse variance. Blobs (connected components of the thresholded grid) give
footprint, heading and a second position measurement.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from lss_bev_ros.calibration import CameraCalibration
from lss_bev_ros.conversions import GridSpec
from lss_bev_ros.objects.classes import ClassPrior
from lss_bev_ros.objects.config import ObjectsConfig


@dataclass(frozen=True)
class Blob:
    """One connected component of the thresholded BEV grid, in base_link."""

    label: int  # 1-based component label
    cells: int  # number of cells
    mass: float  # sum of probabilities
    centre: np.ndarray  # 2, probability-weighted centroid (x, y) m
    cov: np.ndarray  # 2 x 2, spatial covariance of its cells, m^2
    yaw: float  # heading of the major axis, rad in (-pi/2, pi/2]
    length: float  # extent along the major axis, m
    width: float  # extent along the minor axis, m
    elongation: float  # major / minor std
    peak: float  # max probability
    mean_p: float  # mean probability

    @property
    def area(self) -> float:
        return self.length * self.width


@dataclass(frozen=True)
class BlobMap:
    """Blobs of one grid plus the label image (nx x ny int32, 0 = background)."""

    labels: np.ndarray
    blobs: dict[int, Blob]


def find_blobs(prob: np.ndarray, grid: GridSpec, cfg: ObjectsConfig,
               known: np.ndarray | None = None) -> BlobMap:
    """Connected components (8-connected) of ``prob > bev_threshold`` (nx x ny, [ix, iy])."""
    mask = np.asarray(prob) > cfg.bev_threshold
    if known is not None:
        mask &= np.asarray(known, dtype=bool)
    labels, n = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    blobs: dict[int, Blob] = {}
    if n == 0:
        return BlobMap(labels.astype(np.int32), blobs)
    ix, iy = np.nonzero(labels)
    lab = labels[ix, iy]
    p = np.asarray(prob, dtype=np.float64)[ix, iy]
    xs = grid.xmin + (ix + 0.5) * grid.resolution
    ys = grid.ymin + (iy + 0.5) * grid.resolution
    order = np.argsort(lab, kind="stable")
    lab, p, xs, ys = lab[order], p[order], xs[order], ys[order]
    starts = np.searchsorted(lab, np.arange(1, n + 1))
    ends = np.searchsorted(lab, np.arange(1, n + 1), side="right")
    cell_var = grid.resolution**2 / 12.0
    for k in range(n):
        s, e = starts[k], ends[k]
        if e - s < cfg.bev_min_cells:
            continue
        w = p[s:e]
        pts = np.stack([xs[s:e], ys[s:e]], axis=1)
        c = (w[:, None] * pts).sum(0) / w.sum()
        d = pts - c
        cov = (w[:, None, None] * d[:, :, None] * d[:, None, :]).sum(0) / w.sum()
        cov = cov + np.eye(2) * cell_var
        evals, evecs = np.linalg.eigh(cov)  # ascending
        major = evecs[:, 1]
        yaw = float(np.arctan2(major[1], major[0]))
        if yaw > np.pi / 2:
            yaw -= np.pi
        elif yaw <= -np.pi / 2:
            yaw += np.pi
        sd = np.sqrt(np.maximum(evals, 1e-9))
        blobs[k + 1] = Blob(
            k + 1, int(e - s), float(w.sum()), c, cov, yaw,
            float(np.sqrt(12.0) * sd[1]), float(np.sqrt(12.0) * sd[0]),
            float(sd[1] / sd[0]), float(w.max()), float(w.mean()),
        )
    return BlobMap(labels.astype(np.int32), blobs)


@dataclass(frozen=True)
class Peak:
    """A local maximum of the footprint-smoothed BEV probability inside a blob (one object)."""

    centre: np.ndarray  # 2, probability-weighted centroid of its window (x, y) m
    cov: np.ndarray  # 2 x 2, spatial covariance of the window's cells, m^2
    yaw: float  # major axis of the window's cells, rad in (-pi/2, pi/2]
    elongation: float  # major / minor std of the window
    score: float  # smoothed probability at the peak
    blob: int  # label of its blob


def _principal(pts: np.ndarray, w: np.ndarray, cell_var: float
               ) -> tuple[np.ndarray, np.ndarray, float, float]:
    """(weighted centroid 2, covariance 2 x 2, major-axis yaw, elongation) of N x 2 points."""
    c = (w[:, None] * pts).sum(0) / w.sum()
    d = pts - c
    cov = (w[:, None, None] * d[:, :, None] * d[:, None, :]).sum(0) / w.sum()
    cov = cov + np.eye(2) * cell_var
    evals, evecs = np.linalg.eigh(cov)
    yaw = float(np.arctan2(evecs[1, 1], evecs[0, 1]))
    if yaw > np.pi / 2:
        yaw -= np.pi
    elif yaw <= -np.pi / 2:
        yaw += np.pi
    sd = np.sqrt(np.maximum(evals, 1e-9))
    return c, cov, yaw, float(sd[1] / sd[0])


def find_peaks(prob: np.ndarray, blobs: BlobMap, grid: GridSpec, object_area_m2: float,
               max_area_ratio: float) -> list[Peak]:
    """Split blobs larger than ``max_area_ratio`` objects (cars side by side merge in a coarse
    grid) into ``round(cell area / object_area_m2)`` parts by k-means over their cells
    (scipy.cluster.vq.kmeans2, deterministic seed); one :class:`Peak` per part."""
    from scipy.cluster.vq import kmeans2

    res = grid.resolution
    cell_var = res**2 / 12.0
    p = np.asarray(prob, dtype=np.float64)
    out = []
    for lab, b in blobs.blobs.items():
        area = b.cells * res**2
        if area <= max_area_ratio * object_area_m2:
            continue
        k = int(np.clip(round(area / object_area_m2), 2, 16))
        ix, iy = np.nonzero(blobs.labels == lab)
        pts = np.stack([grid.xmin + (ix + 0.5) * res, grid.ymin + (iy + 0.5) * res], 1)
        w = p[ix, iy]
        _, assign = kmeans2(pts, k, minit="++", seed=0)
        for j in range(k):
            m = assign == j
            if m.sum() < 2:
                continue
            c, cov, yaw, el = _principal(pts[m], w[m], cell_var)
            out.append(Peak(c, cov, yaw, el, float(w[m].mean()), lab))
    return out


@dataclass(frozen=True)
class RayLift:
    """One detection lifted along its viewing ray (base_link, metres)."""

    origin: np.ndarray  # 2, camera centre (x, y)
    direction: np.ndarray  # 2, unit horizontal direction of the box's centre ray
    ranges: dict[str, tuple[float, float]]  # cue -> (range to the object centre m, variance m^2)
    range: float  # fused range, m
    range_var: float  # m^2
    bearing_var: float  # rad^2
    blob: int  # label of the blob the BEV range came from, 0 = none
    bev_peak: float  # highest probability along the ray run used (0 without BEV)

    @property
    def position(self) -> np.ndarray:
        """(x, y) m of the fused estimate."""
        return self.origin + self.range * self.direction

    @property
    def covariance(self) -> np.ndarray:
        """2 x 2 m^2: range variance along the ray, bearing variance across it."""
        d = self.direction
        n = np.array([-d[1], d[0]])
        return (self.range_var * np.outer(d, d)
                + self.range**2 * self.bearing_var * np.outer(n, n))


def _ray_base(cam: CameraCalibration, u: float, v: float) -> np.ndarray:
    """Direction (3, base_link, not normalised) of the ray through pixel (u, v)."""
    d = np.linalg.solve(cam.intrinsics, np.array([u, v, 1.0]))
    return cam.rotation @ d


def _ground_range(cam: CameraCalibration, u: float, v: float, ground_z: float) -> float:
    """Horizontal range from the camera to the ground hit of pixel (u, v) (nan above horizon)."""
    d = _ray_base(cam, u, v)
    h = cam.translation[2] - ground_z
    if d[2] >= -1e-6 or h <= 0:
        return float("nan")
    s = h / -d[2]
    return float(s * np.hypot(d[0], d[1]))


def fuse_ranges(ranges: dict[str, tuple[float, float]]) -> tuple[float, float]:
    """Inverse-variance fusion of (range, variance) cues -> (range, variance)."""
    vals = [(r, v) for r, v in ranges.values() if np.isfinite(r) and np.isfinite(v) and v > 0]
    if not vals:
        return float("nan"), float("nan")
    info = sum(1.0 / v for _, v in vals)
    return float(sum(r / v for r, v in vals) / info), float(1.0 / info)


def bev_ray_range(prob: np.ndarray, blobs: BlobMap | None, grid: GridSpec, origin: np.ndarray,
                  direction: np.ndarray, prior_range: float, prior_var: float,
                  cfg: ObjectsConfig) -> tuple[float, float, int, float]:
    """BEV range cue along a horizontal ray: (range m, variance m^2, blob label, peak prob).

    Samples ``prob`` (nx x ny, [ix, iy]) every ``bev_ray_step_m``; contiguous runs above the
    blob threshold are candidate objects; the run nearest ``prior_range`` (within the gate; any
    run when the prior is nan) gives the probability-weighted mean range of the run. (nan, nan,
    0, 0) when none qualifies.
    """
    rs = np.arange(0.5, cfg.max_range_m, cfg.bev_ray_step_m)
    pts = origin[None, :] + rs[:, None] * direction[None, :]
    ix, iy, inside = grid.cell_of(pts[:, 0], pts[:, 1])
    if not inside.any():
        return float("nan"), float("nan"), 0, 0.0
    rs, ix, iy = rs[inside], ix[inside], iy[inside]
    p = np.asarray(prob)[ix, iy].astype(np.float64)
    above = p > cfg.bev_threshold
    if not above.any():
        return float("nan"), float("nan"), 0, 0.0
    # runs of consecutive samples above threshold
    edges = np.diff(np.concatenate([[0], above.astype(np.int8), [0]]))
    starts, ends = np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0]
    best: tuple[float, float, int, float] | None = None
    best_cost = np.inf
    gate = (max(cfg.bev_gate_sigma * np.sqrt(prior_var), cfg.bev_gate_m)
            if np.isfinite(prior_range) else np.inf)
    for s, e in zip(starts, ends, strict=True):
        w = p[s:e]
        r = float((w * rs[s:e]).sum() / w.sum())
        # a run ending at the grid border is cut: its centre is unreliable
        cost = abs(r - prior_range) if np.isfinite(prior_range) else r
        if cost > gate or cost >= best_cost:
            continue
        var = (float((w * (rs[s:e] - r) ** 2).sum() / w.sum()) + cfg.bev_range_floor_m**2
               + (cfg.bev_range_rel_sigma * r) ** 2)
        lab = 0
        if blobs is not None:
            labs = blobs.labels[ix[s:e], iy[s:e]]
            labs = labs[labs > 0]
            if len(labs):
                lab = int(np.bincount(labs).argmax())
        best, best_cost = (r, var, lab, float(w.max())), cost
    if best is None:
        return float("nan"), float("nan"), 0, 0.0
    return best


def lift_box(cam: CameraCalibration, xyxy: np.ndarray, prior: ClassPrior,
             prob: np.ndarray | None, blobs: BlobMap | None, grid: GridSpec,
             cfg: ObjectsConfig, use_bev: bool, yaw_prior: float = 0.0) -> RayLift | None:
    """Lift one box (x1, y1, x2, y2 pixels of the original image) along its viewing ray;
    ``yaw_prior``: assumed heading (rad, base_link) for the footprint offset.

    None when no range cue exists (box above the horizon, truncated and no BEV support).
    """
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    uc = 0.5 * (x1 + x2)
    d_c = _ray_base(cam, uc, 0.5 * (y1 + y2))
    hxy = float(np.hypot(d_c[0], d_c[1]))
    if hxy < 1e-6:
        return None
    direction = d_c[:2] / hxy
    origin = cam.translation[:2].copy()
    fx, fy = cam.intrinsics[0, 0], cam.intrinsics[1, 1]
    # the ray meets the near face; the centre lies half the footprint's depth along the ray
    # further, for a box parallel to the ego (yaw prior 0; road direction)
    a = float(np.arctan2(direction[1], direction[0])) - yaw_prior
    footprint_half = 0.5 * (prior.length * abs(np.cos(a)) + prior.width * abs(np.sin(a)))
    footprint_var = (0.25 * (prior.length - prior.width)) ** 2 + prior.size_std**2 / 4
    ranges: dict[str, tuple[float, float]] = {}
    bottom_cut = y2 >= cam.height - cfg.border_px
    top_cut = y1 <= cfg.border_px
    if not bottom_cut:
        r0 = _ground_range(cam, uc, y2, cfg.ground_z)
        if not np.isfinite(r0):
            return None  # the box's bottom is above the horizon: not standing on the ground
        r1 = _ground_range(cam, uc, y2 + 1.0, cfg.ground_z)
        if np.isfinite(r0) and np.isfinite(r1) and r0 < cfg.max_range_m * 1.5:
            drdv = abs(r0 - r1)
            var = (drdv * cfg.bottom_px_sigma) ** 2 + (cfg.ground_rel_sigma * r0) ** 2
            ranges["ground"] = (r0 + footprint_half, var + footprint_var)
    if not (bottom_cut or top_cut) and y2 - y1 > 2.0:
        d_cam = np.linalg.solve(cam.intrinsics, np.array([uc, 0.5 * (y1 + y2), 1.0]))
        depth = fy * prior.height / (y2 - y1)  # along the optical axis
        dist = depth * np.linalg.norm(d_cam) / d_cam[2]
        r = float(dist * hxy / np.linalg.norm(d_c))
        # the near face is what the box height measures; the centre lies half a footprint on
        ranges["height"] = (r + footprint_half,
                            (cfg.height_rel_sigma * r) ** 2 + footprint_var)
    geo_r, geo_var = fuse_ranges(ranges)
    blob, peak = 0, 0.0
    if use_bev and prob is not None and not (geo_r > cfg.bev_max_range_m):
        rb, vb, blob, peak = bev_ray_range(prob, blobs, grid, origin, direction, geo_r, geo_var,
                                           cfg)
        if np.isfinite(rb):
            ranges["bev"] = (rb, vb)
    r, var = fuse_ranges(ranges)
    if not np.isfinite(r) or r <= 0 or r > cfg.max_range_m:
        return None
    bearing_var = (cfg.bearing_px_sigma / fx) ** 2 + (0.25 * prior.width / max(r, 1.0)) ** 2
    return RayLift(origin, direction, ranges, r, var, float(bearing_var), blob, peak)
