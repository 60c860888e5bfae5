"""Engine cache: keys change with every input they depend on, files are found / rejected /
rebuilt exactly as the TensorRT backend needs (pure Python, no TensorRT)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from lss_bev_ros.backends.engine_cache import EngineCache, EngineKey, file_hash, model_hash


def _key(**changes) -> EngineKey:
    base = EngineKey(
        model="a" * 64,
        graph="b" * 64,
        shapes={"imgs": (1, 6, 3, 128, 352), "src_index@max": (43296,)},
        precision="fp16",
        trt_version="10.3.0",
        gpu="NVIDIA Jetson AGX Orin sm87",
        extra={"workspace_mb": 2048},
    )
    return replace(base, **changes)


def test_key_is_stable_and_changes_with_every_field():
    assert _key().digest == _key().digest
    variants = [
        _key(model="c" * 64),
        _key(graph="d" * 64),
        _key(shapes={"imgs": (1, 5, 3, 128, 352), "src_index@max": (43296,)}),
        _key(precision="int8"),
        _key(trt_version="10.4.0"),
        _key(gpu="NVIDIA H100 80GB HBM3 sm90"),
        _key(extra={"workspace_mb": 4096}),
    ]
    digests = {k.digest for k in variants} | {_key().digest}
    assert len(digests) == len(variants) + 1
    # shape dict order does not matter
    a = _key(shapes={"x": (1,), "y": (2,)})
    b = _key(shapes={"y": (2,), "x": (1,)})
    assert a.digest == b.digest


def test_file_name_is_readable_and_unique():
    stem = _key().file_stem()
    assert stem.startswith("lss_aaaaaaaaaaaa_fp16_")
    assert "trt10.3.0" in stem and "nvidia-jetson-agx-orin-sm87" in stem
    assert "imgs1x6x3x128x352" in stem
    assert _key(extra={"workspace_mb": 1}).file_stem() != stem
    assert "/" not in stem and " " not in stem


def test_store_lookup_resolve(tmp_path):
    cache = EngineCache(tmp_path / "engines")
    key = _key()
    assert cache.lookup(key) is None
    assert cache.resolve(key) == (None, "no cached engine")
    path = cache.store(key, b"engine-bytes")
    assert path.read_bytes() == b"engine-bytes"
    assert cache.lookup(key) == path
    assert cache.resolve(key) == (path, "cache hit")
    forced, why = cache.resolve(key, force_rebuild=True)
    assert forced is None and "force_rebuild" in why
    meta = json.loads(cache.meta_path(key).read_text())
    assert meta["digest"] == key.digest and meta["key"]["trt_version"] == "10.3.0"
    # no temp files left behind
    assert sorted(p.suffix for p in (tmp_path / "engines").iterdir()) == [".engine", ".json"]


def test_mismatch_means_rebuild_with_a_reason(tmp_path):
    cache = EngineCache(tmp_path)
    old = _key(trt_version="8.6.1")
    cache.store(old, b"old engine")
    new = _key(trt_version="10.3.0")
    path, why = cache.resolve(new)
    assert path is None
    assert "another TensorRT version" in why
    assert cache.stale_entries(new) == [cache.engine_path(old)]


def test_tampered_or_truncated_entries_are_not_used(tmp_path):
    cache = EngineCache(tmp_path)
    key = _key()
    path = cache.store(key, b"x")
    # metadata of another key copied next to the engine: rejected
    cache.meta_path(key).write_text(json.dumps({"digest": _key(precision="fp32").digest}))
    assert cache.lookup(key) is None
    cache.store(key, b"x")
    path.write_bytes(b"")  # truncated engine
    assert cache.lookup(key) is None
    cache.meta_path(key).write_text("{not json")
    assert cache.lookup(key) is None
    with pytest.raises(ValueError, match="empty engine"):
        cache.store(key, b"")


def test_model_hash_covers_weights_names_and_config(tmp_path):
    sd = {"a.weight": torch.ones(3, 2), "b.bias": torch.zeros(2)}
    h = model_hash(sd, {"grid": [1, 2]})
    assert h == model_hash(dict(reversed(sd.items())), {"grid": [1, 2]})
    sd2 = {"a.weight": torch.ones(3, 2), "b.bias": torch.tensor([0.0, 1e-7])}
    assert model_hash(sd2, {"grid": [1, 2]}) != h
    assert model_hash({"a.weight2": sd["a.weight"], "b.bias": sd["b.bias"]},
                      {"grid": [1, 2]}) != h
    assert model_hash(sd, {"grid": [1, 3]}) != h
    assert model_hash({"w": torch.ones(2, dtype=torch.bfloat16)}) != model_hash(
        {"w": torch.ones(2)})
    f = tmp_path / "g.onnx"
    f.write_bytes(b"abc")
    assert file_hash(f) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
