"""The one BEV pipeline that ``bev_node`` and ``lss-bev-bag eval`` feed (ROS-free).

Messages in, grids out: the caller hands over what it received (``CameraInfo`` values,
``/tf_static`` edges, ``Image`` / ``CompressedImage`` messages, duck-typed: ``rclpy`` messages and
``rosbags`` messages both work) and publishes or records what comes back. Everything between
lives here, once:

* calibration: the rig file, replaced per camera by valid CameraInfo intrinsics and by
  ``/tf_static`` extrinsics; the JPEG DCT decode reduction and the matching reduced intrinsics;
* input checks: an invalid CameraInfo (non-finite K, K[2][2] != 1, fx/fy <= 0, principal point
  outside the image, sizes beyond ``max_image_side_px``) masks that camera until a valid one
  arrives; undecodable, oversized or wrong-sized images mask their camera for that set;
* camera sets: :class:`~lss_bev_ros.sync.StampSynchronizer` (clocked by stamps: late, offset,
  missing cameras and time jumps are told apart and named) and the missing-camera policy;
* set -> :class:`BevFrame` through :class:`~lss_bev_ros.bev_processor.BevProcessor`, with the
  OccupancyGrid encoding and per-stage timings.

Everything the pipeline rejects goes to a :class:`DiagnosticsSink` (a node's ``/diagnostics``
reporter, or :class:`CountingDiagnostics` offline) under one key per kind, and the pipeline keeps
going. Thread-safe: inputs may arrive from callback threads while a worker runs :meth:`process`.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lss_bev_ros.bev_processor import BevInputError, BevProcessor, jpeg_decode_reduction
from lss_bev_ros.calibration import (
    CalibrationError,
    CameraCalibration,
    RigCalibration,
    frame_id_for,
    quaternion_to_matrix,
)
from lss_bev_ros.conversions import (
    ConversionError,
    GridSpec,
    decode_compressed,
    image_to_rgb,
    probability_to_occupancy,
)
from lss_bev_ros.diagnostics import DiagnosticsSink
from lss_bev_ros.lss.config import MODEL_CONFIGS as NAMED_CONFIGS
from lss_bev_ros.lss.config import LSSConfig
from lss_bev_ros.static_transforms import RigidTransform, StaticTransformTree
from lss_bev_ros.sync import StampSynchronizer, SyncedSet

POLICIES = ("mask", "wait")
"""Missing-camera policies: ``mask`` runs on the other cameras, ``wait`` emits nothing."""

TF_AGREES = 1e-5
"""/tf_static extrinsics closer than this (m / rad) to the current ones are not applied (no
pooling rebuild for a tree that repeats the rig file)."""


@dataclass(frozen=True)
class BevPipelineOptions:
    """Everything that changes what the pipeline produces (bev_node parameters of the same
    names; ``lss-bev-bag eval`` flags)."""

    compressed: bool = True  # CompressedImage input (JPEG DCT reduction applies)
    decode_reduction: int = 0  # 0: auto (jpeg_decode_reduction), else 1, 2, 4, 8
    threshold: float = 0.5  # probability drawn as occupied (images, consumers)
    sync_tolerance_s: float = 0.05
    missing_timeout_s: float = 1.0
    time_jump_s: float = 5.0
    missing_camera_policy: str = "mask"
    max_image_side_px: int = 8192  # CameraInfo / image width and height bound (pixels)
    output_frame: str = "base_link"

    def __post_init__(self) -> None:
        if self.missing_camera_policy not in POLICIES:
            raise ValueError(f"missing_camera_policy must be one of {POLICIES}")
        if self.decode_reduction not in (0, 1, 2, 4, 8):
            raise ValueError("decode_reduction must be 0 (auto), 1, 2, 4 or 8")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError("threshold must be in 0..1")
        if self.sync_tolerance_s < 0 or self.missing_timeout_s <= 0 or self.time_jump_s <= 0:
            raise ValueError("sync_tolerance_s >= 0, missing_timeout_s > 0, time_jump_s > 0")
        if self.max_image_side_px < 16:
            raise ValueError("max_image_side_px must be >= 16")


@dataclass
class BevFrame:
    """One published grid. Arrays are indexed ``[ix, iy]`` (x forward, y left)."""

    stamp: float  # s, newest image stamp of the set
    header_stamp: Any  # that image's header stamp object: outputs copy it (exact nanoseconds)
    probability: np.ndarray  # X x Y float32 0..1
    visible: np.ndarray  # X x Y bool: seen by a present camera
    occupancy: np.ndarray  # (Y * X,) int8 OccupancyGrid data, -1 unseen
    grid: GridSpec
    stage_ms: OrderedDict[str, float] = field(default_factory=OrderedDict)
    missing: tuple[str, ...] = ()  # cameras masked in this frame

    @property
    def total_ms(self) -> float:
        return float(sum(self.stage_ms.values()))


def stamp_seconds(stamp: Any) -> float:
    """``builtin_interfaces/Time`` (any object with ``sec`` and ``nanosec``) -> seconds."""
    return float(stamp.sec) + float(stamp.nanosec) * 1e-9


def camera_info_error(k: Sequence[float], width: int, height: int,
                      max_side: int = 8192) -> str | None:
    """Why a CameraInfo (row-major 3 x 3 ``k``, image size in pixels) cannot be used, or None."""
    if not 0 < width <= max_side or not 0 < height <= max_side:
        return f"size {width}x{height} outside 1..{max_side} pixels"
    kk = np.asarray(k, dtype=np.float64)
    if kk.size != 9:
        return f"K has {kk.size} values, not 9"
    kk = kk.reshape(3, 3)
    if not np.all(np.isfinite(kk)):
        return "K is not finite"
    if kk[0, 0] <= 0 or kk[1, 1] <= 0:
        return f"focal lengths fx={kk[0, 0]:g}, fy={kk[1, 1]:g} must be > 0"
    if abs(kk[2, 2] - 1.0) > 1e-6 or abs(kk[2, 0]) > 1e-9 or abs(kk[2, 1]) > 1e-9:
        return f"last row of K is {kk[2].tolist()}, not [0, 0, 1]"
    if kk[1, 0] != 0.0:
        return "K[1][0] must be 0"
    if not (0.0 <= kk[0, 2] <= width and 0.0 <= kk[1, 2] <= height):
        return f"principal point ({kk[0, 2]:g}, {kk[1, 2]:g}) outside the {width}x{height} image"
    if kk[0, 0] > 100 * max_side or kk[1, 1] > 100 * max_side:
        return f"focal lengths fx={kk[0, 0]:g}, fy={kk[1, 1]:g} are implausibly large"
    return None


def reduced_rig(rig: RigCalibration, factors: Mapping[str, int]) -> RigCalibration:
    """Rig of images decoded at 1/f: sizes ``ceil(size / f)``, intrinsics scaled to match."""
    for cam in rig.cameras:
        f = factors.get(cam.name, 1)
        if f > 1:
            w, h = math.ceil(cam.width / f), math.ceil(cam.height / f)
            k = cam.intrinsics.copy()
            k[0] *= w / cam.width
            k[1] *= h / cam.height
            rig = rig.replace_camera(cam.with_intrinsics(k, w, h))
    return rig


def extrinsics_differ(cam: CameraCalibration, tf: RigidTransform,
                      tol: float = TF_AGREES) -> tuple[bool, float, float]:
    """(differs, rotation angle rad, max translation m) between a camera's extrinsics and a
    ``base_link <- camera`` transform."""
    d_t = float(np.abs(tf.translation - cam.translation).max())
    cos = (np.trace(tf.rotation.T @ cam.rotation) - 1.0) / 2.0
    d_r = float(np.arccos(np.clip(cos, -1.0, 1.0)))
    return (d_t > tol or d_r > tol), d_r, d_t


MODEL_CONFIGS = {**NAMED_CONFIGS, "default": LSSConfig.default}
"""Named configs of an untrained model (``model_config`` parameter): the
:data:`lss_bev_ros.lss.config.MODEL_CONFIGS` registry, plus ``default`` (= ``full``, its older
name)."""


def load_bev_model(weights: str | Path | None, model_config: str = "small",
                   seed: int = 0) -> tuple[Any, LSSConfig, str]:
    """(model, cfg, description): a checkpoint (``torch.load(weights_only=True)``), or an
    untrained ``model_config`` network seeded with ``seed`` when ``weights`` is empty."""
    import torch

    if weights:
        from lss_bev_ros.lss.checkpoint import load_checkpoint

        p = Path(weights)
        if not p.is_file():
            raise FileNotFoundError(f"weights file not found: {p} (train one with "
                                    "lss-bev-train, or leave weights empty for an untrained model)")
        model, cfg, _extra = load_checkpoint(p)
        return model, cfg, f"checkpoint {p}"
    from lss_bev_ros.lss.model import LiftSplatShoot

    if model_config not in MODEL_CONFIGS:
        raise ValueError(f"model_config {model_config!r} not one of {sorted(MODEL_CONFIGS)}")
    cfg = MODEL_CONFIGS[model_config]()
    torch.manual_seed(int(seed))
    return LiftSplatShoot(cfg), cfg, f"untrained {model_config} (seed {seed})"


PRECISION_CHOICES = ("auto", "fp32", "fp16", "bf16", "int8")
"""``precision`` values: ``auto`` = reduced precision only where it helps (see
:func:`create_bev_backend`)."""


def create_bev_backend(name: str, model: Any, cfg: LSSConfig, rig: RigCalibration,
                       device: str, precision: str, cache_dir: Path | None,
                       options: Mapping[str, Any], diag: DiagnosticsSink) -> Any:
    """The backend bev_node and ``lss-bev-bag eval`` run, one way: ``precision`` resolved by
    :func:`lss_bev_ros.backends.cpu_features.resolve_precision` (``auto``: bf16 only on CPUs
    with native bf16 and fp16 on CUDA, each after a parity check against fp32 on a probe frame
    of this rig, else fp32; an explicit bf16 on a CPU without native bf16 is kept but reported
    as ``precision`` in diagnostics, naming the slowdown)."""
    import torch

    from lss_bev_ros.backends import create_backend
    from lss_bev_ros.backends.cpu_features import resolve_precision, torch_parity_check
    from lss_bev_ros.backends.rig import calibration_tensors, random_images

    dev = torch.device(device)
    probe = (random_images(cfg, len(rig.names)).to(dev),
             *(t.to(dev) for t in calibration_tensors(cfg, rig)))
    choice = resolve_precision(precision, dev, parity=torch_parity_check(model.to(dev), probe))
    diag.set("precision", f"{choice.precision} ({choice.reason})")
    if choice.warning:
        diag.error("precision", choice.reason)
    return create_backend(name, model, device, choice.precision, cache_dir=cache_dir,
                          **dict(options))


class BevPipeline:
    """Messages -> :class:`BevFrame` for one rig (see the module docstring).

    Args:
        backend: an inference backend (``lss_bev_ros.backends.create_backend``).
        cfg: the model's config (image size, grid, depth bins).
        rig: the rig file's calibration, cameras in model order.
        options: :class:`BevPipelineOptions`.
        diag: where rejections and state go.
    """

    def __init__(self, backend: Any, cfg: LSSConfig, rig: RigCalibration,
                 options: BevPipelineOptions, diag: DiagnosticsSink) -> None:
        self.options = options
        self.diag = diag
        self.cfg = cfg
        self._lock = threading.RLock()
        self._base_rig = rig  # rig file, then /tf_static extrinsics (full-size intrinsics)
        self._infos: dict[str, tuple[np.ndarray, int, int]] = {}  # name -> (K, w, h)
        self._bad_info: set[str] = set()  # cameras masked by an invalid CameraInfo
        self._tree = StaticTransformTree()
        self._tree_applied = 0
        self._reductions: dict[str, int] = {}
        self.processor = BevProcessor(backend, cfg, self._processing_rig(), options.threshold)
        self.sync: StampSynchronizer[Any] = self._make_sync()
        self.frames = 0

    # ---- configuration ---------------------------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        return self._base_rig.names

    @property
    def grid(self) -> GridSpec:
        g = self.processor.grid
        return GridSpec(g.xmin, g.ymin, g.resolution, g.nx, g.ny, self.options.output_frame)

    def _make_sync(self) -> StampSynchronizer[Any]:
        o = self.options
        return StampSynchronizer(self.names, tolerance=o.sync_tolerance_s,
                                 missing_timeout=o.missing_timeout_s,
                                 allow_partial=o.missing_camera_policy == "mask",
                                 time_jump=o.time_jump_s)

    def update_options(self, **changes: Any) -> None:
        """Change live options (threshold, sync tolerance / timeout / time jump, policy)."""
        live = {"threshold", "sync_tolerance_s", "missing_timeout_s", "time_jump_s",
                "missing_camera_policy"}
        if set(changes) - live:
            raise ValueError(f"not changeable live: {sorted(set(changes) - live)}")
        from dataclasses import replace

        with self._lock:
            self.options = replace(self.options, **changes)
            self.processor.threshold = self.options.threshold
            s = self.sync
            s.tolerance = self.options.sync_tolerance_s
            s.missing_timeout = self.options.missing_timeout_s
            s.time_jump = self.options.time_jump_s
            s.allow_partial = self.options.missing_camera_policy == "mask"

    def current_rig(self) -> RigCalibration:
        """Full-size rig: rig file + /tf_static extrinsics + valid CameraInfo intrinsics."""
        with self._lock:
            rig = self._base_rig
            for name, (k, w, h) in self._infos.items():
                rig = rig.replace_camera(rig.camera(name).with_intrinsics(k, w, h))
            return rig

    def _reduction(self, cam: CameraCalibration) -> int:
        o = self.options
        if not o.compressed or o.decode_reduction == 1:
            return 1
        return jpeg_decode_reduction(cam, self.cfg.image.final_dim, o.decode_reduction)

    def _processing_rig(self) -> RigCalibration:
        rig = self.current_rig()
        self._full_rig = rig  # decode checks the declared (full) size against it
        self._reductions = {c.name: self._reduction(c) for c in rig.cameras}
        return reduced_rig(rig, self._reductions)

    def _rig_changed(self) -> None:
        self.processor.set_rig(self._processing_rig())

    def add_camera_info(self, name: str, k: Sequence[float], width: int, height: int) -> bool:
        """A CameraInfo of camera ``name``; True when it changed the intrinsics. Invalid ones
        mask the camera until a valid one arrives (counted as ``bad_camera_info``)."""
        if name not in self.names:
            self.diag.error("unknown_camera", f"CameraInfo for {name!r}, rig has {self.names}")
            return False
        err = camera_info_error(k, int(width), int(height), self.options.max_image_side_px)
        with self._lock:
            if err is not None:
                if name not in self._bad_info:
                    self._bad_info.add(name)
                    self.diag.set("bad_camera_info_cameras", ",".join(sorted(self._bad_info)))
                self.diag.error("bad_camera_info", f"{name}: {err}; camera masked until a "
                                "valid CameraInfo arrives")
                return False
            if name in self._bad_info:
                self._bad_info.discard(name)
                self.diag.set("bad_camera_info_cameras", ",".join(sorted(self._bad_info)))
            key = (np.asarray(k, dtype=np.float64).reshape(3, 3), int(width), int(height))
            old = self._infos.get(name)
            if old is not None and old[1:] == key[1:] and np.array_equal(old[0], key[0]):
                return False
            self._infos[name] = key
            self.diag.count("camera_info_updates")
            self._rig_changed()
            return True

    def add_static_transform(self, parent: str, child: str, q_wxyz: Sequence[float],
                             translation: Sequence[float]) -> bool:
        """One ``/tf_static`` edge; camera extrinsics (``output_frame`` <- camera frame) that
        changed by more than :data:`TF_AGREES` are applied. True when the rig changed."""
        try:
            tf = RigidTransform(quaternion_to_matrix(list(q_wxyz)),
                                np.asarray(translation, dtype=np.float64))
        except (ValueError, CalibrationError) as exc:
            self.diag.error("bad_tf", f"/tf_static {parent} -> {child}: {exc}; edge ignored")
            return False
        with self._lock:
            try:
                self._tree.set(parent, child, tf)
            except ValueError as exc:
                self.diag.error("bad_tf", f"/tf_static {parent} -> {child}: {exc}; edge ignored")
                return False
            return self._apply_tree()

    def _apply_tree(self) -> bool:
        if self._tree.version == self._tree_applied:
            return False
        self._tree_applied = self._tree.version
        base = self.options.output_frame
        changed, found = False, 0
        for cam in self._base_rig.cameras:
            try:
                tf = self._tree.lookup(base, cam.frame_id or frame_id_for(cam.name))
            except LookupError:
                continue
            found += 1
            differs, d_r, d_t = extrinsics_differ(cam, tf)
            if not differs:
                continue
            self.diag.set(f"extrinsics_change.{cam.name}",
                          f"{math.degrees(d_r):.3f} deg / {d_t:.3f} m from /tf_static")
            self._base_rig = self._base_rig.replace_camera(CameraCalibration(
                cam.name, cam.width, cam.height, cam.intrinsics, tf.rotation, tf.translation,
                cam.frame_id))
            changed = True
        n = len(self.names)
        self.diag.set("extrinsics_source", f"tf_static for {found} of {n} cameras"
                      + (", rig_file for the others" if found < n else ""))
        if changed:
            self._rig_changed()
        return changed

    # ---- input -----------------------------------------------------------------------------
    def add_image(self, name: str, msg: Any) -> SyncedSet[Any] | None:
        """Offer one image message; returns the camera set it completed, if any. What the
        synchroniser judged (late / offset / missing cameras, time jumps) is reported."""
        try:
            stamp = stamp_seconds(msg.header.stamp)
        except (AttributeError, TypeError, ValueError) as exc:
            self.diag.error("bad_image", f"{name}: no usable header stamp ({exc})")
            return None
        with self._lock:
            sync = self.sync
        out = sync.add_stamped(name, stamp, msg)
        for ev in sync.pop_events():
            self.diag.error(ev.kind, ev.message)
        self.diag.set("missing_cameras", ",".join(sync.missing_sources()) or "none")
        offsets = sync.offset_sources()
        self.diag.set("offset_cameras", ",".join(f"{n} {o:+.3f} s" for n, o in offsets.items())
                      or "none")
        return out

    def restart_sync(self) -> None:
        """Forget queued images and camera judgements (e.g. on deactivate / activate)."""
        with self._lock:
            self.sync = self._make_sync()

    def decode(self, name: str, msg: Any) -> np.ndarray | None:
        """Image / CompressedImage -> H x W x 3 RGB at the processing size, or None (error
        reported, camera masked for this set)."""
        cam = self.processor.rig.camera(name)
        with self._lock:
            f = self._reductions.get(name, 1)
            full = self._full_rig.camera(name)
        try:
            if hasattr(msg, "format"):
                rgb = decode_compressed(msg.data, f,
                                        max_pixels=self.options.max_image_side_px ** 2,
                                        expected_size=(full.height, full.width))
            else:
                rgb = image_to_rgb(msg)
        except ConversionError as exc:
            text = str(exc)
            key = ("bad_image_size" if "expected" in text else
                   "bad_encoding" if "encoding" in text else
                   "corrupt_image" if hasattr(msg, "format") else "bad_image")
            self.diag.error(key, f"{name}: {text}; camera masked")
            return None
        except Exception as exc:  # any malformed message
            self.diag.error("bad_image", f"{name}: {type(exc).__name__}: {exc}; camera masked")
            return None
        if rgb.shape[:2] != (cam.height, cam.width):
            how = f" (decoded at 1/{f})" if f > 1 else ""
            self.diag.error("bad_image_size", (
                f"{name}: image is {rgb.shape[1]}x{rgb.shape[0]}{how}, expected "
                f"{cam.width}x{cam.height} from its calibration (CameraInfo / rig); camera "
                "masked"))
            return None
        return rgb

    # ---- processing ------------------------------------------------------------------------
    def process(self, s: SyncedSet[Any]) -> BevFrame | None:
        """One camera set -> :class:`BevFrame`; None when the policy or the input says skip."""
        t0 = time.perf_counter()
        images: dict[str, np.ndarray] = {}
        with self._lock:
            masked_info = set(self._bad_info)
        for name, msg in s.items.items():
            if name in masked_info:
                continue
            rgb = self.decode(name, msg)
            if rgb is not None:
                images[name] = rgb
        failed = [n for n in s.items if n not in images]
        if (failed and self.options.missing_camera_policy == "wait") or not images:
            self.diag.count("frames_skipped")
            return None
        ref = max(s.items.values(), key=lambda m: stamp_seconds(m.header.stamp))
        t1 = time.perf_counter()
        try:
            out = self.processor.process(images, s.stamp, missing=(*s.missing, *failed))
        except BevInputError as exc:
            self.diag.error("bad_input", str(exc))
            return None
        t2 = time.perf_counter()
        occ = probability_to_occupancy(out.probability, out.visible)
        t3 = time.perf_counter()
        stages: OrderedDict[str, float] = OrderedDict()
        stages["convert"] = (t1 - t0) * 1e3
        stages.update(out.stage_ms)
        stages["encode_grid"] = (t3 - t2) * 1e3
        self.frames += 1
        self.diag.count("frames_processed")
        if out.missing:
            self.diag.count("frames_with_masked_cameras")
        return BevFrame(stamp=s.stamp, header_stamp=ref.header.stamp,
                        probability=out.probability, visible=out.visible, occupancy=occ,
                        grid=self.grid, stage_ms=stages, missing=out.missing)

    def warmup(self) -> float:
        """One blank frame through the backend (lazy compilation, allocations); ms."""
        t0 = time.perf_counter()
        blank = {c.name: np.zeros((c.height, c.width, 3), np.uint8)
                 for c in self.processor.rig.cameras}
        self.processor.process(blank, 0.0)
        return (time.perf_counter() - t0) * 1e3
