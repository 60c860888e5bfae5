"""``lss-bev-export`` end to end: a real checkpoint and rig YAML in, ONNX files + indices +
manifest out, read back with onnx / onnxruntime / numpy (no pickles)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import torch
from backend_testlib import calibration_tensors, random_images

from lss_bev_ros.calibration import CameraCalibration, RigCalibration, load_rig_yaml, save_rig_yaml
from lss_bev_ros.lss.checkpoint import save_checkpoint
from lss_bev_ros.lss.config import LSSConfig
from lss_bev_ros.lss.geometry import nuscenes_like_rig
from lss_bev_ros.lss.model import LiftSplatShoot


def _cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lss_bev_ros.backends.export", *args],
                          capture_output=True, text=True, timeout=timeout, check=False)


def test_help():
    res = _cli("--help", timeout=120)
    assert res.returncode == 0
    for flag in ("--checkpoint", "--rig", "--graphs", "--pooling-op", "--opset", "--verify"):
        assert flag in res.stdout


def test_export_checkpoint_for_a_rig(tmp_path):
    cfg = LSSConfig.small()
    torch.manual_seed(1)
    model = LiftSplatShoot(cfg).eval()
    ckpt = save_checkpoint(tmp_path / "lss.pt", model)
    # a 4-camera rig with a 1280 x 720 front camera: exercises per-camera image sizes
    K, T = nuscenes_like_rig(6)
    cams = []
    for i in (0, 1, 2, 4):
        k = K[i].numpy().copy()
        w, h = (1280, 720) if i == 1 else (1600, 900)
        if i == 1:
            k[:2] *= 0.8
        cams.append(CameraCalibration(cfg.image.cams[i], w, h, k, T[i, :3, :3].numpy(),
                                      T[i, :3, 3].numpy()))
    rig = RigCalibration(tuple(cams))
    rig_file = save_rig_yaml(rig, tmp_path / "rig.yaml")
    out = tmp_path / "export"
    res = _cli("--checkpoint", str(ckpt), "--rig", str(rig_file), "--out", str(out),
               "--graphs", "whole", "baked", "--verify")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "whole:" in res.stdout and "ok" in res.stdout and "FAILED" not in res.stdout

    manifest = json.loads((out / "manifest.json").read_text())
    rig = load_rig_yaml(rig_file)  # what the CLI used (YAML rounds the values)
    assert manifest["rig_fingerprint"] == rig.fingerprint()
    assert manifest["cameras"] == [c.name for c in cams]
    assert manifest["graphs"]["whole"]["inputs"]["imgs"] == [1, 4, 3, 64, 176]
    assert manifest["graphs"]["whole"]["verify_max_abs_err"] < 1e-3
    idx = dict(np.load(out / manifest["pooling_index_file"], allow_pickle=False))
    assert set(idx) == {"src_index", "seg_end", "cell_segment"}

    # independent check: run the files with the indices from the npz against torch
    calib = calibration_tensors(cfg, rig)
    imgs = random_images(cfg, 4, seed=9)
    with torch.no_grad():
        ref = model(imgs, *calib).numpy()
    whole = out / "lss_whole.onnx"
    onnx.checker.check_model(str(whole), full_check=True)
    sess = ort.InferenceSession(str(whole), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"imgs": imgs.numpy(), **idx})[0]
    assert np.abs(got - ref).max() < 1e-3
    baked = ort.InferenceSession(str(out / "lss_baked.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in baked.get_inputs()] == ["imgs"]
    assert np.abs(baked.run(None, {"imgs": imgs.numpy()})[0] - ref).max() < 1e-3


def test_bad_inputs_exit_2_with_a_message(tmp_path):
    res = _cli("--checkpoint", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "o"),
               timeout=120)
    assert res.returncode == 2 and "missing.pt" in res.stderr
    bad = tmp_path / "rig.yaml"
    bad.write_text("cameras: 3\n")
    res = _cli("--random-weights", "--small", "--rig", str(bad), "--out", str(tmp_path / "o"),
               timeout=120)
    assert res.returncode == 2 and "cameras" in res.stderr
