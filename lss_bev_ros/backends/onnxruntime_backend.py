"""onnxruntime backend: the exported static graph(s) on CPU, CUDA or TensorRT execution providers.

Options: ``mode``, ``pooling_op`` (see :mod:`.static_graph`; ``scatter_nd`` needs ``threads=1``
on the CPU provider, whose multi-threaded ScatterND add races), ``opset``, ``providers``,
``threads`` (intra-op threads, default torch's), ``graph_optimization`` (disabled | basic |
extended | all), ``allow_spinning`` (False on machines shared with other busy nodes).

``mode="whole"`` (default) runs one graph: camera encoder + precomputed pooling + BEV encoder,
with the pooling indices fed as inputs (recomputed only when the calibration changes).
``mode="stages"`` runs the camera- and BEV-encoder graphs and pools in torch between them (the
streaming demo's split; per-stage timings). With ``bev_encoder="torch_bf16"`` (CPU, stages mode)
the BEV encoder runs in torch with bfloat16 autocast and channels-last instead (fast on CPUs with
AVX512-BF16 / AMX; ~0.7 % of cells flip on the parity test model, see test_backend_parity).

Providers: ``device="cpu"`` -> ``CPUExecutionProvider``; ``device="cuda"`` ->
``CUDAExecutionProvider`` (needs ``pip install onnxruntime-gpu``); ``providers=[...]`` picks
explicitly, e.g. ``["TensorrtExecutionProvider", "CUDAExecutionProvider"]`` (fp16 via
``precision="fp16"``, engine cache in ``cache_dir``). Only the CPU provider is exercised on the
development machines; the CUDA / TensorRT provider paths follow the onnxruntime documentation
(io binding of CUDA torch tensors) and are untested here.

Exported files are cached in ``cache_dir`` (when given) under a name keyed by the model hash,
graph, pooling op, opset and image size, so a restart skips the export (~5-10 s on CPU).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from lss_bev_ros.lss.pooling import FixedPooling

from .base import (
    WHOLE_MODEL_STAGE,
    BackendOptionError,
    BackendUnavailableError,
    Calibration,
    LSSBackend,
    Stopwatch,
    to_cpu_float,
)
from .engine_cache import _atomic_write, model_hash
from .onnx_export import DEFAULT_OPSET, export_graph
from .static_graph import POOLING_INPUTS, POOLING_OPS, pooling_indices

MODES: tuple[str, ...] = ("whole", "stages")
BEV_ENCODERS: tuple[str, ...] = ("onnxruntime", "torch_bf16")
OPT_LEVELS: tuple[str, ...] = ("disabled", "basic", "extended", "all")


def import_onnxruntime() -> Any:
    try:
        import onnxruntime as ort
    except ImportError as exc:  # pragma: no cover - installed in this project's environment
        raise BackendUnavailableError(
            "onnxruntime backend needs the onnxruntime package (pip install onnxruntime; "
            "for NVIDIA GPUs pip install onnxruntime-gpu)"
        ) from exc
    return ort


def dummy_geometry(model: nn.Module, num_cams: int) -> Tensor:
    """A valid ``1 x N x D x fH x fW x 3`` geometry (all points at the ego origin) used only to
    give the exporter example index tensors; the graph does not depend on their values."""
    fH, fW = model.cfg.feature_size
    return torch.zeros(1, num_cams, model.cfg.grid.num_depth_bins, fH, fW, 3)


def cached_onnx(
    model: nn.Module,
    graph: str,
    cache_dir: str | Path | None,
    pooling_op: str = "gather_cumsum",
    opset: int = DEFAULT_OPSET,
    log: Any = None,
) -> bytes | Path:
    """Export ``graph`` (see :mod:`.onnx_export`) or reuse the cached file; returns the path
    (with ``cache_dir``) or the serialized bytes (without)."""
    if next(model.parameters()).device.type != "cpu":
        model = copy.deepcopy(model).cpu()  # export runs on the CPU; leave the caller's as is
    geom = dummy_geometry(model, model.cfg.image.ncams) if graph == "whole" else None
    if cache_dir is None:
        return export_graph(model, graph, geom=geom, pooling_op=pooling_op, opset=opset)
    H, W = model.cfg.image.final_dim
    mh = model_hash(model.state_dict(), model.cfg.to_dict())[:16]
    op = pooling_op if graph == "whole" else "na"
    path = Path(cache_dir).expanduser() / f"lss_{graph}_{mh}_{op}_opset{opset}_{H}x{W}.onnx"
    if path.is_file() and path.stat().st_size > 0:
        return path
    if log is not None:
        log(f"exporting the {graph} ONNX graph (opset {opset}) to {path}")
    data = export_graph(model, graph, geom=geom, pooling_op=pooling_op, opset=opset)
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(path, data)
    return path


class OnnxRuntimeBackend(LSSBackend):
    """onnxruntime on the exported static graph(s)."""

    kind = "onnxruntime"
    cpu_precisions = ("fp32",)
    cuda_precisions = ("fp32", "fp16")

    def __init__(
        self,
        model: nn.Module,
        device: str | torch.device = "cpu",
        precision: str = "fp32",
        cache_dir: Any = None,
        mode: str = "whole",
        pooling_op: str = "gather_cumsum",
        opset: int = DEFAULT_OPSET,
        providers: list[str] | None = None,
        threads: int = 0,
        graph_optimization: str = "all",
        allow_spinning: bool = True,
        bev_encoder: str = "onnxruntime",
        logger: Any = None,
    ) -> None:
        ort = import_onnxruntime()
        super().__init__(model, device, precision, cache_dir, logger)
        if mode not in MODES:
            raise BackendOptionError(f"mode must be one of {MODES}, got {mode!r}")
        if pooling_op not in POOLING_OPS:
            raise BackendOptionError(f"pooling_op must be one of {POOLING_OPS}")
        if graph_optimization not in OPT_LEVELS:
            raise BackendOptionError(f"graph_optimization must be one of {OPT_LEVELS}")
        if bev_encoder not in BEV_ENCODERS:
            raise BackendOptionError(f"bev_encoder must be one of {BEV_ENCODERS}")
        if bev_encoder != "onnxruntime" and (mode != "stages" or self.device.type != "cpu"):
            raise BackendOptionError("bev_encoder='torch_bf16' needs mode='stages' on the CPU")
        self.bev_encoder = bev_encoder
        self._torch_bev: nn.Module | None = None
        if bev_encoder == "torch_bf16":
            self._torch_bev = copy.deepcopy(self.model.bevencode).cpu().eval().to(
                memory_format=torch.channels_last)
        self.mode, self.pooling_op, self.opset = mode, pooling_op, int(opset)
        self.providers = self._pick_providers(ort, providers)
        if precision == "fp16" and self.providers[0] != "TensorrtExecutionProvider":
            raise BackendOptionError(
                "onnxruntime runs the fp32 graph; fp16 needs providers="
                "['TensorrtExecutionProvider', ...] (or use the tensorrt backend)"
            )
        so = ort.SessionOptions()
        so.graph_optimization_level = {
            "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[graph_optimization]
        so.intra_op_num_threads = int(threads) if threads else torch.get_num_threads()
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # busy-waiting worker threads cut latency but burn CPU other nodes may need
        so.add_session_config_entry("session.intra_op.allow_spinning",
                                    "1" if allow_spinning else "0")
        self.threads = so.intra_op_num_threads
        if (pooling_op == "scatter_nd" and self.providers[0] == "CPUExecutionProvider"
                and self.threads != 1):
            # onnxruntime's CPU ScatterND(reduction="add") splits the updates over its thread pool
            # without atomics: duplicate indices (many frustum points per cell) race, and sums
            # change from run to run (onnxruntime issues #18048, #23396; measured here: up to
            # 1.16 on a logit between two runs of the same input on a loaded 2-core machine)
            raise BackendOptionError(
                "pooling_op='scatter_nd' on onnxruntime's CPU provider is only correct with "
                f"threads=1 (got {self.threads}): its multi-threaded ScatterND add races on "
                "duplicate indices (onnxruntime issues #18048, #23396). Use pooling_op="
                "'gather_cumsum' (the default) or threads=1"
            )
        self.graph_optimization = graph_optimization
        provider_options = [self._provider_options(p) for p in self.providers]
        graphs: tuple[str, ...] = ("whole",)
        if mode == "stages":
            graphs = ("camera_encoder",) if self._torch_bev is not None else (
                "camera_encoder", "bev_encoder")
        self.sessions: dict[str, Any] = {}
        for g in graphs:
            src = cached_onnx(self.model, g, cache_dir, pooling_op, self.opset, self.log)
            self.sessions[g] = ort.InferenceSession(
                str(src) if isinstance(src, Path) else src, so, providers=self.providers,
                provider_options=provider_options,
            )
        self._index: dict[str, np.ndarray] = {}
        self._index_dev: dict[str, Tensor] = {}
        self._pooling: FixedPooling | None = None

    @property
    def name(self) -> str:
        extra = ""
        if self.mode == "stages":
            extra += ", stages" + (", bev bf16" if self._torch_bev is not None else "")
        elif self.pooling_op != "gather_cumsum":
            extra += f", {self.pooling_op}"
        if self.precision != "fp32":
            extra += f", {self.precision}"
        return f"onnxruntime({self.providers[0]}{extra})"

    def _pick_providers(self, ort: Any, providers: list[str] | None) -> list[str]:
        available = ort.get_available_providers()
        if providers:
            wanted = list(providers)
        elif self.device.type == "cuda":
            wanted = ["CUDAExecutionProvider"]
        else:
            wanted = ["CPUExecutionProvider"]
        missing = [p for p in wanted if p not in available]
        if missing:
            raise BackendUnavailableError(
                f"onnxruntime has no {', '.join(missing)} here (available: {available}); "
                "GPU providers need pip install onnxruntime-gpu (TensorRT provider: also the "
                "TensorRT libraries)"
            )
        gpu = any(p in ("CUDAExecutionProvider", "TensorrtExecutionProvider") for p in wanted)
        if gpu and self.device.type != "cuda":
            raise BackendOptionError("GPU execution providers need device='cuda'")
        if "CPUExecutionProvider" not in wanted:
            wanted.append("CPUExecutionProvider")
        return wanted

    def _provider_options(self, provider: str) -> dict[str, Any]:
        if provider == "CUDAExecutionProvider":
            return {"device_id": self.device.index or 0}
        if provider == "TensorrtExecutionProvider":
            opts: dict[str, Any] = {"device_id": self.device.index or 0,
                                    "trt_fp16_enable": self.precision == "fp16"}
            if self.cache_dir is not None:
                opts.update(trt_engine_cache_enable=True,
                            trt_engine_cache_path=str(Path(self.cache_dir).expanduser()))
            return opts
        return {}

    def _prepare(self, geom: Tensor, calib: Calibration) -> None:
        if self.mode == "whole":
            idx = pooling_indices(geom, self.cfg, self.pooling_op)
            self._index = {k: v.cpu().numpy() for k, v in idx.items()}
            self._index_dev = {k: v.to(self.device) for k, v in idx.items()}
        else:
            self._pooling = FixedPooling(geom.cpu(), self.cfg.grid, method="index_add")

    def _run(self, imgs: Tensor) -> tuple[Tensor, dict[str, float]]:
        sw = Stopwatch(self.device)
        if self.mode == "whole":
            if self.device.type == "cuda":
                feeds_dev = {"imgs": imgs.to(self.device, torch.float32).contiguous()}
                feeds_dev.update(self._index_dev)
                out = self._run_cuda(self.sessions["whole"], feeds_dev)
            else:
                feeds = {"imgs": _np32(imgs), **self._index}
                out = torch.from_numpy(self.sessions["whole"].run(["logits"], feeds)[0])
            sw.lap(WHOLE_MODEL_STAGE)
            return out, sw.stages
        assert self._pooling is not None
        feats = self.sessions["camera_encoder"].run(["feats"], {"imgs": _np32(imgs)})[0]
        sw.lap("camera_encoder")
        bev = self._pooling(torch.from_numpy(feats))
        sw.lap("voxel_pooling")
        if self._torch_bev is not None:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = self._torch_bev(bev.contiguous(memory_format=torch.channels_last))
            out = to_cpu_float(out)
        else:
            out = torch.from_numpy(
                self.sessions["bev_encoder"].run(["logits"], {"bev": bev.numpy()})[0])
        sw.lap("bev_encoder")
        return out, sw.stages

    def _run_cuda(self, session: Any, feeds: dict[str, Tensor]) -> Tensor:
        """Zero-copy io binding of CUDA torch tensors (untested on the CPU-only dev machines)."""
        X, Y = self.cfg.grid.bev_shape
        out = torch.empty(1, self.cfg.out_channels, X, Y, device=self.device)
        binding = session.io_binding()
        idx = self.device.index or 0
        np_types = {torch.float32: np.float32, torch.int32: np.int32, torch.int64: np.int64}
        for name, t in feeds.items():
            binding.bind_input(name, "cuda", idx, np_types[t.dtype], list(t.shape), t.data_ptr())
        binding.bind_output("logits", "cuda", idx, np.float32, list(out.shape), out.data_ptr())
        torch.cuda.synchronize(self.device)
        session.run_with_iobinding(binding)
        return to_cpu_float(out)

    def close(self) -> None:
        self.sessions.clear()


def _np32(imgs: Tensor) -> np.ndarray:
    return np.ascontiguousarray(imgs.detach().to("cpu", torch.float32).numpy())


__all__ = ["POOLING_INPUTS", "OnnxRuntimeBackend", "cached_onnx", "import_onnxruntime"]
