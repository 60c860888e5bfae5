"""BatchedDetector with real ultralytics: one batched forward per call, clear load errors."""

from __future__ import annotations

import numpy as np
import pytest

from lss_bev_ros.detection.detector import (
    BatchedDetector,
    DetectorConfig,
    DetectorLoadError,
    resolve_weights,
)
from lss_bev_ros.detection.types import Detections


@pytest.fixture(scope="module")
def untrained() -> BatchedDetector:
    # conf 0: an untrained head still emits (low-score) boxes, so conversions are exercised
    return BatchedDetector(DetectorConfig("yolo11n.yaml", imgsz=160, conf=0.0, max_det=20))


def _images(sizes) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for h, w in sizes]


def test_one_forward_pass_for_all_cameras(untrained):
    module = untrained.torch_module
    assert module is not None
    batches = []
    hook = module.register_forward_pre_hook(lambda _m, inp: batches.append(inp[0].shape[0]))
    try:
        imgs = _images([(90, 160)] * 6)
        dets, stages = untrained.detect_timed(imgs)
    finally:
        hook.remove()
    assert batches == [6], f"expected ONE forward with batch 6, got {batches}"
    assert len(dets) == 6
    assert set(stages) == {"preprocess", "inference", "postprocess"}
    assert all(v >= 0 for v in stages.values())
    for d in dets:
        assert isinstance(d, Detections)
        assert d.image_size == (90, 160)
        assert len(d) <= 20
        if len(d):
            assert np.all(d.xyxy[:, 0] >= 0) and np.all(d.xyxy[:, 2] <= 160 + 1e-3)
            assert np.all(d.xyxy[:, 2] >= d.xyxy[:, 0])
            assert d.cls.max() < len(untrained.names)


def test_dynamic_batch_and_mixed_sizes(untrained):
    for n in (1, 3):
        assert len(untrained.detect(_images([(90, 160)] * n))) == n
    mixed = untrained.detect(_images([(90, 160), (120, 160), (160, 90)]))
    assert [d.image_size for d in mixed] == [(90, 160), (120, 160), (160, 90)]
    assert untrained.detect([]) == []


def test_live_threshold_and_class_filter(untrained):
    imgs = _images([(90, 160)] * 2)
    untrained.update(classes=[0, 2])
    try:
        for d in untrained.detect(imgs):
            assert set(d.cls.tolist()) <= {0, 2}
        untrained.update(conf=0.99)
        assert sum(len(d) for d in untrained.detect(imgs)) == 0  # untrained scores are tiny
    finally:
        untrained.update(classes=None, conf=0.0)
    with pytest.raises(ValueError, match="multiple of 32"):
        untrained.update(imgsz=100)
    with pytest.raises(ValueError, match="weights"):
        untrained.update(weights="other.pt")


def test_bad_images_are_rejected_clearly(untrained):
    with pytest.raises(ValueError, match="H x W x 3"):
        untrained.detect([np.zeros((10, 10), np.uint8)])
    with pytest.raises(ValueError, match="uint8"):
        untrained.detect([np.zeros((10, 10, 3), np.float32)])


def test_missing_and_broken_weights_raise_clear_errors(tmp_path):
    with pytest.raises(DetectorLoadError, match="not found"):
        BatchedDetector(DetectorConfig(str(tmp_path / "nope.pt")))
    with pytest.raises(DetectorLoadError, match="empty"):
        resolve_weights("")
    with pytest.raises(DetectorLoadError, match="unsupported"):
        resolve_weights(tmp_path / "model.bin")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"this is not a checkpoint")
    with pytest.raises(DetectorLoadError, match="could not load"):
        BatchedDetector(DetectorConfig(str(garbage), allow_pickle=True))
    bad_onnx = tmp_path / "bad.onnx"
    bad_onnx.write_bytes(b"\x00\x01 not onnx")
    with pytest.raises(DetectorLoadError, match=r"bad\.onnx"):
        BatchedDetector(DetectorConfig(str(bad_onnx)))


def test_engine_without_tensorrt_names_what_to_install(tmp_path):
    import importlib.util

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here; the missing-runtime path cannot be exercised")
    eng = tmp_path / "model.engine"
    eng.write_bytes(b"\x00" * 16)
    with pytest.raises(DetectorLoadError, match="tensorrt"):
        BatchedDetector(DetectorConfig(str(eng)))
