"""Serialized-engine cache: keys, file layout and staleness checks (pure Python, no TensorRT).

An engine is only valid for the exact network (model weights + config + exported graph), input
shapes, precision, TensorRT version and GPU it was built for. The cache key hashes all of them;
the file name keeps the human-readable parts so a directory listing tells what is there::

    <cache_dir>/lss_<model12>_<precision>_<shapes>_trt<version>_<gpu>_<key12>.engine
    <cache_dir>/lss_..._<key12>.json            # the key's inputs, for humans and for checks

A lookup with a different key finds no file and the backend rebuilds (``force_rebuild`` rebuilds
even on a hit). Writes are atomic (temp file + rename) so a crash mid-build never leaves a
truncated engine that a later run would try to load.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: Bumped when the exported graph layout changes (input names, pooling formulation, ...).
GRAPH_FORMAT_VERSION = 1


def model_hash(state_dict: Mapping[str, Any], config: Mapping[str, Any] | None = None) -> str:
    """SHA-256 (hex) of a model: every tensor's name, shape, dtype and bytes, plus its config.

    ``state_dict`` values are torch tensors or numpy arrays (anything with ``.shape``/``.dtype``
    and convertible by ``numpy.asarray`` after ``.cpu()``); ``config`` any JSON-able mapping.
    """
    import numpy as np

    h = hashlib.sha256()
    for name in sorted(state_dict):
        value = state_dict[name]
        if hasattr(value, "detach"):
            value = value.detach().cpu()
            dtype = str(value.dtype)
            if dtype == "torch.bfloat16":  # numpy has no bfloat16: hash the raw 16-bit words
                import torch

                value = value.view(torch.int16)
            arr = value.numpy()
        else:
            arr = np.asarray(value)
            dtype = str(arr.dtype)
        h.update(name.encode())
        h.update(f"{arr.shape}|{dtype}|".encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    if config is not None:
        h.update(json.dumps(config, sort_keys=True, default=str).encode())
    return h.hexdigest()


def file_hash(path: str | Path) -> str:
    """SHA-256 (hex) of a file's bytes (e.g. the ONNX an engine is built from)."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _slug(text: str, max_len: int = 40) -> str:
    s = re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-").lower()
    return (s or "unknown")[:max_len]


def shapes_tag(shapes: Mapping[str, Sequence[int]]) -> str:
    """Compact tag of input shapes, e.g. ``imgs1x6x3x128x352``; sorted by input name."""
    return "_".join(
        _slug(name, 12) + "x".join(str(int(d)) for d in dims)
        for name, dims in sorted(shapes.items())
    )


@dataclass(frozen=True)
class EngineKey:
    """Everything a serialized TensorRT engine depends on.

    ``model``: :func:`model_hash` of weights + config; ``graph``: hash of the ONNX it is built
    from (covers exporter/opset changes); ``shapes``: input name -> shape (min/opt/max are the
    same for the static graphs here; a dynamic profile is given as ``"name@min"`` etc.);
    ``precision``: fp32 | fp16 | int8; ``trt_version``: ``tensorrt.__version__``; ``gpu``: device
    name (e.g. ``torch.cuda.get_device_name()``) plus compute capability; ``extra``: build flags
    that change the engine (workspace, calibration set hash, ...).
    """

    model: str
    graph: str
    shapes: dict[str, tuple[int, ...]]
    precision: str
    trt_version: str
    gpu: str
    extra: dict[str, Any] = field(default_factory=dict)
    format_version: int = GRAPH_FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["shapes"] = {k: [int(x) for x in v] for k, v in sorted(self.shapes.items())}
        return d

    @property
    def digest(self) -> str:
        """SHA-256 (hex) of the canonical JSON of all fields."""
        blob = json.dumps(self.to_dict(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()

    def file_stem(self) -> str:
        """Human-readable, collision-safe file stem (the digest suffix makes it unique)."""
        return "_".join(
            (
                "lss",
                self.model[:12],
                _slug(self.precision, 8),
                shapes_tag(self.shapes),
                "trt" + _slug(self.trt_version, 16),
                _slug(self.gpu, 32),
                self.digest[:12],
            )
        )


class EngineCache:
    """Directory of serialized engines addressed by :class:`EngineKey`."""

    def __init__(self, cache_dir: str | Path) -> None:
        self.dir = Path(cache_dir).expanduser()

    def engine_path(self, key: EngineKey) -> Path:
        return self.dir / f"{key.file_stem()}.engine"

    def meta_path(self, key: EngineKey) -> Path:
        return self.dir / f"{key.file_stem()}.json"

    def lookup(self, key: EngineKey) -> Path | None:
        """Path of a valid cached engine for ``key``, or None (missing, empty, or its metadata
        does not match the key - e.g. a hand-copied file)."""
        path, meta = self.engine_path(key), self.meta_path(key)
        if not path.is_file() or path.stat().st_size == 0 or not meta.is_file():
            return None
        try:
            stored = json.loads(meta.read_text())
        except (OSError, ValueError):
            return None
        if stored.get("digest") != key.digest:
            return None
        return path

    def store(self, key: EngineKey, engine_bytes: bytes) -> Path:
        """Atomically write ``engine_bytes`` and its metadata; returns the engine path."""
        if not engine_bytes:
            raise ValueError("refusing to cache an empty engine")
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.engine_path(key)
        _atomic_write(path, engine_bytes)
        meta = {"digest": key.digest, "key": key.to_dict(), "bytes": len(engine_bytes)}
        _atomic_write(self.meta_path(key), json.dumps(meta, indent=2, sort_keys=True).encode())
        return path

    def resolve(self, key: EngineKey, force_rebuild: bool = False) -> tuple[Path | None, str]:
        """``(cached engine path or None, reason)``: None means build (forced, missing, or
        only engines for another TensorRT version / GPU / precision / shapes exist)."""
        if force_rebuild:
            return None, "force_rebuild requested"
        path = self.lookup(key)
        if path is not None:
            return path, "cache hit"
        stale = self.stale_entries(key)
        if stale:
            return None, (
                f"no engine for this key; {len(stale)} engine(s) of this model exist for another "
                "TensorRT version, GPU, precision or input shape"
            )
        return None, "no cached engine"

    def stale_entries(self, key: EngineKey) -> list[Path]:
        """Engines cached for the same model but a different key (other TensorRT version, GPU,
        precision or shapes): listed so the backend can log why it rebuilds."""
        prefix = f"lss_{key.model[:12]}_"
        return sorted(
            p for p in self.dir.glob(f"{prefix}*.engine") if p != self.engine_path(key)
        )


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        Path(tmp).chmod(0o644)  # mkstemp creates 0600; cached artefacts are not secrets
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
