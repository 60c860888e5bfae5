"""Six cameras batched (ONE forward pass) versus one call per image, same model, one run.

Each round processes one synchronised set of six camera images end to end in both modes,
interleaved (batched, per-image, batched, ...) so that CPU contention hits both alike:

* preprocess (RGB->BGR, letterbox, stack), inference (forward), postprocess (NMS, rescale),
* tracking (one ultralytics BYTETracker per camera; each mode has its own trackers),
* convert (annotated image at 0.5 scale + ``lss_bev_ros/Detection2DArray`` and
  ``sensor_msgs/Image`` messages, i.e. what the node publishes, without DDS).

Prints per-stage medians (ms per six-camera set) and the throughput ratio.

    python bench/detector_batching.py                     # committed weights, synthetic frames
    python bench/detector_batching.py --weights yolo11n.yaml --imgsz 640 --rounds 20
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lss_bev_ros.calibration import NUSCENES_CAMERAS  # noqa: E402
from lss_bev_ros.detection.detector import BatchedDetector, DetectorConfig  # noqa: E402
from lss_bev_ros.detection.tracking import MultiCameraTracker  # noqa: E402
from lss_bev_ros.detection.visualize import annotate  # noqa: E402

DEFAULT_WEIGHTS = REPO / "models" / "yolo_synth" / "yolo11n_synth.onnx"
STAGES = ("preprocess", "inference", "postprocess", "tracking", "convert")


def load_frames(dataroot: str | None, n_sets: int) -> list[list[np.ndarray]]:
    """``n_sets`` six-camera sets (H x W x 3 RGB) from a synthetic nuScenes root (made if None)."""
    from nuscenes.nuscenes import NuScenes

    tmp = None
    if dataroot is None:
        from lss_bev_ros.data.synthetic import generate_dataset

        tmp = tempfile.TemporaryDirectory(prefix="det_bench_")
        dataroot = tmp.name
        generate_dataset(dataroot, n_scenes=1, samples_per_scene=n_sets, seed=11,
                         progress=False)
    nusc = NuScenes(version="v1.0-mini", dataroot=dataroot, verbose=False)
    sets = []
    for sample in nusc.sample[:n_sets]:
        imgs = []
        for cam in NUSCENES_CAMERAS:
            path = nusc.get_sample_data_path(sample["data"][cam])
            imgs.append(cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB))
        sets.append(imgs)
    if tmp is not None:
        tmp.cleanup()
    return sets


def make_converter():
    """Message conversion as in detector_node when the messages are built, else arrays only."""
    try:
        from builtin_interfaces.msg import Time

        from lss_bev_ros.nodes.detector_node import detections_msg, image_msg
    except ImportError as exc:  # ROS messages not built: convert to bytes only
        print(f"note: ROS messages unavailable ({exc}); 'convert' excludes message building")
        from lss_bev_ros.conversions import rgb_to_image_bytes

        def convert(cam, rgb, dets, names):
            rgb_to_image_bytes(annotate(rgb, dets, names, 0.5))

        return convert

    stamp = Time(sec=1, nanosec=0)

    def convert(cam, rgb, dets, names):
        detections_msg(stamp, cam, dets, names)
        image_msg(stamp, cam.lower(), annotate(rgb, dets, names, 0.5))

    return convert


def run_set(det, tracker, convert, imgs, batched: bool) -> dict[str, float]:
    """Process one six-camera set; stage times in ms."""
    st = dict.fromkeys(STAGES, 0.0)
    t0 = time.perf_counter()
    if batched:
        dets, s = det.detect_timed(imgs)
        for k in ("preprocess", "inference", "postprocess"):
            st[k] += s[k]
    else:
        dets = []
        for im in imgs:
            d, s = det.detect_timed([im])
            dets.append(d[0])
            for k in ("preprocess", "inference", "postprocess"):
                st[k] += s[k]
    t1 = time.perf_counter()
    tracked = [tracker.update(cam, d) for cam, d in zip(NUSCENES_CAMERAS, dets, strict=True)]
    t2 = time.perf_counter()
    for cam, im, d in zip(NUSCENES_CAMERAS, imgs, tracked, strict=True):
        convert(cam, im, d, det.names)
    t3 = time.perf_counter()
    st["tracking"] = (t2 - t1) * 1e3
    st["convert"] = (t3 - t2) * 1e3
    st["total"] = (t3 - t0) * 1e3
    st["detections"] = float(sum(len(d) for d in tracked))
    return st


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights", default=str(DEFAULT_WEIGHTS) if DEFAULT_WEIGHTS.exists()
                    else "yolo11n.yaml")
    ap.add_argument("--allow-pickle", action="store_true",
                    help="allow .pt weights (unpickling runs code inside the file: trusted only)")
    ap.add_argument("--imgsz", type=int, default=416)
    ap.add_argument("--conf", type=float, default=0.25)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--rounds", type=int, default=12, help="measured rounds per mode")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--sets", type=int, default=6, help="distinct camera sets cycled through")
    ap.add_argument("--dataroot", default=None, help="synthetic nuScenes root (default: make)")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch CPU threads (0: ultralytics' default, cores - 1)")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args(argv)

    import torch

    sets = load_frames(args.dataroot, args.sets)
    det = BatchedDetector(DetectorConfig(args.weights, imgsz=args.imgsz, conf=args.conf,
                                         device=args.device, cpu_threads=args.threads,
                                         allow_pickle=args.allow_pickle))
    trackers = {m: MultiCameraTracker(NUSCENES_CAMERAS) for m in ("batched", "per_image")}
    convert = make_converter()
    h, w = sets[0][0].shape[:2]
    print(f"weights {det.path.name} ({det.backend}), imgsz {args.imgsz}, device {args.device}, "
          f"torch threads {torch.get_num_threads()}, 6 cameras of {w}x{h}, "
          f"{args.rounds} rounds per mode (+{args.warmup} warm-up), interleaved")
    res: dict[str, list[dict[str, float]]] = {"batched": [], "per_image": []}
    for r in range(args.warmup + args.rounds):
        imgs = sets[r % len(sets)]
        order = ("batched", "per_image") if r % 2 == 0 else ("per_image", "batched")
        for mode in order:
            st = run_set(det, trackers[mode], convert, imgs, mode == "batched")
            if r >= args.warmup:
                res[mode].append(st)

    med = {m: {k: statistics.median(s[k] for s in v) for k in (*STAGES, "total", "detections")}
           for m, v in res.items()}
    print(f"\n{'ms per 6-camera set (median)':<30}{'batched':>10}{'per-image':>11}{'ratio':>8}")
    for k in (*STAGES, "total"):
        b, p = med["batched"][k], med["per_image"][k]
        print(f"{k:<30}{b:>10.1f}{p:>11.1f}{p / b if b > 0 else float('nan'):>8.2f}")
    thr = {m: 1000.0 / med[m]["total"] for m in med}
    ratio = thr["batched"] / thr["per_image"]
    print(f"{'sets/s':<30}{thr['batched']:>10.2f}{thr['per_image']:>11.2f}")
    print(f"{'images/s':<30}{6 * thr['batched']:>10.1f}{6 * thr['per_image']:>11.1f}")
    print(f"detections per set: {med['batched']['detections']:.0f} batched, "
          f"{med['per_image']['detections']:.0f} per-image")
    print(f"\nthroughput ratio batched / per-image: {ratio:.2f}x (goal >= 1.5x)")
    if args.json:
        Path(args.json).write_text(json.dumps({"median_ms": med, "sets_per_s": thr,
                                               "ratio": ratio, "args": vars(args)}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
