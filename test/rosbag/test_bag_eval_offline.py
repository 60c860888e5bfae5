"""``lss-bev-bag eval``: offline replay evaluation over a converted bag writes the report files,
and its reference (decoded from the bag) equals one built independently from the nuScenes source
(devkit boxes + raw .pcd.bin)."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from pyquaternion import Quaternion
from rosbags.rosbag2 import StoragePlugin, Writer

from rosbag_tools.bagio import TYPESTORE, iter_raw, make_qos, open_bag
from rosbag_tools.evaluate import EvalOptions, evaluate_bag


def test_report_files(offline) -> None:
    report, out = offline
    assert report.summary["frames_processed"] == 5
    assert report.summary["frames_evaluated"] == 5 and report.summary["unmatched_count"] == 0
    with (out / "frames.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 5
    js = json.loads((out / "frames.json").read_text())
    assert [r["stamp"] for r in js] == [float(r["stamp"]) for r in rows]
    assert [f.stamp for f in report.frames] == sorted(f.stamp for f in report.frames)
    for r in js:
        assert r["tp"] + r["fp"] + r["fn"] + r["tn"] == 200 * 200
        assert r["latency_ms"] > 0 and r["ms_camera_encoder"] > 0
    summ = json.loads((out / "summary.json").read_text())
    for key in ("mean_iou", "mean_precision", "mean_recall", "pooled_iou", "throughput_fps"):
        assert key in summ
    for stage in ("preprocess", "camera_encoder", "voxel_pooling", "bev_encoder"):
        assert summ["stages_ms"][stage]["p50"] > 0
    ious = [r["iou"] for r in js if r["iou"] is not None]
    assert summ["mean_iou"] == pytest.approx(np.mean(ious))
    text = (out / "summary.txt").read_text()
    assert "IoU" in text and "camera_encoder" in text and "p99" in text
    for name in ("iou_over_time.png", "latency_hist.png"):
        img = cv2.imread(str(out / name))
        assert img is not None and img.shape[0] > 100
    samples = sorted((out / "bev_samples").glob("*.png"))
    assert len(samples) == 3
    assert cv2.imread(str(samples[0])).shape == (400, 800, 3)  # prediction | vs reference
    cap = cv2.VideoCapture(str(out / "replay.mp4"))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    assert n == 5


def _independent_reference(nusc, sample) -> np.ndarray:
    """lidar_in_boxes reference from the source files, with our own transforms."""
    sd = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
    ego = nusc.get("ego_pose", sd["ego_pose_token"])
    cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
    pts = np.fromfile(Path(nusc.dataroot) / sd["filename"], np.float32).reshape(-1, 5)[:, :3]
    pts = pts.astype(np.float64) @ Quaternion(cs["rotation"]).rotation_matrix.T + cs["translation"]
    x, y, z = pts.T
    keep = (z >= 0.3) & (z <= 3.0) & ~((x >= -1.2) & (x <= 4.2) & (y >= -1.1) & (y <= 1.1))
    ix = np.floor((x[keep] + 50.0) / 0.5).astype(int)
    iy = np.floor((y[keep] + 50.0) / 0.5).astype(int)
    ok = (ix >= 0) & (ix < 200) & (iy >= 0) & (iy < 200)
    lidar = np.zeros((200, 200), bool)
    lidar[ix[ok], iy[ok]] = True
    foot = np.zeros((200, 200), np.uint8)
    for at in sample["anns"]:
        ann = nusc.get("sample_annotation", at)
        if not ann["category_name"].startswith("vehicle."):
            continue
        box = nusc.get_box(at)
        box.translate(-np.asarray(ego["translation"]))
        box.rotate(Quaternion(ego["rotation"]).inverse)
        corners = box.bottom_corners()[:2].T  # 4 x (x, y)
        cells = np.round((corners + 50.0) / 0.5).astype(np.int32)
        cv2.fillPoly(foot, [cells[:, ::-1].copy()], 1)
    return foot.astype(bool) & lidar


def test_reference_from_bag_equals_source(offline, nusc) -> None:
    report, _ = offline
    samples = sorted(nusc.sample, key=lambda s: s["timestamp"])
    assert len(report.frames) == len(samples)
    for f, sample in zip(report.frames, samples, strict=True):
        assert f.stamp == pytest.approx(sample["timestamp"] * 1e-6)
        ref = _independent_reference(nusc, sample)
        assert ref.sum() > 0
        assert f.tp + f.fn == int(ref.sum()), f


def _copy_with_corrupt_image(src: Path, dst: Path, topic: str) -> Path:
    """Copy a bag, replacing the first message of ``topic`` by a truncated JPEG."""
    with open_bag(src) as r, Writer(dst, version=8, storage_plugin=StoragePlugin.MCAP) as w:
        conns = {}
        done = False
        for c, t, data in iter_raw(r):
            raw = data
            if c.topic not in conns:
                conns[c.topic] = w.add_connection(
                    c.topic, c.msgtype, typestore=TYPESTORE,
                    offered_qos_profiles=[make_qos(latched=c.topic == "/tf_static")])
            if c.topic == topic and not done:
                msg = TYPESTORE.deserialize_cdr(raw, c.msgtype)
                msg.data = msg.data[: len(msg.data) // 10]
                raw = TYPESTORE.serialize_cdr(msg, c.msgtype)
                done = True
            w.write(conns[c.topic], t, raw)
    shutil.copy(src.parent / f"{src.name}.rig.yaml", dst.parent / f"{dst.name}.rig.yaml")
    return dst


def test_corrupt_image_is_counted_and_camera_masked(synth_bag: Path, lss_weights,
                                                    tmp_path: Path) -> None:
    weights, thr = lss_weights
    bag = _copy_with_corrupt_image(synth_bag, tmp_path / "bad",
                                   "/cameras/cam_front/image_raw/compressed")
    report = evaluate_bag(bag, None, EvalOptions(weights=weights, threshold=thr, max_frames=1,
                                                 reference="gt_boxes", progress=False,
                                                 n_sample_images=0, torch_threads=1))
    assert report.summary["errors"] == {"corrupt_image": 1}
    assert "CAM_FRONT" in report.summary["last_errors"]["corrupt_image"]
    (f,) = report.frames
    assert f.missing == "CAM_FRONT"


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rosbag_tools.cli", *args], capture_output=True,
                          text=True, timeout=600, check=False)


def test_cli_eval(synth_bag: Path, lss_weights, tmp_path: Path) -> None:
    weights, thr = lss_weights
    r = _cli("eval", str(synth_bag), "--weights", str(tmp_path / "nope.pt"), "--quiet")
    assert r.returncode == 1 and "weights file not found" in r.stderr
    assert "Traceback" not in r.stderr
    r = _cli("eval", str(synth_bag), "--weights", str(weights), "--backend-options",
             "channels_last", "--quiet")
    assert r.returncode == 1 and "'channels_last' is not key=value" in r.stderr
    assert "Traceback" not in r.stderr
    r = _cli("eval", str(synth_bag), "--weights", str(weights), "--threshold", str(thr),
             "--max-frames", "1", "--out", str(tmp_path / "rep"), "--reference", "gt_boxes",
             "--samples", "1", "--torch-threads", "1", "--quiet", "--precision", "fp32",
             "--backend-options", "channels_last=true, jit=freeze")
    assert r.returncode == 0, r.stderr
    assert "IoU" in r.stdout and "report:" in r.stdout
    summ = json.loads((tmp_path / "rep" / "summary.json").read_text())
    assert summ["frames_evaluated"] == 1 and summ["reference"] == "gt_boxes"
    assert summ["backend"] == "torch(cpu, channels_last, jit-freeze)"


def test_offline_eval_also_scores_the_fused_grid(offline) -> None:
    report, out = offline
    fused = report.summary["fused"]
    assert fused["frames_evaluated"] == report.summary["frames_evaluated"]
    assert 0.0 <= fused["mean_iou"] <= 1.0
    stats = fused["fusion"]
    assert stats["frames"] == report.summary["frames_processed"]
    assert stats["fused"] >= stats["frames"] - 1 and stats["no_pose"] == 0  # /odom in the bag
    assert "fused IoU" in (out / "summary.txt").read_text()


def test_offline_eval_objects_are_scored_by_the_devkit(synth_bag, synth_root, lss_weights,
                                                       tmp_path) -> None:
    """--objects: detector + objects cores per frame, submission files in the official format,
    scored by the devkit's DetectionEval / TrackingEval against the dataroot's ground truth."""
    import json

    weights, thr = lss_weights
    out = tmp_path / "eval"
    report = evaluate_bag(synth_bag, out, EvalOptions(
        weights=weights, threshold=thr, progress=False, n_sample_images=0, torch_threads=1,
        objects=True, dataroot=synth_root))
    o = report.summary["objects"]
    assert o["frames"] == report.summary["frames_processed"] >= 4
    assert o["key_frames"] == o["frames"]
    for k in ("mAP", "NDS", "car_AP", "AMOTA", "AMOTP", "IDS"):
        assert k in o and (np.isnan(o[k]) or o[k] >= 0.0)
    assert 0.0 <= o["NDS"] <= 1.0
    det = json.loads(report.files["detection_submission"].read_text())
    assert set(det) == {"meta", "results"} and len(det["results"]) == o["key_frames"]
    box = next(b for boxes in det["results"].values() for b in boxes)
    assert {"sample_token", "translation", "size", "rotation", "velocity", "detection_name",
            "detection_score", "attribute_name"} <= set(box)
    assert "objects (nuScenes devkit" in (out / "summary.txt").read_text()
