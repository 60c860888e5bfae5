"""Inference backends for the LSS model (no ROS): one interface, chosen by name.

```python
from lss_bev_ros.backends import create_backend
backend = create_backend("onnxruntime", model, device="cpu", precision="fp32", cache_dir=None)
backend.set_calibration(rots, trans, intrins, post_rots, post_trans)  # 1 x N x ... tensors
logits, stage_ms = backend.infer(imgs)  # 1 x N x 3 x H x W -> 1 x 1 x 200 x 200 (CPU), ms
```

* ``torch``: eager PyTorch; options ``channels_last``, ``jit`` (``freeze`` / ``optimize``),
  ``reduced_stages`` (which encoders autocast to bf16/fp16). fp32 and bf16 on CPU; fp32, fp16,
  bf16 on CUDA. Tested here (CPU).
* ``torch_compile``: ``torch.compile`` of both encoders; option ``mode``. Tested here (CPU).
* ``cuda_graphs``: the whole per-frame model captured in one CUDA graph; fp32 / fp16 / bf16.
  CUDA only: **untested here** (no GPU on the development machines).
* ``onnxruntime``: the exported static graph (``mode`` whole / stages) on the CPU, CUDA or
  TensorRT execution providers; fp32 (fp16 through the TensorRT EP). ``mode="stages",
  bev_encoder="torch_bf16"`` pairs the onnxruntime camera encoder with a bf16 torch BEV
  encoder (CPU). Tested here: CPU EP only.
* ``tensorrt``: a native TensorRT engine built from the whole-graph ONNX and cached; fp32 /
  fp16 / int8. Tested here: the ONNX it consumes and the cache keys only (no TensorRT here).

Stage names in ``stage_ms``: ``geometry`` (calibration -> indices, ~0 unless it changed), then
``camera_encoder``, ``voxel_pooling``, ``bev_encoder`` for staged backends, or ``whole_model``
for backends that run the per-frame model as one graph (``onnxruntime`` mode whole,
``cuda_graphs``, ``tensorrt``). A backend whose runtime is missing raises
:class:`BackendUnavailableError` naming what to install; there is never a silent fallback.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from .base import (
    PRECISIONS,
    STAGES,
    WHOLE_MODEL_STAGE,
    BackendOptionError,
    BackendUnavailableError,
    LSSBackend,
)

BACKENDS: Mapping[str, tuple[str, str]] = {
    "torch": ("torch_backends", "TorchBackend"),
    "torch_compile": ("torch_backends", "TorchCompileBackend"),
    "cuda_graphs": ("torch_backends", "CudaGraphsBackend"),
    "onnxruntime": ("onnxruntime_backend", "OnnxRuntimeBackend"),
    "tensorrt": ("tensorrt_backend", "TensorRTBackend"),
}
"""The one backend registry: name -> (module in this package, class). bev_node's ``backend``
choices, ``lss-bev-bag eval --backend``, ``lss-bev-export`` and the README table read it."""

BACKEND_NAMES: tuple[str, ...] = tuple(BACKENDS)


def backend_class(name: str) -> type[LSSBackend]:
    """The class registered as ``name`` (imported on first use: runtimes load lazily)."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {list(BACKEND_NAMES)}")
    module, cls = BACKENDS[name]
    found: type[LSSBackend] = getattr(importlib.import_module(f"{__name__}.{module}"), cls)
    return found


def backend_option_names(name: str) -> tuple[str, ...]:
    """Keyword options backend ``name`` accepts beyond (model, device, precision, cache_dir)."""
    sig = inspect.signature(backend_class(name).__init__)
    return tuple(p for p in sig.parameters
                 if p not in ("self", "model", "device", "precision", "cache_dir", "logger"))


def create_backend(
    name: str,
    model: nn.Module,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    cache_dir: Any = None,
    **options: Any,
) -> LSSBackend:
    """Build backend ``name`` for ``model`` (a ``LiftSplatShoot``); see the module table.

    ``cache_dir`` holds exported ONNX files and TensorRT engines (None: ONNX in memory, engines
    in ``~/.cache/lss_bev_ros/engines``). Raises :class:`BackendUnavailableError` when the
    runtime is missing and :class:`BackendOptionError` for unsupported combinations.
    """
    cls = backend_class(str(name))
    known = backend_option_names(str(name))
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise BackendOptionError(f"{name} backend has no option(s) {unknown}; its options: "
                                 f"{list(known)}")
    return cls(model, device=device, precision=precision, cache_dir=cache_dir, **options)


def parse_backend_options(text: str) -> dict[str, Any]:
    """``"mode=stages, bev_encoder=torch_bf16, threads=1"`` -> keyword options of
    :func:`create_backend` (the form a ROS string parameter or a CLI flag carries).

    Values: ``true`` / ``false`` -> bool, integers -> int, decimals -> float, ``a|b`` -> tuple
    of strings, anything else -> str. Empty text -> ``{}``. Raises :class:`BackendOptionError`
    for an item that is not ``key=value`` or a key given twice; unknown keys are left for
    :func:`create_backend` to reject with the backend's name.
    """
    out: dict[str, Any] = {}
    for item in (s.strip() for s in text.split(",")):
        if not item:
            continue
        key, sep, raw = (p.strip() for p in item.partition("="))
        if not sep or not key.isidentifier() or not raw:
            raise BackendOptionError(f"backend option {item!r} is not key=value")
        if key in out:
            raise BackendOptionError(f"backend option {key!r} given twice")
        out[key] = _option_value(raw)
    return out


def _option_value(raw: str) -> Any:
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    if "|" in raw:
        return tuple(p.strip() for p in raw.split("|") if p.strip())
    for cast in (int, float):
        try:
            return cast(raw)
        except ValueError:
            pass
    return raw


def backend_availability(device: str = "cpu") -> dict[str, str | None]:
    """``{name: None if it can run on device here, else the reason}`` (cheap: no model)."""
    out: dict[str, str | None] = {}
    cuda = torch.cuda.is_available()
    for name in BACKEND_NAMES:
        reason: str | None = None
        if name in ("cuda_graphs", "tensorrt") and (device != "cuda" or not cuda):
            reason = f"{name} needs an NVIDIA GPU (device='cuda')"
        if name == "tensorrt" and reason is None:
            try:
                import tensorrt  # noqa: F401
            except ImportError:
                from .tensorrt_backend import TRT_INSTALL_HINT

                reason = TRT_INSTALL_HINT
        if name == "onnxruntime":
            try:
                import onnxruntime as ort
            except ImportError:
                reason = "pip install onnxruntime (onnxruntime-gpu for CUDA)"
            else:
                providers = ort.get_available_providers()
                if device == "cuda" and "CUDAExecutionProvider" not in providers:
                    reason = "onnxruntime has no CUDAExecutionProvider: pip install onnxruntime-gpu"
        if device == "cuda" and not cuda and reason is None:
            reason = "torch.cuda.is_available() is False"
        out[name] = reason
    return out


__all__ = [
    "BACKENDS",
    "BACKEND_NAMES",
    "PRECISIONS",
    "STAGES",
    "WHOLE_MODEL_STAGE",
    "BackendOptionError",
    "BackendUnavailableError",
    "LSSBackend",
    "backend_availability",
    "backend_class",
    "backend_option_names",
    "create_backend",
    "parse_backend_options",
]
