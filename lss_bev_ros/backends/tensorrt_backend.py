"""Native TensorRT backend: the whole per-frame graph as one engine, cached on disk.

**TensorRT cannot be installed on the CPU-only development / CI machines of this project, so the
TensorRT calls below have never run here.** What is tested here is everything around them: the
ONNX the engine is built from (it parses, passes the ONNX checker, uses only TensorRT-supported
operators and matches torch in onnxruntime), the optimisation-profile shapes and the engine cache
keys (:mod:`.engine_cache`). The code is kept small and written against the TensorRT >= 8.6
Python API (``build_serialized_network``, named-tensor ``set_input_shape`` /
``set_tensor_address`` / ``execute_async_v3``).

Pipeline: export the ``whole`` graph with the scatter-free ``gather_cumsum`` pooling (TensorRT's
ONNX parser has no ScatterND reduction) -> ``OnnxParser`` -> one optimisation profile (fixed
images; the kept-point / segment counts, which depend on the calibration, range over
``1..P``) -> FP32 / FP16 / INT8 (with a calibration set of image batches) -> serialized engine in
``cache_dir``. In reduced precision the pooling layers (everything outside the two encoders,
including the float32 prefix sum) are pinned to float32.

Cache key: model weights + config hash, ONNX hash, input shapes, precision, TensorRT version, GPU
name and compute capability (+ workspace and calibration-set hash). A mismatch -> rebuild, logged
with the reason; ``force_rebuild=True`` rebuilds anyway. The build logs "building TensorRT
engine ... this can take minutes; cache at PATH" before it starts.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .base import (
    WHOLE_MODEL_STAGE,
    BackendOptionError,
    BackendUnavailableError,
    Calibration,
    LSSBackend,
    Stopwatch,
    to_cpu_float,
)
from .engine_cache import EngineCache, EngineKey, file_hash, model_hash
from .onnx_export import DEFAULT_OPSET
from .onnxruntime_backend import cached_onnx
from .static_graph import POOLING_INPUTS, num_cells, pooling_indices

TRT_INSTALL_HINT = (
    "tensorrt backend needs the TensorRT Python package (JetPack: apt install "
    "python3-libnvinfer; x86: pip install tensorrt)"
)
DEFAULT_CACHE_DIR = Path("~/.cache/lss_bev_ros/engines")
#: Graph inputs whose size depends on the calibration (dynamic in the optimisation profile).
DYNAMIC_INPUTS: tuple[str, ...] = ("src_index", "seg_end")
#: ONNX node-name prefixes of the encoders; every other layer is pooling glue kept in float32.
ENCODER_PREFIXES: tuple[str, ...] = ("/camencode/", "/bevencode/")


def import_tensorrt() -> Any:
    """``import tensorrt`` or :class:`BackendUnavailableError` saying how to install it."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise BackendUnavailableError(TRT_INSTALL_HINT) from exc
    return trt


def profile_shapes(
    cfg: Any, num_cams: int
) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
    """Optimisation profile ``{input: (min, opt, max)}`` of the whole graph for ``num_cams``.

    ``P = N * D * fH * fW`` frustum points bound the kept points ``K`` and the occupied cells
    ``U`` (also bounded by the cell count); ``opt`` is the maximum (nearly all points are kept
    for the nuScenes rig).
    """
    H, W = cfg.image.final_dim
    fH, fW = cfg.feature_size
    P = num_cams * cfg.grid.num_depth_bins * fH * fW
    cells = num_cells(cfg)
    umax = min(P, cells)
    img = (1, num_cams, 3, H, W)
    return {
        "imgs": (img, img, img),
        "src_index": ((1,), (P,), (P,)),
        "seg_end": ((1,), (umax,), (umax,)),
        "cell_segment": ((cells,), (cells,), (cells,)),
    }


def engine_key(
    model: nn.Module,
    onnx_path: Path,
    num_cams: int,
    precision: str,
    trt_version: str,
    gpu: str,
    extra: dict[str, Any] | None = None,
) -> EngineKey:
    """The :class:`EngineKey` of the whole-graph engine (see module doc)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for name, (mn, opt, mx) in profile_shapes(model.cfg, num_cams).items():
        if mn == mx:
            shapes[name] = mx
        else:
            shapes.update({f"{name}@min": mn, f"{name}@opt": opt, f"{name}@max": mx})
    return EngineKey(
        model=model_hash(model.state_dict(), model.cfg.to_dict()),
        graph=file_hash(onnx_path),
        shapes=shapes,
        precision=precision,
        trt_version=trt_version,
        gpu=gpu,
        extra=dict(extra or {}),
    )


def gpu_name(device: torch.device) -> str:
    """GPU name + compute capability, e.g. ``NVIDIA H100 80GB HBM3 sm90``."""
    major, minor = torch.cuda.get_device_capability(device)
    return f"{torch.cuda.get_device_name(device)} sm{major}{minor}"


def build_engine(
    trt: Any,
    onnx_path: Path,
    profile: dict[str, tuple[tuple[int, ...], ...]],
    precision: str,
    workspace_mb: int = 2048,
    calibrator: Any = None,
    log: Any = print,
) -> bytes:
    """Parse ``onnx_path`` and build a serialized engine (bytes). Untested here (no TensorRT)."""
    logger = trt.Logger(trt.Logger.WARNING)
    trt.init_libnvinfer_plugins(logger, "")
    builder = trt.Builder(logger)
    explicit = getattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH", None)
    network = builder.create_network(0 if explicit is None else 1 << int(explicit))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    opt_profile = builder.create_optimization_profile()
    for name, (mn, opt, mx) in profile.items():
        opt_profile.set_shape(name, mn, opt, mx)
    config.add_optimization_profile(opt_profile)
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        pinned = 0
        for i in range(network.num_layers):
            layer = network.get_layer(i)
            if not layer.name.startswith(ENCODER_PREFIXES):
                layer.precision = trt.float32
                for j in range(layer.num_outputs):
                    if layer.get_output(j).dtype in (trt.float32, trt.float16):
                        layer.set_output_type(j, trt.float32)
                pinned += 1
        log(f"pinned {pinned} pooling layers to float32")
    if precision == "int8":
        if calibrator is None:
            raise BackendOptionError("int8 needs a calibration set (option calibration_images)")
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = calibrator
        config.set_calibration_profile(opt_profile)
    t0 = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT engine build failed for {onnx_path} (see the TensorRT log)")
    log(f"engine built in {time.perf_counter() - t0:.0f} s")
    return bytes(serialized)


def make_calibrator(trt: Any, batches: list[dict[str, Tensor]], cache_file: Path) -> Any:
    """An ``IInt8EntropyCalibrator2`` over ``batches`` (dicts of CUDA tensors, one per input)."""

    class _Calibrator(trt.IInt8EntropyCalibrator2):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.batches = batches
            self.i = 0

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names: list[str]) -> list[int] | None:
            if self.i >= len(self.batches):
                return None
            batch = self.batches[self.i]
            self.i += 1
            return [int(batch[n].data_ptr()) for n in names]

        def read_calibration_cache(self) -> bytes | None:
            return cache_file.read_bytes() if cache_file.is_file() else None

        def write_calibration_cache(self, cache: Any) -> None:
            cache_file.write_bytes(bytes(cache))

    return _Calibrator()


class TensorRTBackend(LSSBackend):
    """Whole per-frame model as one TensorRT engine (CUDA only; untested here, see module doc).

    Options: ``force_rebuild`` (bool), ``workspace_mb`` (int), ``calibration_images`` (list of
    ``1 x N x 3 x H x W`` tensors, for int8), ``opset``.
    """

    kind = "tensorrt"
    cpu_precisions = ()
    cuda_precisions = ("fp32", "fp16", "int8")

    def __init__(
        self,
        model: nn.Module,
        device: str | torch.device = "cuda",
        precision: str = "fp16",
        cache_dir: Any = None,
        force_rebuild: bool = False,
        workspace_mb: int = 2048,
        calibration_images: list[Tensor] | None = None,
        opset: int = DEFAULT_OPSET,
        logger: Any = None,
    ) -> None:
        self.trt = import_tensorrt()
        if torch.device(device).type != "cuda" or not torch.cuda.is_available():
            raise BackendUnavailableError(
                "tensorrt backend needs an NVIDIA GPU (device='cuda' and a CUDA build of PyTorch)"
            )
        super().__init__(model, device, precision, cache_dir, logger)
        self.force_rebuild = bool(force_rebuild)
        self.workspace_mb = int(workspace_mb)
        self.calibration_images = list(calibration_images or [])
        self.opset = int(opset)
        self.cache = EngineCache(cache_dir if cache_dir is not None else DEFAULT_CACHE_DIR)
        self.onnx_path = Path(cached_onnx(self.model, "whole", self.cache.dir, "gather_cumsum",
                                          self.opset, self.log))
        self.gpu = gpu_name(self.device)
        self._runtime: Any = None
        self._engine: Any = None
        self._context: Any = None
        self._engine_cams: int | None = None
        self._index: dict[str, Tensor] = {}

    @property
    def name(self) -> str:
        return f"tensorrt({self.precision}, {self.gpu})"

    def _calibration_hash(self) -> str:
        h = hashlib.sha256()
        for t in self.calibration_images:
            h.update(t.detach().cpu().float().numpy().tobytes())
        return h.hexdigest()[:16]

    def _load_engine(self, num_cams: int) -> None:
        trt = self.trt
        extra: dict[str, Any] = {"workspace_mb": self.workspace_mb}
        if self.precision == "int8":
            extra["calibration"] = self._calibration_hash()
        key = engine_key(self.model, self.onnx_path, num_cams, self.precision, trt.__version__,
                         self.gpu, extra)
        path, why = self.cache.resolve(key, self.force_rebuild)
        self.force_rebuild = False  # once per backend: later camera-count changes may reuse
        if path is None:
            target = self.cache.engine_path(key)
            self.log(
                f"building TensorRT engine for LSS ({self.precision}, {num_cams} cameras, "
                f"TensorRT {trt.__version__}, {self.gpu}): {why}; this can take minutes; "
                f"cache at {target}"
            )
            calibrator = None
            if self.precision == "int8":
                calibrator = make_calibrator(
                    trt, self._calibration_batches(num_cams),
                    target.with_suffix(".calib"),
                )
            data = build_engine(trt, self.onnx_path, profile_shapes(self.cfg, num_cams),
                                self.precision, self.workspace_mb, calibrator, self.log)
            path = self.cache.store(key, data)
            self.log(f"cached TensorRT engine at {path}")
        else:
            self.log(f"loading cached TensorRT engine {path}")
        logger = trt.Logger(trt.Logger.WARNING)
        trt.init_libnvinfer_plugins(logger, "")
        self._runtime = trt.Runtime(logger)  # must outlive the engine
        self._engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if self._engine is None:
            raise RuntimeError(f"TensorRT could not deserialize {path}; rebuild with "
                               "force_rebuild=True")
        self._context = self._engine.create_execution_context()
        self._engine_cams = num_cams

    def _calibration_batches(self, num_cams: int) -> list[dict[str, Tensor]]:
        if not self.calibration_images:
            raise BackendOptionError("int8 needs calibration_images (a few real frames)")
        if not self._index:
            raise RuntimeError("set_calibration() must run before an int8 build")
        return [{"imgs": im.to(self.device, torch.float32).contiguous(), **self._index}
                for im in self.calibration_images]

    def _prepare(self, geom: Tensor, calib: Calibration) -> None:
        idx = pooling_indices(geom, self.cfg, "gather_cumsum")
        self._index = {k: v.to(self.device).contiguous() for k, v in idx.items()}
        if self._engine is None or self._engine_cams != geom.shape[1]:
            self._load_engine(int(geom.shape[1]))

    def _run(self, imgs: Tensor) -> tuple[Tensor, dict[str, float]]:
        sw = Stopwatch(self.device)
        X, Y = self.cfg.grid.bev_shape
        feeds = {"imgs": imgs.to(self.device, torch.float32).contiguous(), **self._index}
        out = torch.empty(1, self.cfg.out_channels, X, Y, device=self.device)
        ctx = self._context
        for name in ("imgs", *POOLING_INPUTS["gather_cumsum"]):
            ctx.set_input_shape(name, tuple(feeds[name].shape))
            ctx.set_tensor_address(name, int(feeds[name].data_ptr()))
        ctx.set_tensor_address("logits", int(out.data_ptr()))
        stream = torch.cuda.current_stream(self.device)
        if not ctx.execute_async_v3(stream.cuda_stream):
            raise RuntimeError("TensorRT execution failed")
        result = to_cpu_float(out)
        sw.lap(WHOLE_MODEL_STAGE)
        return result, sw.stages

    def close(self) -> None:
        self._context = None
        self._engine = None
        self._runtime = None
