"""PyTorch backends: eager (``torch``), ``torch_compile`` and ``cuda_graphs``.

All three run the per-frame model as camera encoder -> precomputed pooling -> BEV encoder, with
the geometry folded into indices at :meth:`set_calibration` time.

* ``torch``: eager. Options ``channels_last`` (NHWC convolutions), ``jit`` (``"none"`` |
  ``"freeze"``: ``torch.jit.trace`` + ``torch.jit.freeze`` of both encoders, which folds
  BatchNorm into the convolutions | ``"optimize"``: freeze + ``optimize_for_inference``).
  Precision fp32 everywhere, bf16 on CPU and fp16/bf16 on CUDA through ``torch.autocast``; the
  pooling always sums in float32. ``reduced_stages`` limits autocast to one encoder, e.g.
  ``("bev_encoder",)``: on the test model the camera encoder (EfficientNet) is what loses most
  in bf16, the BEV encoder is most of the compute (see the bench and the parity tests).
* ``torch_compile``: ``torch.compile`` of both encoders (inductor; on CPU it needs a C++
  compiler). Options ``mode`` (``default`` | ``reduce-overhead`` | ``max-autotune``) and
  ``channels_last``. The first :meth:`infer` compiles (slow; logged).
* ``cuda_graphs``: CUDA only. The whole per-frame graph (camera encoder + ``index_add`` pooling
  + BEV encoder) is captured once per calibration into a CUDA graph and replayed with static
  input / output buffers. **Not exercised on the CPU-only development machines**; written to
  the documented ``torch.cuda.graph`` recipe (warm-up on a side stream, then capture).
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from typing import Any

import torch
from torch import Tensor, nn

from lss_bev_ros.lss.pooling import FixedPooling

from .base import (
    DTYPES,
    WHOLE_MODEL_STAGE,
    BackendOptionError,
    BackendUnavailableError,
    Calibration,
    LSSBackend,
    Stopwatch,
    to_cpu_float,
)
from .static_graph import StaticLSS, pooling_indices

JIT_MODES: tuple[str, ...] = ("none", "freeze", "optimize")
ENCODERS: tuple[str, ...] = ("camera_encoder", "bev_encoder")
COMPILE_MODES: tuple[str, ...] = ("default", "reduce-overhead", "max-autotune")


class TorchBackend(LSSBackend):
    """Eager PyTorch (the reference every other backend is compared with)."""

    kind = "torch"
    cpu_precisions = ("fp32", "bf16")
    cuda_precisions = ("fp32", "fp16", "bf16")

    def __init__(
        self,
        model: nn.Module,
        device: str | torch.device = "cpu",
        precision: str = "fp32",
        cache_dir: Any = None,
        channels_last: bool = False,
        jit: str = "none",
        reduced_stages: tuple[str, ...] | list[str] = ENCODERS,
        logger: Any = None,
    ) -> None:
        super().__init__(model, device, precision, cache_dir, logger)
        if jit not in JIT_MODES:
            raise BackendOptionError(f"jit must be one of {JIT_MODES}, got {jit!r}")
        if isinstance(reduced_stages, str):  # one stage, e.g. from a backend_options string
            reduced_stages = (reduced_stages,)
        bad = set(reduced_stages) - set(ENCODERS)
        if bad or not reduced_stages:
            raise BackendOptionError(
                f"reduced_stages must be a non-empty subset of {ENCODERS}, got "
                f"{list(reduced_stages)}"
            )
        self.reduced_stages = tuple(s for s in ENCODERS if s in reduced_stages)
        self.channels_last = bool(channels_last)
        self.jit = jit
        if self.channels_last:  # a private NHWC copy: the caller's model keeps its layout
            self.model = copy.deepcopy(self.model).to(memory_format=torch.channels_last)
        self.model.to(self.device)
        self._camencode: Any = self.model.camencode
        self._bevencode: Any = self.model.bevencode
        self._pooling: FixedPooling | None = None
        self._traced_cams: int | None = None

    @property
    def name(self) -> str:
        extra = []
        if self.precision != "fp32":
            partial = self.reduced_stages != ENCODERS
            extra.append(self.precision + (f" {self.reduced_stages[0]} only" if partial else ""))
        if self.channels_last:
            extra.append("channels_last")
        if self.jit != "none":
            extra.append(f"jit-{self.jit}")
        base = f"{self.kind}({self.device.type}"
        return base + (", " + ", ".join(extra) if extra else "") + ")"

    def _autocast(self, stage: str) -> contextlib.AbstractContextManager:
        if self.precision == "fp32" or stage not in self.reduced_stages:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=DTYPES[self.precision])

    def _prepare(self, geom: Tensor, calib: Calibration) -> None:
        self._pooling = FixedPooling(geom, self.cfg.grid, method="index_add").to(self.device)
        if self.jit != "none" and self._traced_cams != geom.shape[1]:
            self._trace(int(geom.shape[1]))  # traced shapes are static: retrace per camera count
            self._traced_cams = int(geom.shape[1])

    def _trace(self, num_cams: int) -> None:
        """Trace + freeze both encoders for ``num_cams`` images (BN folded into convs)."""
        H, W = self.cfg.image.final_dim
        X, Y = self.cfg.grid.bev_shape
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        img = torch.zeros(num_cams, 3, H, W, device=self.device).to(memory_format=fmt)
        bev = torch.zeros(1, self.cfg.bev_channels, X, Y, device=self.device)
        bev = bev.to(memory_format=fmt)
        with warnings.catch_warnings():
            # shapes are static for a given rig: the tracer's python-int warnings are expected
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", FutureWarning)  # jit is deprecated upstream; opt-in
            with self._autocast("camera_encoder"):
                cam = torch.jit.trace(self.model.camencode, img, check_trace=False)
                cam = torch.jit.freeze(cam)
            with self._autocast("bev_encoder"):
                bevm = torch.jit.trace(self.model.bevencode, bev, check_trace=False)
                bevm = torch.jit.freeze(bevm)
        if self.jit == "optimize":
            cam = torch.jit.optimize_for_inference(cam)
            bevm = torch.jit.optimize_for_inference(bevm)
        self._camencode, self._bevencode = cam, bevm

    def _run(self, imgs: Tensor) -> tuple[Tensor, dict[str, float]]:
        assert self._pooling is not None
        sw = Stopwatch(self.device)
        B, N, C, H, W = imgs.shape
        x = imgs.to(self.device, torch.float32, non_blocking=True).reshape(B * N, C, H, W)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with self._autocast("camera_encoder"):
            feats = self._camencode(x)
        feats = feats.float().reshape(B, N, *feats.shape[1:])
        sw.lap("camera_encoder")
        bev = self._pooling(feats)
        if self.channels_last:
            bev = bev.contiguous(memory_format=torch.channels_last)
        sw.lap("voxel_pooling")
        with self._autocast("bev_encoder"):
            logits = self._bevencode(bev)
        out = to_cpu_float(logits)
        sw.lap("bev_encoder")
        return out, sw.stages


class TorchCompileBackend(TorchBackend):
    """``torch.compile`` of the camera and BEV encoders (pooling stays eager)."""

    kind = "torch_compile"

    def __init__(
        self,
        model: nn.Module,
        device: str | torch.device = "cpu",
        precision: str = "fp32",
        cache_dir: Any = None,
        mode: str = "default",
        channels_last: bool = False,
        reduced_stages: tuple[str, ...] | list[str] = ENCODERS,
        logger: Any = None,
    ) -> None:
        if mode not in COMPILE_MODES:
            raise BackendOptionError(f"mode must be one of {COMPILE_MODES}, got {mode!r}")
        super().__init__(model, device, precision, cache_dir, channels_last=channels_last,
                         jit="none", reduced_stages=reduced_stages, logger=logger)
        self.mode = mode
        self._compiled = False

    @property
    def name(self) -> str:
        return super().name[:-1] + f", {self.mode})"

    def _run(self, imgs: Tensor) -> tuple[Tensor, dict[str, float]]:
        if not self._compiled:
            self.log(f"{self.name}: compiling the camera and BEV encoders with torch.compile; "
                     "the first frame can take minutes")
            self._camencode = torch.compile(self.model.camencode, mode=self.mode, dynamic=False)
            self._bevencode = torch.compile(self.model.bevencode, mode=self.mode, dynamic=False)
            self._compiled = True
        return super()._run(imgs)


class CudaGraphsBackend(LSSBackend):
    """Whole per-frame model captured into one CUDA graph (GPU only; untested here)."""

    kind = "cuda_graphs"
    cpu_precisions = ()
    cuda_precisions = ("fp32", "fp16", "bf16")

    def __init__(
        self,
        model: nn.Module,
        device: str | torch.device = "cuda",
        precision: str = "fp32",
        cache_dir: Any = None,
        warmup_iters: int = 3,
        logger: Any = None,
    ) -> None:
        if torch.device(device).type != "cuda" or not torch.cuda.is_available():
            raise BackendUnavailableError(
                "cuda_graphs backend needs a CUDA GPU and a CUDA build of PyTorch "
                f"(device={device!r}, torch.cuda.is_available()={torch.cuda.is_available()})"
            )
        super().__init__(model, device, precision, cache_dir, logger)
        self.model.to(self.device)
        self.static = StaticLSS(self.model, "scatter_nd")
        self.warmup_iters = max(1, int(warmup_iters))
        self._graph: Any = None
        self._in: Tensor | None = None
        self._out: Tensor | None = None
        self._index: dict[str, Tensor] = {}

    @property
    def name(self) -> str:
        return f"cuda_graphs({torch.cuda.get_device_name(self.device)}, {self.precision})"

    def _prepare(self, geom: Tensor, calib: Calibration) -> None:
        H, W = self.cfg.image.final_dim
        self._index = pooling_indices(geom, self.cfg, "scatter_nd")
        self._in = torch.zeros(1, geom.shape[1], 3, H, W, device=self.device)
        cast = (contextlib.nullcontext() if self.precision == "fp32"
                else torch.autocast("cuda", dtype=DTYPES[self.precision]))
        # warm up on a side stream (allocator + cuDNN autotuning), then capture
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side), cast:
            for _ in range(self.warmup_iters):
                self.static(self._in, self._index["cell_index"])
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph), cast:
            self._out = self.static(self._in, self._index["cell_index"])
        self._graph = graph

    def _run(self, imgs: Tensor) -> tuple[Tensor, dict[str, float]]:
        assert self._graph is not None and self._in is not None and self._out is not None
        sw = Stopwatch(self.device)
        self._in.copy_(imgs, non_blocking=True)
        self._graph.replay()
        out = to_cpu_float(self._out)
        sw.lap(WHOLE_MODEL_STAGE)
        return out, sw.stages
