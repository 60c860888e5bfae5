"""``lss-bev-bag``: nuScenes -> rosbag2, bag info, live replay, offline replay evaluation.

    lss-bev-bag convert --dataroot D [--version V] [--scenes S ...] --out DIR [--storage mcap]
    lss-bev-bag info BAG [--json]
    lss-bev-bag play BAG [--rate R] [--loop] [--topics T ...] [--clock]
    lss-bev-bag eval BAG --weights W [--backend B] [--out DIR]
    lss-bev-bag eval-many BAGS... --weights W [W ...] [--backend B ...] --out DIR
        [--address ray://HOST:10001 | auto] [--workers N] [--no-ray]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from lss_bev_ros.backends import BACKEND_NAMES
from lss_bev_ros.bev_pipeline import PRECISION_CHOICES
from lss_bev_ros.eval.reference import ReferenceKind
from rosbag_tools.bagio import BagToolError

if TYPE_CHECKING:
    from rosbag_tools.evaluate import EvalOptions


def _positive(v: str) -> float:
    f = float(v)
    if not f > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {v}")
    return f


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="lss-bev-bag",
        description="rosbag2 tools for lss_bev_ros: convert nuScenes scenes to bags, inspect, "
                    "replay into a live ROS 2 graph, and evaluate the BEV pipeline offline.",
    )
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    c = sub.add_parser("convert", help="nuScenes scene(s) -> rosbag2 (one bag per scene)",
                       description="Convert nuScenes scenes to rosbag2 bags (cameras as "
                       "CompressedImage + CameraInfo, LIDAR_TOP PointCloud2, /tf, /tf_static, "
                       "/odom, /gt/boxes) plus the rig calibration file beside each bag.")
    c.add_argument("--dataroot", required=True, help="nuScenes root (holds <version>/scene.json)")
    c.add_argument("--version", default="v1.0-mini", help="table folder (default v1.0-mini)")
    c.add_argument("--scenes", nargs="*", default=None,
                   help="scene names or tokens (default: all scenes)")
    c.add_argument("--out", required=True, help="output folder; bags go to OUT/<scene name>")
    c.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    c.add_argument("--no-sweeps", action="store_true", help="key frames only")
    c.add_argument("--no-lidar", action="store_true", help="leave out /lidar_top/points")
    c.add_argument("--cameras", nargs="*", default=None,
                   help="camera channels (default: the six nuScenes cameras)")
    c.add_argument("--overwrite", action="store_true", help="replace existing bags")
    c.add_argument("--quiet", action="store_true", help="no progress bar")

    i = sub.add_parser("info", help="topics, types, counts, duration and rates of a bag",
                       description="Scan a bag; a truncated/corrupt bag reports what is readable "
                       "and exits with status 2.")
    i.add_argument("bag", help="rosbag2 directory or .mcap/.db3 file")
    i.add_argument("--json", action="store_true", help="machine-readable output")
    i.add_argument("--deep", action="store_true", help="also deserialise every record")

    p = sub.add_parser("play", help="publish a bag into the live ROS 2 graph",
                       description="Replay with the recorded timing scaled by --rate; /tf_static "
                       "is latched (transient local).")
    p.add_argument("bag")
    p.add_argument("--rate", type=_positive, default=1.0, help="speed factor (default 1.0)")
    p.add_argument("--loop", action="store_true", help="repeat until Ctrl-C")
    p.add_argument("--topics", nargs="*", default=None, help="only these topics")
    p.add_argument("--clock", action="store_true", help="publish /clock with bag time")
    p.add_argument("--clock-hz", type=_positive, default=40.0, help="/clock rate (default 40)")
    p.add_argument("--delay", type=float, default=0.5,
                   help="seconds to wait after creating publishers (discovery), default 0.5")
    p.add_argument("--wait-for-subscribers", type=float, default=0.0, metavar="S",
                   help="before playing, wait up to S seconds until every played topic has a "
                        "subscriber")
    p.add_argument("--raw", action="store_true",
                   help="publish the CDR bytes untouched (no deserialisation check)")

    e = sub.add_parser("eval", help="offline replay evaluation of the BEV pipeline (no DDS)",
                       description="Run BevProcessor + BevEvaluator over the bag as fast as the "
                       "model allows; write per-frame CSV/JSON, summary, plots, optional video.")
    e.add_argument("bag")
    e.add_argument("--weights", required=True, help="LSS checkpoint (.pt)")
    e.add_argument("--backend", default="torch", choices=BACKEND_NAMES,
                   help="inference backend (default torch)")
    e.add_argument("--out", default=None, help="report folder (default <bag>_eval)")
    _add_eval_arguments(e, torch_threads=0)
    e.add_argument("--video", default=None, help="write an annotated video (.mp4 or .avi)")

    m = sub.add_parser("eval-many", help="evaluate many bags x models on Ray (resumable)",
                       description="Run `eval` on every bag with every checkpoint x backend as "
                       "Ray tasks (a local cluster unless --address), weights loaded once per "
                       "worker; per-bag reports under OUT/<model hash>/<bag>/ and an aggregate "
                       "(OUT/aggregate.{md,json,csv}, worst bags first). Bags already evaluated "
                       "for the same model hash and options are skipped; failed bags are "
                       "reported and do not stop the run. See docs/EVAL_MANY.md.")
    m.add_argument("bags", nargs="+",
                   help="bags: rosbag2 folders / .mcap / .db3, folders of bags, glob patterns "
                        "('**' allowed; quote them) or list files (one bag per line)")
    m.add_argument("--weights", nargs="+", required=True, help="LSS checkpoint(s) (.pt)")
    m.add_argument("--backend", nargs="+", default=["torch"], choices=BACKEND_NAMES,
                   help="inference backend(s), each run with every checkpoint (default torch)")
    m.add_argument("--out", required=True, help="results folder (re-use it to resume)")
    m.add_argument("--address", default=None,
                   help="existing Ray cluster: auto, HOST:6379 or ray://HOST:10001 "
                        "(default: start a local cluster)")
    m.add_argument("--workers", type=int, default=0,
                   help="worker actors (default: local CPU count, or the cluster's CPUs / "
                        "--cpus-per-worker)")
    m.add_argument("--cpus-per-worker", type=_positive, default=1.0)
    m.add_argument("--gpus-per-worker", type=float, default=0.0,
                   help="GPUs per worker (fractions share a GPU; use with --device cuda)")
    m.add_argument("--no-ray", action="store_true",
                   help="run the tasks one after another in this process (no Ray)")
    m.add_argument("--no-ship-weights", action="store_true",
                   help="workers read the checkpoints from the same path instead of getting "
                        "them through Ray's object store")
    m.add_argument("--retry-failed", action="store_true",
                   help="evaluate again bags remembered as failed (truncated, corrupt, ...)")
    _add_eval_arguments(m, torch_threads=1)
    return ap


def _add_eval_arguments(e: argparse.ArgumentParser, torch_threads: int) -> None:
    """The evaluation options ``eval`` and ``eval-many`` share (see :func:`_eval_options`)."""
    e.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    e.add_argument("--precision", default="auto", choices=PRECISION_CHOICES)
    e.add_argument("--backend-options", default="",
                   help="'key=value, ...' backend options, as bev_node's backend_options "
                   "(e.g. 'mode=stages, bev_encoder=torch_bf16')")
    e.add_argument("--rig", default=None, help="rig YAML (default: beside the bag / embedded)")
    e.add_argument("--reference", default="lidar_visibility",
                   choices=[k.name.lower() for k in ReferenceKind],
                   help="reference occupancy (default lidar_visibility, as eval_node)")
    e.add_argument("--threshold", type=float, default=0.5, help="occupancy threshold")
    e.add_argument("--objects", action="store_true",
                   help="also detect (YOLO) and lift/track 3D objects per frame, as "
                   "detector_node + objects_node; scored by the nuScenes devkit with --dataroot")
    e.add_argument("--detector-weights", default=None,
                   help="YOLO weights for --objects (default: the committed .onnx)")
    e.add_argument("--dataroot", default=None,
                   help="nuScenes root the bag was converted from: sample tokens + ground truth "
                   "for the devkit's detection and tracking evaluation of --objects "
                   "(writes a custom split to <dataroot>/<version>/splits.json)")
    e.add_argument("--version", default="v1.0-mini", help="nuScenes table folder")
    e.add_argument("--region", default="all", choices=("all", "visible"),
                   help="cells evaluated: all, or only those a camera sees")
    e.add_argument("--stamp-tolerance", type=float, default=0.1,
                   help="max grid <-> reference stamp difference (s)")
    e.add_argument("--categories", nargs="*", default=["vehicle."],
                   help="GT box category prefixes (default vehicle.)")
    e.add_argument("--torch-threads", type=int, default=torch_threads,
                   help=f"torch intra-op threads (default {torch_threads}; 0: torch default; 1 "
                        "is much faster when the CPU is oversubscribed)")
    e.add_argument("--decode-reduction", type=int, default=0, choices=(0, 1, 2, 4, 8),
                   help="decode JPEGs at 1/k size as bev_node does (0: auto)")
    e.add_argument("--max-frames", type=int, default=None, help="stop after N frames")
    e.add_argument("--samples", type=int, default=4, help="prediction-vs-reference PNGs")
    e.add_argument("--quiet", action="store_true", help="no progress bar")


def _cmd_convert(a: argparse.Namespace) -> int:
    from lss_bev_ros.calibration import NUSCENES_CAMERAS
    from rosbag_tools.convert import ConvertOptions, convert_dataset

    opts = ConvertOptions(
        storage=a.storage, cameras=tuple(a.cameras) if a.cameras else NUSCENES_CAMERAS,
        lidar=not a.no_lidar, sweeps=not a.no_sweeps, overwrite=a.overwrite,
    )
    results = convert_dataset(a.dataroot, a.out, a.version, a.scenes, opts, progress=not a.quiet)
    for r in results:
        print(f"{r.scene}: {r.bag} ({sum(r.counts.values())} messages, {r.duration_s:.2f} s), "
              f"rig {r.rig}")
    return 0


def _cmd_info(a: argparse.Namespace) -> int:
    from rosbag_tools.bag_info import bag_info, format_info

    info = bag_info(a.bag, deep=a.deep)
    print(json.dumps(info.to_dict(), indent=2) if a.json else format_info(info))
    return 0 if info.complete else 2


def _cmd_play(a: argparse.Namespace) -> int:
    from rosbag_tools.play import play_main

    stats = play_main(a.bag, rate=a.rate, loop=a.loop, topics=a.topics, clock=a.clock,
                      clock_hz=a.clock_hz, delay_s=a.delay, raw=a.raw,
                      wait_for_subscribers_s=a.wait_for_subscribers)
    print(f"published {stats.total} messages in {stats.wall_s:.2f} s ({stats.loops} loop(s)); "
          f"errors {sum(stats.errors.values())}; max lag {stats.max_lag_ms:.1f} ms")
    for t, why in stats.skipped_topics.items():
        print(f"skipped {t}: {why}")
    return 0 if not stats.errors else 2


def _eval_options(a: argparse.Namespace) -> EvalOptions:
    """EvalOptions from the shared evaluation arguments (``eval`` and ``eval-many``)."""
    from rosbag_tools.evaluate import EvalOptions

    return EvalOptions(
        weights=Path(a.weights) if isinstance(a.weights, str) else None,
        backend=a.backend if isinstance(a.backend, str) else "torch", device=a.device,
        precision=a.precision, backend_options=a.backend_options,
        rig=Path(a.rig) if a.rig else None, reference=a.reference, threshold=a.threshold,
        region=a.region, stamp_tolerance_s=a.stamp_tolerance, categories=tuple(a.categories),
        torch_threads=a.torch_threads, decode_reduction=a.decode_reduction,
        max_frames=a.max_frames, video=Path(a.video) if getattr(a, "video", None) else None,
        n_sample_images=a.samples, progress=not a.quiet, objects=a.objects,
        detector_weights=Path(a.detector_weights) if a.detector_weights else None,
        dataroot=Path(a.dataroot) if a.dataroot else None, dataset_version=a.version,
    )


def _cmd_eval(a: argparse.Namespace) -> int:
    from rosbag_tools.evaluate import evaluate_bag

    out = Path(a.out) if a.out else Path(str(Path(a.bag).resolve()) + "_eval")
    report = evaluate_bag(a.bag, out, _eval_options(a))
    print(report.summary_text())
    print(f"report: {out}")
    return 0


def _cmd_eval_many(a: argparse.Namespace) -> int:
    from rosbag_tools.eval_many import EvalManyOptions, ModelSpec, evaluate_many

    opts = _eval_options(a)
    models = [ModelSpec(Path(w), backend=b, device=a.device, precision=a.precision,
                        backend_options=a.backend_options) for w in a.weights for b in a.backend]
    run = EvalManyOptions(use_ray=not a.no_ray, address=a.address, workers=a.workers,
                          cpus_per_worker=a.cpus_per_worker, gpus_per_worker=a.gpus_per_worker,
                          ship_weights=not a.no_ship_weights, retry_failed=a.retry_failed,
                          progress=not a.quiet)
    rep = evaluate_many(a.bags, models, Path(a.out), opts, run)
    print(rep.files["md"].read_text())
    print(f"aggregate: {rep.files['md']} ({rep.executed} evaluated, {rep.skipped} already done)")
    bad = [r for r in rep.results if (r.cached_status or r.status) != "ok"]
    return 0 if not bad else 2


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {"convert": _cmd_convert, "info": _cmd_info, "play": _cmd_play,
                "eval": _cmd_eval, "eval-many": _cmd_eval_many}
    try:
        return handlers[args.cmd](args)
    except BagToolError as exc:
        print(f"lss-bev-bag {args.cmd}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
