"""3D objects on HELD-OUT synthetic scenes: geometry only vs BEV blobs only vs fused.

Runs an LSS checkpoint (``--weights``, default the committed default
``models/lss_small_cpu_80x352_synth.pt``) and the committed YOLO (``models/yolo_synth/
yolo11n_synth.onnx``, the export of ``yolo11n_synth.pt``) frame by frame on held-out scenes (a
seed neither model was trained on: LSS 2024, YOLO 0), feeds ``ObjectPipeline`` in three modes
(and ``--variant`` columns: the fused mode with ObjectsConfig fields changed), writes nuScenes
submissions and scores them with the devkit's own DetectionEval / TrackingEval (custom split
``synth_val`` = all generated scenes). Prints side by side: mAP, NDS, car AP, mATE/mASE/mAOE/mAVE,
AMOTA, AMOTP, IDS, the devkit's tracking FP / FN / MOTA, the time the objects stage adds per
frame vs the BEV (LSS) frame time, and two counts of the published tracks against the GT
vehicles of each frame: GT vehicles with two or more tracks within ``--dup-m`` (one object
tracked twice) and tracks farther than ``--false-m`` from every GT vehicle; and the share of the
tracks on moving / parked GT vehicles whose heading points backwards (> 135 deg off).

Model outputs are cached per frame (``cache`` in the data folder under ``--workdir``), so the
three modes (and reruns) reuse them.

    nice -n 10 python bench/objects_ablation.py                 # 6 scenes x 10 key frames
    nice -n 10 python bench/objects_ablation.py --scenes 2 --samples-per-scene 8
    python bench/objects_ablation.py --modes fused --variant overlap_iou=1.0   # pruning off
    python bench/objects_ablation.py --rate-hz 10 --samples-per-scene 46     # same scenes, 10 Hz
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lss_bev_ros.calibration import NUSCENES_CAMERAS, rig_from_nuscenes  # noqa: E402
from lss_bev_ros.conversions import GridSpec  # noqa: E402
from lss_bev_ros.detection.gt import CLASS_NAMES  # noqa: E402
from lss_bev_ros.detection.types import Detections  # noqa: E402
from lss_bev_ros.objects import MODES, ObjectPipeline, ObjectsConfig, Pose2D  # noqa: E402
from lss_bev_ros.objects.config import parse_overrides  # noqa: E402
from lss_bev_ros.objects.matching import ground_distances, nearest_on_ground  # noqa: E402
from lss_bev_ros.objects.nuscenes_eval import (  # noqa: E402
    VAL_SPLIT,
    SampleIndex,
    SubmissionWriter,
    ground_truth_frames,
    score_submission,
    write_custom_splits,
)
from lss_bev_ros.objects.tracker import VEHICLE_LABELS  # noqa: E402

DEFAULT_WEIGHTS = REPO / "models" / "lss_small_cpu_80x352_synth.pt"
YOLO_WEIGHTS = REPO / "models" / "yolo_synth" / "yolo11n_synth.onnx"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def _ensure_data(root: Path, scenes: int, samples: int, seed: int, rate_hz: float = 2.0
                 ) -> list[str]:
    from lss_bev_ros.data.synthetic import generate_dataset, scene_name

    names = [scene_name(i) for i in range(scenes)]
    marker = root / "bench_objects.json"
    want: dict[str, float] = {"scenes": scenes, "samples": samples, "seed": seed}
    if rate_hz != 2.0:
        want["rate_hz"] = rate_hz
    if not (marker.is_file() and json.loads(marker.read_text()) == want):
        t = time.perf_counter()
        generate_dataset(root, scenes, samples, seed, progress=False,
                         sample_period_us=round(1e6 / rate_hz))
        marker.write_text(json.dumps(want))
        print(f"generated {scenes} scenes x {samples} key frames (seed {seed}) in "
              f"{time.perf_counter() - t:.0f} s", flush=True)
    write_custom_splits(root, "v1.0-mini", {VAL_SPLIT: names})
    return names


class FrameCache:
    """Per sample token: LSS probability grid (X x Y float16) and per-camera detections."""

    def __init__(self, folder: Path, key: str) -> None:
        self.folder = folder / key
        self.folder.mkdir(parents=True, exist_ok=True)

    def path(self, token: str) -> Path:
        return self.folder / f"{token}.npz"

    def load(self, token: str) -> tuple[np.ndarray, dict[str, Detections], float, float] | None:
        p = self.path(token)
        if not p.is_file():
            return None
        z = np.load(p, allow_pickle=False)
        dets = {}
        for cam in NUSCENES_CAMERAS:
            a = z[f"det_{cam}"]
            dets[cam] = Detections(a[:, :4], a[:, 4], a[:, 5].astype(np.int64),
                                   tuple(int(v) for v in z[f"size_{cam}"]))
        return z["prob"].astype(np.float32), dets, float(z["bev_ms"]), float(z["det_ms"])

    def save(self, token: str, prob: np.ndarray, dets: dict[str, Detections], bev_ms: float,
             det_ms: float) -> None:
        arrays = {"prob": prob.astype(np.float16), "bev_ms": np.array(bev_ms),
                  "det_ms": np.array(det_ms)}
        for cam, d in dets.items():
            arrays[f"det_{cam}"] = d.as_array()
            arrays[f"size_{cam}"] = np.array(d.image_size)
        np.savez_compressed(self.path(token), **arrays)


def run_models(nusc, tokens: list[str], cache: FrameCache, weights: Path, det_conf: float,
               imgsz: int) -> None:
    """Fill the cache: LSS grid + YOLO detections per key frame (only what is missing)."""
    missing = [t for t in tokens if not cache.path(t).is_file()]
    if not missing:
        return
    import torch

    from lss_bev_ros.data.dataset import camera_calibration, load_rgb
    from lss_bev_ros.detection.detector import BatchedDetector, DetectorConfig
    from lss_bev_ros.lss.checkpoint import load_checkpoint
    from lss_bev_ros.lss.preprocess import prepare_inputs

    torch.set_num_threads(2)
    model, cfg, _ = load_checkpoint(weights)
    model.eval()
    det = BatchedDetector(DetectorConfig(str(YOLO_WEIGHTS), imgsz=imgsz, conf=det_conf))
    t_all = time.perf_counter()
    for i, tok in enumerate(missing):
        K, T, paths = camera_calibration(nusc, tok, cfg.image.cams)
        images = [load_rgb(p) for p in paths]
        t0 = time.perf_counter()
        with torch.inference_mode():
            inp = prepare_inputs(images, K, T, cfg)
            prob = torch.sigmoid(model(*inp))[0, 0].float().numpy()  # X x Y
        t1 = time.perf_counter()
        by_cam = dict(zip(cfg.image.cams, images, strict=True))
        dets = det.detect([by_cam[c] for c in NUSCENES_CAMERAS])
        t2 = time.perf_counter()
        cache.save(tok, prob, dict(zip(NUSCENES_CAMERAS, dets, strict=True)),
                   (t1 - t0) * 1e3, (t2 - t1) * 1e3)
        if (i + 1) % 10 == 0:
            print(f"  models: {i + 1}/{len(missing)} frames, "
                  f"{(time.perf_counter() - t_all) / (i + 1):.2f} s/frame", flush=True)


def track_counts(tracked: list, gt: list, dup_m: float, false_m: float) -> tuple[int, int, int]:
    """(GT vehicles of a frame, those with >= 2 tracks within ``dup_m``, tracks farther than
    ``false_m`` from every GT vehicle); positions in one frame (m)."""
    gv = [o for o in gt if o.label in VEHICLE_LABELS]
    tv = [o for o in tracked if o.label in VEHICLE_LABELS]
    if len(tv) == 0:
        return len(gv), 0, 0
    if len(gv) == 0:
        return 0, 0, len(tv)
    d = ground_distances(tv, gv)  # tracks x GT, m
    return len(gv), int(((d <= dup_m).sum(axis=0) >= 2).sum()), int((d.min(axis=1) > false_m)
                                                                   .sum())


def heading_counts(tracked: list, gt: list, match_m: float, moving_mps: float = 0.5,
                   reversed_rad: float = 0.75 * math.pi) -> tuple[int, int, int, int]:
    """(published vehicle tracks on a moving GT vehicle, those pointing backwards, tracks on a
    parked GT vehicle, those pointing backwards) for one frame: a track is on the nearest GT
    vehicle within ``match_m`` (m); moving: GT speed >= ``moving_mps`` (m/s); backwards: heading
    error > ``reversed_rad`` (a blob's axis gives the heading only up to pi)."""
    gv = [o for o in gt if o.label in VEHICLE_LABELS]
    out = [0, 0, 0, 0]
    for t in tracked:
        if t.label not in VEHICLE_LABELS or not gv:
            continue
        d, g = nearest_on_ground(t.x, t.y, gv)
        if g is None or d > match_m:
            continue
        k = 0 if math.hypot(g.vx, g.vy) >= moving_mps else 2
        err = abs(math.remainder(t.yaw - g.yaw, 2 * math.pi))
        out[k] += 1
        out[k + 1] += err > reversed_rad
    return out[0], out[1], out[2], out[3]


def run_mode(nusc, index: SampleIndex, scenes: list[str], cache: FrameCache, mode: str,
             grid: GridSpec, out: Path, detection_source: str, gt: dict[str, list],
             dup_m: float, false_m: float, name: str | None = None,
             **overrides: float | int | str | bool
             ) -> dict[str, float]:
    """Pipeline over all scenes in ``mode`` (``overrides``: ObjectsConfig fields); devkit
    scores + median objects-stage time + duplicate / false track counts (``gt``: per sample
    token the GT objects in the global frame, the frame the tracks are in)."""
    writer = SubmissionWriter(detection_source=detection_source)
    stage_ms: list[float] = []
    counts = np.zeros(3, dtype=int)
    heads = np.zeros(4, dtype=int)
    cfg = ObjectsConfig(mode=mode, **overrides)  # type: ignore[arg-type]
    pipe: ObjectPipeline | None = None
    for scene in scenes:
        toks = [t for t in index.tokens if index.scenes[t] == scene]
        rig = rig_from_nuscenes(nusc, toks[0])
        if pipe is None:
            pipe = ObjectPipeline(rig, grid, CLASS_NAMES, cfg)
        pipe.set_rig(rig)
        pipe.reset()
        for tok in toks:
            item = cache.load(tok)
            assert item is not None
            prob, dets, _, _ = item
            ego = index.poses[tok]
            stamp = float(index.stamps[index.tokens.index(tok)])
            frame = pipe.step(stamp, dets, prob, None, Pose2D(ego.x, ego.y, ego.yaw, stamp))
            stage_ms.append(frame.stage_ms["total"])
            writer.add(tok, frame, ego)
            counts += track_counts(frame.tracked, gt[tok], dup_m, false_m)
            heads += heading_counts(frame.tracked, gt[tok], dup_m)
    name = name or mode
    det_json, trk_json = writer.write(out / name)
    s = score_submission(nusc, det_json, trk_json, out / name / "eval", VAL_SPLIT)
    row = s.as_row()
    row["objects_ms"] = float(np.median(stage_ms))
    for k in ("fp", "fn", "mota"):
        row[f"trk_{k.upper()}"] = s.tracking.get(k, float("nan"))
    row["GT_vehicles"], row["dup_GT"], row["false_tracks"] = (float(v) for v in counts)
    row["trk_on_moving"], row["reversed_moving"] = float(heads[0]), heads[1] / max(heads[0], 1)
    row["trk_on_parked"], row["reversed_parked"] = float(heads[2]), heads[3] / max(heads[2], 1)
    row["per_class_ap"] = s.class_ap  # type: ignore[assignment]
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workdir", default=str(REPO / "runs" / "objects_ablation"))
    ap.add_argument("--scenes", type=int, default=6)
    ap.add_argument("--samples-per-scene", type=int, default=10)
    ap.add_argument("--rate-hz", type=float, default=2.0,
                    help="key-frame rate of the generated scenes (Hz; the objects stage runs at "
                         "it). A scene's world depends on its duration, (samples - 1) / rate: "
                         "10 Hz with --samples-per-scene 46 gives the worlds of the default 2 Hz "
                         "x 10 (4.5 s), seen 5x as often")
    ap.add_argument("--seed", type=int, default=4242, help="held-out seed (LSS 2024, YOLO 0)")
    ap.add_argument("--imgsz", type=int, default=416)
    ap.add_argument("--det-conf", type=float, default=0.1, help="YOLO score threshold")
    ap.add_argument("--detection-source", choices=("detected", "tracked"), default="detected")
    ap.add_argument("--modes", nargs="+", default=["geometry", "bev", "fused"],
                    choices=sorted(MODES))
    ap.add_argument("--weights", default=str(DEFAULT_WEIGHTS), help="LSS checkpoint")
    ap.add_argument("--variant", action="append", default=[], metavar="FIELD=V[,FIELD=V]",
                    help="one more column: the fused mode with these ObjectsConfig fields")
    ap.add_argument("--dup-m", type=float, default=2.0,
                    help="a GT vehicle with >= 2 tracks this close is tracked twice (m)")
    ap.add_argument("--false-m", type=float, default=4.0,
                    help="a track this far from every GT vehicle is false (m)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if not args.rate_hz > 0:
        ap.error(f"--rate-hz must be > 0, got {args.rate_hz}")
    try:
        variants = {f"fused {v}": parse_overrides(v) for v in args.variant}
    except ValueError as exc:
        ap.error(f"--variant: {exc}")

    from nuscenes.nuscenes import NuScenes

    t_start = time.perf_counter()
    work = Path(args.workdir)
    rate = "" if args.rate_hz == 2.0 else f"_{args.rate_hz:g}hz"
    root = work / f"data_seed{args.seed}_{args.scenes}x{args.samples_per_scene}{rate}"
    scenes = _ensure_data(root, args.scenes, args.samples_per_scene, args.seed, args.rate_hz)
    nusc = NuScenes(version="v1.0-mini", dataroot=str(root), verbose=False)
    index = SampleIndex.from_nuscenes(nusc, scenes)
    weights = Path(args.weights)
    key = f"{_digest(weights)}_{_digest(YOLO_WEIGHTS)}_{args.imgsz}_{args.det_conf:g}"
    cache = FrameCache(root / "cache", key)
    run_models(nusc, list(index.tokens), cache, weights, args.det_conf, args.imgsz)
    gt = ground_truth_frames(nusc, index.tokens)
    bev_ms = float(np.median([cache.load(t)[2] for t in index.tokens]))  # type: ignore[index]
    det_ms = float(np.median([cache.load(t)[3] for t in index.tokens]))  # type: ignore[index]
    grid = GridSpec(-50.0, -50.0, 0.5, 200, 200)
    rows = {}
    columns: dict[str, tuple[str, dict[str, float]]] = {m: (m, {}) for m in args.modes}
    columns.update({k: ("fused", over) for k, over in variants.items()})
    for name, (mode, over) in columns.items():
        t = time.perf_counter()
        rows[name] = run_mode(nusc, index, scenes, cache, mode, grid, work / f"results{rate}",
                              args.detection_source, gt, args.dup_m, args.false_m,
                              name.replace(" ", "_").replace(",", "_"), **over)
        print(f"  {name}: scored in {time.perf_counter() - t:.0f} s", flush=True)

    print(f"\nheld-out: {len(scenes)} scenes x {args.samples_per_scene} key frames "
          f"({args.rate_hz:g} Hz), seed "
          f"{args.seed}; devkit detection_cvpr_2019 / tracking_nips_2019 restricted to "
          f"{', '.join(CLASS_NAMES)}; detections from '{args.detection_source}' objects; "
          f"LSS {weights.name}")
    print(f"LSS (BEV) frame time {bev_ms:.0f} ms (median, 6 cams, CPU), YOLO 6 cams "
          f"{det_ms:.0f} ms (imgsz {args.imgsz})")
    keys = ["mAP", "NDS", "car_AP", "mATE", "mASE", "mAOE", "mAVE", "AMOTA", "AMOTP", "IDS",
            "trk_FP", "trk_FN", "trk_MOTA", "GT_vehicles", "dup_GT", "false_tracks",
            "trk_on_moving", "reversed_moving", "trk_on_parked", "reversed_parked", "objects_ms"]
    counts = {"IDS", "trk_FP", "trk_FN", "GT_vehicles", "dup_GT", "false_tracks",
              "trk_on_moving", "trk_on_parked"}
    width = max(12, *(len(m) + 2 for m in rows))
    print(f"{'':<22}" + "".join(f"{m:>{width}}" for m in rows))
    for k in keys:
        vals = []
        for r in rows.values():
            v = r[k]
            vals.append(f"{v:>{width}.0f}" if k in counts and not math.isnan(v)
                        else f"{v:>{width}.3f}")
        print(f"{k:<22}" + "".join(vals))
    print(f"(dup_GT: GT vehicle-frames with >= 2 published tracks within {args.dup_m:g} m; "
          f"false_tracks: published vehicle track-frames > {args.false_m:g} m from every GT "
          "vehicle; trk_on_moving / parked: published vehicle track-frames within "
          f"{args.dup_m:g} m of a GT vehicle moving at >= 0.5 m/s / slower, reversed_*: the share"
          " of those whose heading is off by > 135 deg)")
    print(f"{'objects / BEV time':<22}" + "".join(
        f"{100 * r['objects_ms'] / bev_ms:>{width - 1}.1f}%" for r in rows.values()))
    for c in CLASS_NAMES:
        print(f"{'AP ' + c:<22}" + "".join(
            f"{r['per_class_ap'].get(c, float('nan')):>{width}.3f}" for r in rows.values()))
    print(f"total {time.perf_counter() - t_start:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"rows": rows, "bev_ms": bev_ms, "det_ms": det_ms, "args": vars(args)}, indent=1,
            default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
