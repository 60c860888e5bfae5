"""Offline replay evaluation vs the live replay pipeline on the same bag, in one run.

    python bench/replay_throughput.py [--samples 16] [--rate 2] [--weights W] [--device cpu]

1. a synthetic nuScenes scene (``--samples`` key frames at 2 Hz) is generated and converted to an
   MCAP bag (``lss-bev-bag convert``);
2. offline: ``lss-bev-bag eval`` (BevProcessor + BevEvaluator, no DDS) over the bag, as fast as
   the model allows: frames / wall second;
3. live: bev_node + eval_node (``lss_bev_ros.pipeline``, one process) fed by ``BagPlayer`` over
   real DDS at ``--rate`` x real time; frames evaluated (``/bev/metrics``) / wall second from the
   first published message to the last metrics message. bev_node is latest-wins, so when the
   input is faster than inference it drops frames and this is its sustained processing rate.

Prints both rates and their ratio (offline / live); all numbers come from this one run on this
machine. Weights: ``models/lss_small_synth.pt`` when present, else an untrained LSSConfig.small().
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _weights(arg: str | None, workdir: Path) -> Path:
    if arg:
        return Path(arg)
    trained = REPO / "models" / "lss_small_synth.pt"
    if trained.is_file():
        return trained
    import torch

    from lss_bev_ros.lss.checkpoint import save_checkpoint
    from lss_bev_ros.lss.config import LSSConfig
    from lss_bev_ros.lss.model import LiftSplatShoot

    torch.manual_seed(0)
    return save_checkpoint(workdir / "lss_small_untrained.pt", LiftSplatShoot(LSSConfig.small()))


def live_run(bag: Path, weights: Path, args: argparse.Namespace, workdir: Path,
             reduction: int) -> dict:
    import rclpy
    import yaml
    from rclpy.executors import SingleThreadedExecutor

    from lss_bev_ros import pipeline
    from lss_bev_ros.calibration import NUSCENES_CAMERAS
    from lss_bev_ros.msg import BevMetrics, PipelineTiming
    from rosbag_tools.bagio import GT_BOXES_TOPIC, LIDAR_TOPIC, camera_topics, rig_path_for_bag
    from rosbag_tools.play import BagPlayer

    rig = str(rig_path_for_bag(bag))
    params = workdir / "live.yaml"
    params.write_text(yaml.safe_dump({
        "bev_node": {"ros__parameters": {
            "rig_file": rig, "weights": str(weights), "backend": args.backend,
            "device": args.device, "threshold": args.threshold, "qos_reliable": True,
            "publish_image": False, "torch_threads": args.torch_threads,
            "decode_reduction": reduction}},  # what the offline run used
        "eval_node": {"ros__parameters": {
            "rig_file": rig, "reference": args.reference, "threshold": args.threshold,
            "qos_reliable": True}},
    }))
    pipe = pipeline.start(params)
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node("bench_listener", context=ctx)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    stamps: list[float] = []
    totals: list[float] = []
    node.create_subscription(BevMetrics, "/bev/metrics", lambda m: stamps.append(
        time.perf_counter()), 100)
    node.create_subscription(PipelineTiming, "/bev/timing", lambda m: totals.append(
        float(m.total_ms)), 100)
    topics = [t for c in NUSCENES_CAMERAS for t in camera_topics(c)] + [LIDAR_TOPIC,
                                                                        GT_BOXES_TOPIC]
    player = BagPlayer(node, bag, rate=args.rate, topics=topics, wait_for_subscribers_s=30.0)
    try:
        player.start()
        while player.running:
            ex.spin_once(timeout_sec=0.05)
        t_play_start = time.perf_counter() - player.stats.wall_s
        bev = pipe.nodes["bev_node"]
        last, n = time.monotonic(), -1
        while time.monotonic() - last < 5.0:  # drain: until no metrics for 5 s
            ex.spin_once(timeout_sec=0.1)
            if len(stamps) != n:
                n, last = len(stamps), time.monotonic()
        processed = bev.frames_processed
        dropped = bev.slot.dropped if bev.slot is not None else 0
    finally:
        player.stop()
        player.destroy()
        ex.shutdown()
        node.destroy_node()
        ctx.try_shutdown()
        pipe.stop()
    span = (stamps[-1] - t_play_start) if stamps else float("nan")
    return {"evaluated": len(stamps), "processed": processed, "dropped": dropped,
            "wall_s": span, "fps": len(stamps) / span if stamps else 0.0,
            "frame_ms": sum(totals) / len(totals) if totals else float("nan")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=16, help="key frames in the scene (2 Hz)")
    ap.add_argument("--rate", type=float, default=2.0, help="live replay speed factor")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--backend", default="torch")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--reference", default="gt_boxes")
    ap.add_argument("--torch-threads", type=int, default=1,
                    help="torch intra-op threads for both modes (default 1: bev_node infers in "
                         "a worker thread; 0 = torch default)")
    ap.add_argument("--workdir", default=None, help="keep data here (default: a temp dir)")
    args = ap.parse_args()
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

    from lss_bev_ros.data.synthetic import generate_dataset
    from rosbag_tools.convert import convert_dataset
    from rosbag_tools.evaluate import EvalOptions, evaluate_bag

    tmp = tempfile.TemporaryDirectory(prefix="replay_bench_")
    work = Path(args.workdir) if args.workdir else Path(tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    root = work / "nuscenes"
    if not (root / "v1.0-mini" / "scene.json").is_file():
        generate_dataset(root, n_scenes=1, samples_per_scene=args.samples, seed=11,
                         progress=False)
    bag = work / "bags" / "synth-0000"
    if not bag.exists():
        convert_dataset(root, work / "bags", progress=False)
    weights = _weights(args.weights, work)

    opts = EvalOptions(weights=weights, backend=args.backend, device=args.device,
                       threshold=args.threshold, reference=args.reference, progress=False,
                       n_sample_images=0, torch_threads=args.torch_threads)
    offline = evaluate_bag(bag, None, opts)
    from lss_bev_ros.bev_processor import jpeg_decode_reduction
    from lss_bev_ros.calibration import load_rig_yaml
    from lss_bev_ros.lss.checkpoint import load_checkpoint
    from rosbag_tools.bagio import rig_path_for_bag

    cfg = load_checkpoint(weights)[1]
    cam0 = load_rig_yaml(rig_path_for_bag(bag)).cameras[0]
    live = live_run(bag, weights, args, work, jpeg_decode_reduction(cam0, cfg.image.final_dim, 0))
    # offline again after the live run: on a shared machine the load changes over time, the
    # spread of the two offline runs shows how much
    offline2 = evaluate_bag(bag, None, opts)
    off_fps = 0.5 * (offline.summary["throughput_fps"] + offline2.summary["throughput_fps"])

    print(f"bag: {args.samples} frames (2 Hz), weights {weights.name}, backend "
          f"{offline.summary['backend']}, reference {args.reference}")
    print("frames/s: offline = frames / (first frame start .. last frame end); live = frames "
          "evaluated / (play start .. last /bev/metrics)")
    print(f"{'mode':<28}{'frames':>8}{'wall s':>9}{'frames/s':>10}{'ms/frame':>10}")
    for label, rep in (("offline eval (no DDS) #1", offline), ("offline eval (no DDS) #2",
                                                                offline2)):
        s = rep.summary
        print(f"{label:<28}{s['frames_evaluated']:>8}{s['processing_s']:>9.2f}"
              f"{s['throughput_fps']:>10.3f}{s['latency_mean_ms']:>10.0f}")
    print(f"{f'live replay x{args.rate:g} (DDS)':<28}{live['evaluated']:>8}"
          f"{live['wall_s']:>9.2f}{live['fps']:>10.3f}{live['frame_ms']:>10.0f}   (processed "
          f"{live['processed']}, dropped {live['dropped']} by latest-wins)")
    ratio = off_fps / live["fps"] if live["fps"] > 0 else float("nan")
    print(f"ratio offline (mean of #1, #2) / live frames/s: {ratio:.2f}x")
    print(f"offline mean IoU {offline.summary['mean_iou']:.4f} over "
          f"{offline.summary['frames_evaluated']} frames")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
