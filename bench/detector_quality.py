"""Detection and tracking quality on HELD-OUT synthetic nuScenes-format sequences.

Held-out = generated with a seed no training run used (training: seed 0). GT are the projected
3D annotation boxes (``lss_bev_ros.detection.gt``), tracking GT ids the nuScenes instances.
Prints precision/recall at the node's score threshold, AP@0.5 per class and mAP@0.5, and
tracking MOTA / IDF1 / ID switches (``motmetrics``), for the given weights and, side by side,
for an untrained network of the same architecture (``--baseline``).

    python bench/detector_quality.py                        # committed weights, 4 scenes
    python bench/detector_quality.py --weights runs/x/best.pt --scenes 8 --imgsz 416

Note: key frames are 2 Hz (nuScenes' annotation rate), so objects move a lot between frames;
ID switches are measured under that condition.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lss_bev_ros.calibration import NUSCENES_CAMERAS  # noqa: E402
from lss_bev_ros.detection.detector import BatchedDetector, DetectorConfig  # noqa: E402
from lss_bev_ros.detection.evaluate import (  # noqa: E402
    evaluate_on_scenes,
    evaluate_sets,
    rendered_sequences,
)
from lss_bev_ros.detection.gt import CLASS_NAMES, scenes_by_name  # noqa: E402
from lss_bev_ros.detection.train_synth import untrained_weights  # noqa: E402

DEFAULT_WEIGHTS = REPO / "models" / "yolo_synth" / "yolo11n_synth.onnx"


def _fmt(v: float) -> str:
    return "  n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:5.3f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights", default=str(DEFAULT_WEIGHTS))
    ap.add_argument("--dataroot", default=None, help="held-out synthetic root (default: make)")
    ap.add_argument("--scenes", type=int, default=4)
    ap.add_argument("--samples-per-scene", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1000, help="held-out seed (training used 0)")
    ap.add_argument("--imgsz", type=int, default=416)
    ap.add_argument("--conf", type=float, default=0.25, help="score threshold for P/R, tracks")
    ap.add_argument("--min-height", type=float, default=16.0,
                    help="ignore GT boxes lower than this (original pixels)")
    ap.add_argument("--baseline", action="store_true", help="also evaluate an untrained net")
    ap.add_argument("--track-rate", type=float, default=10.0,
                    help="also track on held-out scenes rendered at this rate, Hz (0: off)")
    ap.add_argument("--track-scenes", type=int, default=2)
    ap.add_argument("--track-seconds", type=float, default=3.0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    from nuscenes.nuscenes import NuScenes

    tmp = None
    root = args.dataroot
    if root is None:
        from lss_bev_ros.data.synthetic import generate_dataset

        tmp = tempfile.TemporaryDirectory(prefix="det_quality_")
        root = tmp.name
        generate_dataset(root, args.scenes, args.samples_per_scene, args.seed, progress=False)
    nusc = NuScenes(version="v1.0-mini", dataroot=str(root), verbose=False)
    scenes = sorted(scenes_by_name(nusc))
    runs = [("trained", args.weights)]
    if args.baseline:  # same architecture and classes, random weights
        wdir = tempfile.mkdtemp(prefix="det_untrained_")
        runs.append(("untrained", str(untrained_weights(Path(wdir) / "untrained.pt"))))
    report = {}
    for label, weights in runs:
        det = BatchedDetector(DetectorConfig(weights, imgsz=args.imgsz, conf=0.01,
                                             allow_pickle=label == "untrained"))  # made here
        res = evaluate_on_scenes(det, nusc, scenes, NUSCENES_CAMERAS, args.conf,
                                 args.min_height)
        report[label] = {"detection": res.detection, "tracking": res.tracking,
                         "sets": res.sets, "seconds": res.seconds, "weights": str(weights)}
        if args.track_rate > 0:
            seqs = rendered_sequences(args.seed, range(args.track_scenes), NUSCENES_CAMERAS,
                                      args.track_rate, args.track_seconds)
            fast = evaluate_sets(det, seqs, args.conf, args.min_height)
            report[label]["tracking_fast"] = fast.tracking
            report[label]["detection_fast"] = fast.detection
    if tmp is not None:
        tmp.cleanup()

    print(f"held-out: {len(scenes)} scenes x {args.samples_per_scene} key frames (2 Hz) x 6 "
          f"cameras (seed {args.seed}), imgsz {args.imgsz}, GT lower than "
          f"{args.min_height:.0f} px ignored")
    if args.track_rate > 0:
        print(f"camera-rate tracking: first {args.track_scenes} of those scenes rendered at "
              f"{args.track_rate:g} Hz for {args.track_seconds:g} s")
    head = f"{'':<24}" + "".join(f"{k:>12}" for k in report)
    print(head)
    rows = [(f"precision@{args.conf:.2f}", "detection", "precision"),
            (f"recall@{args.conf:.2f}", "detection", "recall"),
            ("mAP@0.5", "detection", "map50")]
    rows += [(f"AP@0.5 {n}", "detection", f"ap50/{i}") for i, n in enumerate(CLASS_NAMES)]
    rows += [("MOTA 2 Hz", "tracking", "mota"), ("IDF1 2 Hz", "tracking", "idf1"),
             ("ID switches 2 Hz", "tracking", "id_switches"),
             ("one id (>=5 frames) 2Hz", "tracking", "id_persistence"),
             ("GT tracks 2 Hz", "tracking", "gt_objects"),
             ("GT boxes 2 Hz", "detection", "gt_boxes")]
    if args.track_rate > 0:
        r = f"{args.track_rate:g} Hz"
        rows += [(f"mAP@0.5 {r}", "detection_fast", "map50"),
                 (f"MOTA {r}", "tracking_fast", "mota"), (f"IDF1 {r}", "tracking_fast", "idf1"),
                 (f"ID switches {r}", "tracking_fast", "id_switches"),
                 (f"one id (>=5 fr.) {r}", "tracking_fast", "id_persistence"),
                 (f"GT tracks {r}", "tracking_fast", "gt_objects"),
                 (f"frames {r}", "tracking_fast", "num_frames")]
    for name, part, key in rows:
        vals = []
        for r in report.values():
            v = r[part].get(key, float("nan"))
            vals.append(f"{v:>12.0f}" if key in ("id_switches", "gt_objects", "gt_boxes",
                                                  "num_frames")
                        else f"{_fmt(v):>12}")
        print(f"{name:<24}" + "".join(vals))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
