"""lss-bev-export-yolo: ONNX with dynamic batch (real ultralytics exporter, real onnxruntime),
and a clear error where TensorRT is missing."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from det_testutil import COMMITTED_PT, REPO

from lss_bev_ros.detection.detector import BatchedDetector, DetectorConfig
from lss_bev_ros.detection.evaluate import box_iou
from lss_bev_ros.detection.export import ExportError, export_yolo, main


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory):
    pt = tmp_path_factory.mktemp("export") / "det.pt"
    pt.write_bytes(COMMITTED_PT.read_bytes())  # the export source: our own pickled .pt
    return pt, export_yolo(pt, "onnx", imgsz=320, batch=16)


def test_onnx_has_dynamic_batch_and_runs_a_batch_of_six(onnx_model):
    pt, path = onnx_model
    assert path == pt.with_suffix(".onnx") and path.is_file()
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param, "batch dimension must be dynamic"
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    for n in (1, 6):
        out = sess.run(None, {name: np.random.default_rng(n).random((n, 3, 192, 320),
                                                                    dtype=np.float32)})[0]
        assert out.shape[0] == n
        assert out.shape[1] == 4 + 4  # box + our four classes
    # reusing an existing export is explicit and fast
    assert export_yolo(pt, "onnx", imgsz=320) == path


def test_onnx_detector_matches_pytorch(onnx_model):
    from det_testutil import synthetic_camera_set

    from lss_bev_ros.data.synthetic import generate_dataset

    pt, path = onnx_model
    root = path.parent / "synth"
    generate_dataset(root, n_scenes=1, samples_per_scene=1, seed=33, progress=False)
    imgs = list(synthetic_camera_set(root, 0, scale=0.5).values())
    ref = BatchedDetector(DetectorConfig(str(pt), imgsz=320, conf=0.3,
                                         allow_pickle=True)).detect(imgs)  # made by this test
    onx = BatchedDetector(DetectorConfig(str(path), imgsz=320, conf=0.3))
    assert onx.backend == "onnxruntime"
    got = onx.detect(imgs)
    assert len(got) == 6
    n_ref = sum(len(d) for d in ref)
    assert n_ref > 0
    matched = 0
    for a, b in zip(ref, got, strict=True):
        if len(a) and len(b):
            matched += int((box_iou(a.xyxy, b.xyxy).max(axis=1) > 0.9).sum())
    assert matched >= 0.9 * n_ref, f"ONNX and PyTorch disagree: {matched}/{n_ref} boxes match"


def test_cli_help_and_engine_without_tensorrt(tmp_path, capsys):
    res = subprocess.run([sys.executable, "-m", "lss_bev_ros.detection.export", "--help"],
                         cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0
    for word in ("--format", "engine", "--workspace", "--batch", "--half"):
        assert word in res.stdout
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed: the missing-runtime message cannot be exercised")
    pt = tmp_path / "w.pt"
    pt.write_bytes(COMMITTED_PT.read_bytes())  # the export source: our own pickled .pt
    assert main([str(pt), "--format", "engine", "--half", "--batch", "16"]) == 2
    err = capsys.readouterr().err
    assert "tensorrt" in err.lower() and "pip install tensorrt" in err
    with pytest.raises(ExportError, match=r"not found|unsupported"):
        export_yolo(tmp_path / "missing.pt")
