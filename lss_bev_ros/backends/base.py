"""Backend interface shared by every inference runtime (pure torch, no ROS).

Contract (docs/CONTRACTS.md)::

    backend = create_backend(name, model, device, precision, cache_dir, **options)
    backend.name                                   # e.g. "onnxruntime(CPUExecutionProvider)"
    backend.set_calibration(rots, trans, intrins, post_rots, post_trans)   # 1 x N x ... tensors
    logits, stage_ms = backend.infer(imgs)         # imgs 1 x N x 3 x H x W float32 normalised
                                                   # logits 1 x outC x X x Y float32 on CPU

``set_calibration`` recomputes the geometry and the pooling indices only when the calibration
tensors changed (content hash); its cost is reported as the ``geometry`` stage of the next
``infer``. Backends that run the per-frame model as one fused graph report its time under
``whole_model`` instead of ``camera_encoder`` / ``voxel_pooling`` / ``bev_encoder``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from lss_bev_ros.lss.pooling import tensor_key

LOG = logging.getLogger("lss_bev_ros.backends")

PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "bf16", "int8")
STAGES: tuple[str, ...] = ("geometry", "camera_encoder", "voxel_pooling", "bev_encoder")
WHOLE_MODEL_STAGE = "whole_model"
DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16,
                                  "bf16": torch.bfloat16}


class BackendUnavailableError(RuntimeError):
    """The requested backend cannot run here; the message names what to install or change."""


class BackendOptionError(ValueError):
    """An option / precision / device combination the backend does not support."""


Calibration = tuple[Tensor, Tensor, Tensor, Tensor, Tensor]


class Stopwatch:
    """Wall-clock stage timer (ms); synchronises CUDA first so GPU work is counted."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.stages: dict[str, float] = {}
        self._t = self._now()

    def _now(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def lap(self, name: str) -> None:
        t = self._now()
        self.stages[name] = self.stages.get(name, 0.0) + (t - self._t) * 1e3
        self._t = t


def resolve_logger(logger: Any) -> Callable[[str], None]:
    """``logger`` may be None (module logger), a ``logging.Logger``, an rclpy logger or any
    callable taking one string; returns an ``info(str)`` callable."""
    if logger is None:
        return LOG.info
    if callable(logger) and not hasattr(logger, "info"):
        return logger
    return logger.info


class LSSBackend:
    """Base class: device / precision checks, calibration cache, input validation, timing.

    Subclasses implement :meth:`_prepare` (build indices / sessions for a new geometry) and
    :meth:`_run` (one frame). ``model`` is a :class:`~lss_bev_ros.lss.model.LiftSplatShoot`; it
    is put in eval mode and (for torch backends) moved to ``device``.
    """

    #: Short backend family name (the factory key).
    kind = "base"
    #: Precisions this backend accepts on CPU / on CUDA.
    cpu_precisions: tuple[str, ...] = ("fp32",)
    cuda_precisions: tuple[str, ...] = ("fp32",)

    def __init__(
        self,
        model: nn.Module,
        device: str | torch.device = "cpu",
        precision: str = "fp32",
        cache_dir: Any = None,
        logger: Any = None,
    ) -> None:
        self.device = torch.device(device)
        if self.device.type not in ("cpu", "cuda"):
            raise BackendOptionError(f"device must be 'cpu' or 'cuda', got {device!r}")
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailableError(
                f"{self.kind} backend on device 'cuda' needs a CUDA GPU and a CUDA build of "
                "PyTorch; torch.cuda.is_available() is False here (use device 'cpu')"
            )
        if precision not in PRECISIONS:
            raise BackendOptionError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        allowed = self.cuda_precisions if self.device.type == "cuda" else self.cpu_precisions
        if precision not in allowed:
            raise BackendOptionError(
                f"{self.kind} backend supports precision {list(allowed)} on "
                f"{self.device.type}, not {precision!r}"
            )
        self.precision = precision
        self.model = model.eval()
        self.cfg = model.cfg
        self.cache_dir = cache_dir
        self.log = resolve_logger(logger)
        self._calib_key: str | None = None
        self._num_cams: int | None = None
        self._pending_geometry_ms = 0.0
        self.num_calibrations = 0  # number of geometry rebuilds (for tests / diagnostics)

    # --- public API -------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """Descriptive name shown in timing messages and the dashboard."""
        return self.kind

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} device={self.device} {self.precision}>"

    @torch.no_grad()
    def set_calibration(
        self, rots: Tensor, trans: Tensor, intrins: Tensor, post_rots: Tensor, post_trans: Tensor
    ) -> bool:
        """Use this calibration (``1 x N x 3 x 3`` / ``1 x N x 3`` tensors, see
        :mod:`lss_bev_ros.lss.geometry`). Recomputes geometry + indices only when the values
        changed; returns True when it did."""
        t0 = time.perf_counter()
        calib = tuple(torch.as_tensor(t, dtype=torch.float32) for t in
                      (rots, trans, intrins, post_rots, post_trans))
        _check_calibration(calib)
        key = tensor_key(*calib)
        rebuilt = key != self._calib_key
        if rebuilt:
            # geometry where the model's constants live (graph backends keep it on the CPU),
            # indices on the backend's device
            model_dev = next(self.model.parameters()).device
            geom = self.model.get_geometry(*(t.to(model_dev) for t in calib))
            geom = geom.float().to(self.device)  # 1 x N x D x fH x fW x 3
            dev = tuple(t.to(self.device) for t in calib)
            self._prepare(geom, dev)  # type: ignore[arg-type]
            self._calib_key = key
            self._num_cams = int(calib[0].shape[1])
            self.num_calibrations += 1
        self._pending_geometry_ms += (time.perf_counter() - t0) * 1e3
        return rebuilt

    @torch.no_grad()
    def infer(self, imgs: Tensor) -> tuple[Tensor, dict[str, float]]:
        """``1 x N x 3 x H x W`` float images -> (``1 x outC x X x Y`` float32 CPU logits,
        stage milliseconds)."""
        if self._calib_key is None:
            raise RuntimeError(f"{self.name}: call set_calibration() before infer()")
        self._check_images(imgs)
        stages: dict[str, float] = {"geometry": self._pending_geometry_ms}
        self._pending_geometry_ms = 0.0
        logits, run_stages = self._run(imgs)
        stages.update(run_stages)
        return logits, stages

    def close(self) -> None:
        """Release runtime resources (sessions, engines, GPU memory)."""

    # --- for subclasses ---------------------------------------------------------------------
    def _prepare(self, geom: Tensor, calib: Calibration) -> None:
        raise NotImplementedError

    def _run(self, imgs: Tensor) -> tuple[Tensor, dict[str, float]]:
        raise NotImplementedError

    def _check_images(self, imgs: Tensor) -> None:
        H, W = self.cfg.image.final_dim
        if not isinstance(imgs, Tensor):
            raise TypeError(f"imgs must be a torch.Tensor, got {type(imgs).__name__}")
        if imgs.dim() != 5 or imgs.shape[0] != 1 or imgs.shape[2] != 3:
            raise ValueError(f"imgs must be 1 x N x 3 x H x W, got {tuple(imgs.shape)}")
        if tuple(imgs.shape[-2:]) != (H, W):
            raise ValueError(
                f"imgs are {imgs.shape[-2]} x {imgs.shape[-1]} px, the model expects {H} x {W}"
            )
        if imgs.shape[1] != self._num_cams:
            raise ValueError(
                f"got {imgs.shape[1]} camera images but the calibration has {self._num_cams}"
            )
        if not imgs.is_floating_point():
            raise TypeError(f"imgs must be float (normalised), got {imgs.dtype}")


def _check_calibration(calib: tuple[Tensor, ...]) -> None:
    rots, trans, intrins, post_rots, post_trans = calib
    if rots.dim() != 4 or rots.shape[0] != 1 or rots.shape[-2:] != (3, 3):
        raise ValueError(f"rots must be 1 x N x 3 x 3, got {tuple(rots.shape)}")
    n = rots.shape[1]
    for name, t, shape in (
        ("trans", trans, (1, n, 3)),
        ("intrins", intrins, (1, n, 3, 3)),
        ("post_rots", post_rots, (1, n, 3, 3)),
        ("post_trans", post_trans, (1, n, 3)),
    ):
        if tuple(t.shape) != shape:
            raise ValueError(f"{name} must be {' x '.join(map(str, shape))}, got "
                             f"{tuple(t.shape)}")
    for t in calib:
        if not torch.isfinite(t).all():
            raise ValueError("calibration tensors contain NaN or inf")


def to_cpu_float(x: Tensor) -> Tensor:
    """Logits as contiguous float32 on the CPU (the contract's output)."""
    return x.detach().to("cpu", torch.float32).contiguous()
