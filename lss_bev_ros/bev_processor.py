"""ROS-free BEV processing core: one image set -> BEV probabilities (used by
:class:`lss_bev_ros.bev_pipeline.BevPipeline`, which bev_node and ``lss-bev-bag eval`` feed).

``BevProcessor.process(images, stamp, missing)`` turns one synchronised set of camera images
(``H x W x 3`` uint8 RGB per camera name) into a BEV occupancy probability map plus the mask of
cells a present camera can see, with per-stage timings (docs/CONTRACTS.md).

Missing cameras (stopped publishing, corrupt frame) are *masked*: their frustum points are moved
out of the BEV grid by giving the camera a far-away translation, so the pooling drops all of
them and the camera contributes exactly zero features, while tensor shapes (N cameras) stay
static for compiled / exported backends. The calibration handed to the backend, and therefore its
precomputed pooling indices, changes only when the rig fingerprint, the set of missing cameras
or an image size changes.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from lss_bev_ros.calibration import CameraCalibration, RigCalibration
from lss_bev_ros.conversions.grid import GridSpec
from lss_bev_ros.lss.config import LSSConfig

if TYPE_CHECKING:  # torch is imported lazily (first frame)
    from lss_bev_ros.backends.base import LSSBackend

MASKED_CAMERA_OFFSET_M = 1.0e5
"""Translation (m) given to a masked camera: every frustum point lands far outside the grid."""

STAGES = ("geometry", "camera_encoder", "voxel_pooling", "bev_encoder", "whole_model")
"""Model stage names a backend may report (fused-graph backends report ``whole_model``)."""


class BevInputError(ValueError):
    """The image set cannot be processed (no camera left, wrong image shape, ...)."""


@dataclass
class BevOutput:
    """Result of one frame. Arrays are indexed ``[ix, iy]`` (x forward, y left)."""

    stamp: float  # input stamp (s)
    probability: np.ndarray  # X x Y float32, 0..1
    visible: np.ndarray  # X x Y bool, seen by at least one present camera
    stage_ms: OrderedDict[str, float] = field(default_factory=OrderedDict)
    missing: tuple[str, ...] = ()
    calibration_rebuilt: bool = False

    @property
    def total_ms(self) -> float:
        return float(sum(self.stage_ms.values()))


# ---------------------------------------------------------------------------------------------
# visibility
# ---------------------------------------------------------------------------------------------
def camera_visibility(
    rig: RigCalibration,
    grid: GridSpec,
    depth_range: tuple[float, float],
) -> dict[str, np.ndarray]:
    """Per camera, ``X x Y`` bool: cell centres inside its horizontal field of view and depth
    range (optical z in ``depth_range`` metres), evaluated at the camera's own height; the
    image width is the calibration's (``CameraCalibration.width``, matching its intrinsics).
    """
    xs = grid.xmin + (np.arange(grid.nx) + 0.5) * grid.resolution
    ys = grid.ymin + (np.arange(grid.ny) + 0.5) * grid.resolution
    gx, gy = np.meshgrid(xs, ys, indexing="ij")  # X x Y
    out: dict[str, np.ndarray] = {}
    for cam in rig.cameras:
        w = cam.width
        p = np.stack([gx - cam.translation[0], gy - cam.translation[1],
                      np.zeros_like(gx)], -1)
        pc = p @ cam.rotation  # R^T (p - t) as rows
        z = pc[..., 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            u = cam.intrinsics[0, 0] * pc[..., 0] / z + cam.intrinsics[0, 2]
        out[cam.name] = (z >= depth_range[0]) & (z < depth_range[1]) & (u >= 0) & (u < w)
    return out


# ---------------------------------------------------------------------------------------------
# processor
# ---------------------------------------------------------------------------------------------
class BevProcessor:
    """One synchronised image set -> :class:`BevOutput` (docs/CONTRACTS.md).

    Args:
        backend: object with ``name``, ``set_calibration(...)`` and ``infer(imgs)``.
        cfg: the model's ``LSSConfig`` (image size, grid, depth bins).
        rig: camera calibration; its camera order is the model's camera order.
        threshold: probability counted as occupied (``BevOutput`` consumers may use it).
    """

    def __init__(self, backend: LSSBackend, cfg: LSSConfig, rig: RigCalibration,
                 threshold: float = 0.5) -> None:
        if not rig.cameras:
            raise ValueError("rig has no cameras")
        self.backend = backend
        self.cfg = cfg
        self.threshold = float(threshold)
        self.grid = GridSpec.from_bounds(cfg.grid.xbound, cfg.grid.ybound)
        self._lock = threading.Lock()
        self._rig = rig
        self._calib_key: tuple | None = None
        self._vis_key: str | None = None
        self._vis_cache: dict[str, np.ndarray] = {}
        self._black: dict[tuple[int, int], np.ndarray] = {}
        self.calibration_builds = 0

    # -- calibration ------------------------------------------------------------------------
    @property
    def rig(self) -> RigCalibration:
        with self._lock:
            return self._rig

    def set_rig(self, rig: RigCalibration) -> bool:
        """Replace the calibration (thread-safe); True when its fingerprint changed. The
        backend's pooling indices are rebuilt on the next :meth:`process` only then."""
        with self._lock:
            if rig.names != self._rig.names:
                raise ValueError(f"rig cameras {rig.names} != processor cameras {self._rig.names}")
            changed = rig.fingerprint() != self._rig.fingerprint()
            if changed:
                self._rig = rig
            return changed

    def visibility(self, missing: Sequence[str] = ()) -> np.ndarray:
        """``X x Y`` bool: cells seen by at least one present camera (cached per calibration)."""
        rig = self.rig
        key = rig.fingerprint()
        if key != self._vis_key:
            lo, hi, _ = self.cfg.grid.dbound
            self._vis_cache = camera_visibility(rig, self.grid, (lo, hi))
            self._vis_key = key
        vis = np.zeros((self.grid.nx, self.grid.ny), bool)
        for name, m in self._vis_cache.items():
            if name not in missing:
                vis |= m
        return vis

    # -- processing -------------------------------------------------------------------------
    def process(self, images: Mapping[str, np.ndarray], stamp: float,
                missing: Sequence[str] = ()) -> BevOutput:
        """Run one frame. ``images``: camera name -> ``H x W x 3`` uint8 RGB for every present
        camera; cameras of the rig absent from ``images`` (or listed in ``missing``) are masked.
        """
        import torch

        from lss_bev_ros.lss.preprocess import prepare_inputs

        rig = self.rig
        unknown = set(images) - set(rig.names)
        if unknown:
            raise BevInputError(f"images for unknown cameras {sorted(unknown)} "
                                f"(rig has {list(rig.names)})")
        miss = tuple(n for n in rig.names if n in missing or n not in images)
        if len(miss) == len(rig.names):
            raise BevInputError("no camera image to process (all cameras missing)")
        stage: OrderedDict[str, float] = OrderedDict()
        t0 = time.perf_counter()
        imgs, sizes = [], {}
        for cam in rig.cameras:
            if cam.name in miss:
                img = self._black_image(cam.height, cam.width)
            else:
                img = images[cam.name]
                if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
                    raise BevInputError(
                        f"{cam.name}: expected H x W x 3 uint8 RGB, got {img.shape} {img.dtype}")
            sizes[cam.name] = img.shape[:2]
            imgs.append(img)
        K, R, T = rig.stacked()
        cam_to_ego = np.tile(np.eye(4), (len(rig.names), 1, 1))
        cam_to_ego[:, :3, :3] = R
        cam_to_ego[:, :3, 3] = T
        for i, name in enumerate(rig.names):
            if name in miss:
                cam_to_ego[i, :3, 3] = MASKED_CAMERA_OFFSET_M
        inp = prepare_inputs(imgs, K, cam_to_ego, self.cfg)
        stage["preprocess"] = (time.perf_counter() - t0) * 1e3

        key = (rig.fingerprint(), miss, tuple(sizes[n] for n in rig.names))
        rebuilt = False
        if key != self._calib_key:
            t1 = time.perf_counter()
            self.backend.set_calibration(inp.rots, inp.trans, inp.intrins, inp.post_rots,
                                         inp.post_trans)
            self._calib_key = key
            self.calibration_builds += 1
            rebuilt = True
            stage["calibration"] = (time.perf_counter() - t1) * 1e3
        logits, ms = self.backend.infer(inp.imgs)
        for k, v in ms.items():
            stage[k] = float(v)
        t2 = time.perf_counter()
        prob = torch.sigmoid(logits[0, 0].float()).numpy().astype(np.float32, copy=False)
        vis = self.visibility(miss)
        stage["postprocess"] = (time.perf_counter() - t2) * 1e3
        return BevOutput(stamp=float(stamp), probability=prob, visible=vis, stage_ms=stage,
                         missing=miss, calibration_rebuilt=rebuilt)

    def _black_image(self, h: int, w: int) -> np.ndarray:
        key = (int(h), int(w))
        if key not in self._black:
            self._black[key] = np.zeros((key[0], key[1], 3), np.uint8)
        return self._black[key]


def jpeg_decode_reduction(
    cam: CameraCalibration, final_dim: tuple[int, int], requested: int = 0
) -> int:
    """JPEG DCT decode factor (1, 2, 4, 8) for ``cam``; one rule for bev_node and offline eval.

    ``requested`` > 0 is used as is; 0 (auto) picks the largest factor whose decoded image keeps
    at least twice the model's resize target, so the final INTER_AREA resize still averages
    (1/8 DCT decoding straight to about the target size changes edges visibly).
    """
    if requested:
        return int(requested)
    fh, fw = final_dim
    resize = max(fh / cam.height, fw / cam.width)
    for f in (8, 4, 2):
        if (math.ceil(cam.width / f) >= 2 * cam.width * resize
                and math.ceil(cam.height / f) >= 2 * cam.height * resize):
            return f
    return 1
