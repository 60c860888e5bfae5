"""Batched multi-camera YOLO: all images of a synchronised set in ONE forward pass.

Uses ultralytics' own predictor (``YOLO.predict`` with a list source is one batch: letterbox,
``N x 3 x H x W`` forward, NMS), so ``.pt``, ``.onnx`` (dynamic batch, onnxruntime) and TensorRT
``.engine`` files (dynamic batch 1..16, see ``export.py``) all work through the same code.
A model config such as ``yolo11n.yaml`` builds an *untrained* network (tests, benchmarks).
"""

from __future__ import annotations

import importlib.util
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from lss_bev_ros.detection.types import Detections

WEIGHT_SUFFIXES = {
    ".pt": "torch",
    ".onnx": "onnxruntime",
    ".engine": "tensorrt",
    ".torchscript": "torchscript",
    ".yaml": "torch-untrained",
    ".yml": "torch-untrained",
}
"""Weight file suffix -> backend name shown in timing messages and diagnostics."""

PICKLED_SUFFIXES = frozenset({".pt", ".torchscript"})
"""Weight formats that ultralytics loads by *unpickling* (``torch.load`` without
``weights_only``): loading one runs whatever Python code its author put into it. They load only
with ``DetectorConfig.allow_pickle`` (node parameter ``allow_pickled_weights``). ``.onnx``
(protobuf graph + literal metadata), ``.engine`` and model ``.yaml`` files execute no code."""

PICKLE_RISK = (
    "loading a {suffix} file unpickles it, which runs any Python code embedded in it "
    "(arbitrary code execution from a weights file)"
)

REPO_ROOT = Path(__file__).resolve().parents[2]


class DetectorLoadError(RuntimeError):
    """The weights are missing, of an unsupported kind, or do not load / run."""


def import_ultralytics():
    """Import ultralytics with network access and auto-install switched off (no downloads)."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "False")
    os.environ.setdefault("YOLO_VERBOSE", "False")
    import ultralytics

    return ultralytics


def resolve_weights(weights: str | Path) -> Path:
    """Resolve a weights path (absolute, relative to cwd, or relative to the repository root).

    Model configs (``*.yaml``) may also name an ultralytics built-in config (``yolo11n.yaml``).
    Raises :class:`DetectorLoadError` with what was tried when nothing is found.
    """
    text = str(weights).strip()
    if not text:
        raise DetectorLoadError("no weights given (parameter 'weights' is empty)")
    p = Path(text).expanduser()
    suffix = p.suffix.lower()
    if suffix not in WEIGHT_SUFFIXES:
        raise DetectorLoadError(
            f"unsupported weights file {text!r}: expected one of {sorted(WEIGHT_SUFFIXES)}"
        )
    candidates = [p] if p.is_absolute() else [Path.cwd() / p, REPO_ROOT / p]
    for c in candidates:
        if c.exists():
            return c
    if suffix in (".yaml", ".yml") and p.parent == Path():
        return p  # built-in ultralytics model config, resolved by ultralytics itself
    tried = ", ".join(str(c) for c in candidates)
    raise DetectorLoadError(f"weights file not found: {text!r} (tried {tried})")


def backend_name(weights: str | Path) -> str:
    """Backend label for a weights path (``torch``, ``onnxruntime``, ``tensorrt``, ...)."""
    return WEIGHT_SUFFIXES.get(Path(str(weights)).suffix.lower(), "unknown")


@dataclass(frozen=True)
class DetectorConfig:
    """Everything that changes what the detector returns.

    ``imgsz``: network input size (pixels, long side; multiple of 32), ``conf``/``iou``: score and
    NMS IoU thresholds 0..1, ``classes``: class indices to keep (None = all), ``device``: ``cpu``,
    ``cuda:0``, ``0``...; ``half``: FP16 where the backend supports it (ignored on CPU).
    """

    weights: str
    imgsz: int = 640
    conf: float = 0.25
    iou: float = 0.45
    classes: tuple[int, ...] | None = None
    half: bool = False
    device: str = "cpu"
    max_det: int = 300
    cpu_threads: int = 0  # torch intra-op threads on CPU; 0: ultralytics' default (cores - 1)
    allow_pickle: bool = False  # load .pt / .torchscript (code execution risk, see PICKLE_RISK)

    def validate(self) -> None:
        if self.imgsz < 32 or self.imgsz % 32:
            raise ValueError(f"imgsz must be a positive multiple of 32, got {self.imgsz}")
        if not 0.0 <= self.conf <= 1.0 or not 0.0 <= self.iou <= 1.0:
            raise ValueError(f"conf and iou must be in [0, 1], got {self.conf}, {self.iou}")
        if self.max_det < 1:
            raise ValueError("max_det must be >= 1")
        if self.cpu_threads < 0:
            raise ValueError("cpu_threads must be >= 0")


class BatchedDetector:
    """Ultralytics YOLO over a list of images with ONE batched forward pass per call.

    ``detect(images)``: list of H x W x 3 uint8 RGB (sizes may differ) -> list of
    :class:`Detections` in original-image pixels, same order. ``detect_timed`` also returns
    stage times (ms): ``preprocess`` (RGB->BGR, letterbox, stack), ``inference`` (forward),
    ``postprocess`` (NMS, rescaling to original pixels, conversion).
    """

    def __init__(self, config: DetectorConfig, warmup: bool = True) -> None:
        config.validate()
        self._lock = threading.Lock()
        self.config = config
        self.path = resolve_weights(config.weights)
        self.backend = backend_name(self.path)
        self._model, self.names = self._load(self.path)
        self.calls = 0
        if warmup:
            self.warmup()

    # ---- loading ---------------------------------------------------------------------------
    def _load(self, path: Path) -> tuple[Any, dict[int, str]]:
        """(ultralytics YOLO, class names); exported formats load their runtime here."""
        suffix = path.suffix.lower()
        if suffix in PICKLED_SUFFIXES and not self.config.allow_pickle:
            raise DetectorLoadError(
                f"refusing to load {path}: {PICKLE_RISK.format(suffix=suffix)}. Use the ONNX "
                f"export instead (lss-bev-export-yolo {path.name} --format onnx -> "
                f"{path.with_suffix('.onnx').name}), or, only for a file you trust, enable "
                "allow_pickled_weights (DetectorConfig.allow_pickle)"
            )
        if self.backend == "tensorrt" and importlib.util.find_spec("tensorrt") is None:
            raise DetectorLoadError(
                f"{path} is a TensorRT engine but the 'tensorrt' Python package is not installed "
                "(Jetson: install JetPack's python3-libnvinfer / TensorRT Python bindings; "
                "x86: pip install tensorrt). Or use the .onnx or .pt weights instead."
            )
        if self.backend == "onnxruntime" and importlib.util.find_spec("onnxruntime") is None:
            raise DetectorLoadError(f"{path} is ONNX but onnxruntime is not installed")
        import_ultralytics()
        from ultralytics import YOLO

        try:
            model = YOLO(str(path), task="detect")
            names = {int(k): str(v) for k, v in model.names.items()}  # loads .onnx/.engine
        except Exception as exc:
            raise DetectorLoadError(f"could not load YOLO weights {path}: {exc}") from exc
        if getattr(model, "task", "detect") != "detect":
            raise DetectorLoadError(f"{path} is a {model.task!r} model, need a 'detect' model")
        return model, names

    def warmup(self, shape: tuple[int, int] = (360, 640)) -> None:
        """Run one small batch so that lazy backends (onnx, engine) load now, not on frame 1."""
        try:
            self.detect([np.zeros((*shape, 3), dtype=np.uint8)])
        except Exception as exc:
            raise DetectorLoadError(
                f"YOLO weights {self.path} loaded but inference failed: {exc}"
            ) from exc

    # ---- live configuration ----------------------------------------------------------------
    def update(self, **changes) -> DetectorConfig:
        """Change thresholds/classes/imgsz/half/device live (weights need a new detector)."""
        if "weights" in changes or "allow_pickle" in changes:
            raise ValueError("weights cannot change live; build a new BatchedDetector")
        if "classes" in changes and changes["classes"] is not None:
            changes["classes"] = tuple(int(c) for c in changes["classes"])
        new = replace(self.config, **changes)
        new.validate()
        with self._lock:
            self.config = new  # ultralytics rebuilds its predictor when device/precision change
        return new

    @staticmethod
    def _apply_threads(cfg: DetectorConfig) -> None:
        if cfg.cpu_threads:
            import torch

            if torch.get_num_threads() != cfg.cpu_threads:
                torch.set_num_threads(cfg.cpu_threads)

    @property
    def torch_module(self):
        """The ``torch.nn.Module`` that runs inference (``.pt``/``.yaml`` weights, else None).

        After the first call this is the (fused) network inside ultralytics' predictor.
        """
        import torch

        predictor = getattr(self._model, "predictor", None)
        m = getattr(getattr(predictor, "model", None), "model", None)
        if m is None:
            m = getattr(self._model, "model", None)
        return m if isinstance(m, torch.nn.Module) else None

    @property
    def class_names(self) -> list[str]:
        return [self.names[k] for k in sorted(self.names)]

    # ---- inference -------------------------------------------------------------------------
    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """Detect in all ``images`` (H x W x 3 uint8 RGB) in one batched forward pass."""
        return self.detect_timed(images)[0]

    def detect_timed(
        self, images: Sequence[np.ndarray]
    ) -> tuple[list[Detections], dict[str, float]]:
        """Like :meth:`detect`, plus ``{preprocess, inference, postprocess}`` times in ms."""
        if len(images) == 0:
            return [], {"preprocess": 0.0, "inference": 0.0, "postprocess": 0.0}
        for i, im in enumerate(images):
            if not (isinstance(im, np.ndarray) and im.ndim == 3 and im.shape[2] == 3):
                raise ValueError(f"image {i}: expected H x W x 3, got {getattr(im, 'shape', im)}")
            if im.dtype != np.uint8:
                raise ValueError(f"image {i}: expected uint8, got {im.dtype}")
        with self._lock:
            cfg = self.config
            self._apply_threads(cfg)
            t0 = time.perf_counter()
            bgr = [cv2.cvtColor(im, cv2.COLOR_RGB2BGR) for im in images]
            t1 = time.perf_counter()
            results = self._model.predict(
                bgr,
                imgsz=cfg.imgsz,
                conf=cfg.conf,
                iou=cfg.iou,
                classes=list(cfg.classes) if cfg.classes is not None else None,
                quantize=16 if cfg.half else None,  # ultralytics 8.4: fp16 via quantize=16
                device=cfg.device,
                max_det=cfg.max_det,
                verbose=False,
            )
            out = []
            for r, im in zip(results, images, strict=True):
                data = r.boxes.data.cpu().numpy() if r.boxes is not None else np.zeros((0, 6))
                out.append(Detections(data[:, :4], data[:, 4], data[:, 5], im.shape[:2]))
            t2 = time.perf_counter()
            self._apply_threads(cfg)  # ultralytics resets threads when it (re)builds a predictor
            self.calls += 1
        n = len(images)
        speed = results[0].speed  # ultralytics: per-image average of the batch, ms
        pre = (t1 - t0) * 1e3 + float(speed.get("preprocess") or 0.0) * n
        inf = float(speed.get("inference") or 0.0) * n
        post = max(0.0, (t2 - t0) * 1e3 - pre - inf)
        return out, {"preprocess": pre, "inference": inf, "postprocess": post}
