"""bev_node under overload: cameras published at twice the sustainable rate, over real DDS.

    python bench/bev_overload.py [--duration 60] [--image-scale 1.0] [--weights W] [--device cpu]

For each decoding mode (``decode_reduction`` 1 = full-size JPEG decode, 0 = auto reduced decode),
side by side in one run, with the same node code the pipeline uses (``lss_bev_ros.pipeline``,
one process, multi-threaded executor):

1. calibrate: one frame at a time (publish, wait for its grid) -> per-frame processing time ->
   sustainable rate = 1 / mean(total_ms);
2. overload: frame_player_node publishes six 1600 x 900 JPEG cameras (+ camera infos) at
   2 x that rate for ``--duration`` s; bev_node must drop old frames (latest wins).

Reports output rate, dropped frames (published - processed, and the node's own count),
end-to-end latency (``/bev/timing`` latency_ms = publish time - input stamp) p50 / p99 for the
first and last third of the window (must not grow: no backlog), and the share of the node's
processing time spent outside the model (ROS conversion / JPEG decode, preprocessing, grid and
image building, publishing). Goal: under 10 %.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MODEL_STAGES = {"geometry", "camera_encoder", "voxel_pooling", "bev_encoder", "whole_model"}


def _pct(v: list[float], q: float) -> float:
    return float(np.percentile(v, q)) if v else float("nan")


def _params(tmp: Path, dataroot: Path, args, reduction: int) -> Path:
    rig = str(tmp / "rig.yaml")
    doc = {
        "frame_player_node": {"ros__parameters": {
            "dataroot": str(dataroot), "rate_hz": 0.01, "loop": True,
            "image_type": "compressed", "image_scale": args.image_scale,
            "rig_file_out": rig, "publish_lidar": False, "publish_boxes": False}},
        "bev_node": {"ros__parameters": {
            "rig_file": rig, "weights": args.weights, "device": args.device,
            "input_type": "compressed", "decode_reduction": reduction,
            "missing_timeout_s": 30.0, "qos_reliable": True, "qos_depth": 2,
            "torch_threads": args.threads}},
    }
    p = tmp / f"overload_{reduction}.yaml"
    p.write_text(yaml.safe_dump(doc, sort_keys=False))
    return p


def run_mode(dataroot: Path, args, reduction: int) -> dict:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter

    from lss_bev_ros import pipeline
    from lss_bev_ros.msg import PipelineTiming

    tmpdir = tempfile.TemporaryDirectory(prefix="bev_overload_")
    tmp = Path(tmpdir.name)
    pipe = pipeline.start(_params(tmp, dataroot, args, reduction))
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node("overload_listener", context=ctx)
    timings: list[tuple[float, PipelineTiming]] = []
    lock = threading.Lock()

    def on_timing(m: PipelineTiming) -> None:
        with lock:
            timings.append((time.monotonic(), m))

    node.create_subscription(PipelineTiming, "/bev/timing", on_timing, 50)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    player = pipe.nodes["frame_player_node"]
    bev = pipe.nodes["bev_node"]

    def spin_for(seconds: float, until=None) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end and not (until and until()):
            ex.spin_once(timeout_sec=0.05)

    try:
        spin_for(3.0)  # discovery
        # 1. calibration: one frame at a time
        for i in range(args.calib_frames):
            n0 = len(timings)
            player.publish_frame(player.frames.frame(i))
            spin_for(120.0, until=lambda n0=n0: len(timings) > n0)
        calib = [m.total_ms for _, m in timings[1:]] or [m.total_ms for _, m in timings]
        per_frame_s = float(np.mean(calib)) / 1e3
        sustainable = 1.0 / per_frame_s
        rate = 2.0 * sustainable
        # 2. overload
        with lock:
            timings.clear()
        pub0 = player.published
        dropped0 = bev.slot.dropped if bev.slot else 0
        player.set_parameters([Parameter("rate_hz", value=rate)])
        t0 = time.monotonic()
        spin_for(args.duration)
        t1 = time.monotonic()
        player.set_parameters([Parameter("rate_hz", value=0.01)])
        published = player.published - pub0
        node_dropped = (bev.slot.dropped if bev.slot else 0) - dropped0
        with lock:
            window = [m for t, m in timings if t0 <= t <= t1]
    finally:
        ex.shutdown()
        node.destroy_node()
        ctx.try_shutdown()
        pipe.stop()
        tmpdir.cleanup()
    n = len(window)
    lat = [m.latency_ms for m in window]
    third = max(1, n // 3)
    stage_tot: dict[str, float] = {}
    for m in window:
        for s in m.stages:
            stage_tot[s.name] = stage_tot.get(s.name, 0.0) + s.duration_ms
    total = sum(m.total_ms for m in window)
    model = sum(v for k, v in stage_tot.items() if k in MODEL_STAGES)
    return {
        "reduction": reduction, "per_frame_ms": per_frame_s * 1e3, "sustainable_hz": sustainable,
        "input_hz": rate, "duration_s": t1 - t0, "published": published, "processed": n,
        "output_hz": n / (t1 - t0), "dropped": published - n, "node_dropped": node_dropped,
        "lat_first": (_pct(lat[:third], 50), _pct(lat[:third], 99)),
        "lat_last": (_pct(lat[-third:], 50), _pct(lat[-third:], 99)),
        "outside_share": (total - model) / total if total else float("nan"),
        "stage_ms": {k: v / max(n, 1) for k, v in stage_tot.items()},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataroot", default="", help="nuScenes root (default: generate 1 scene)")
    ap.add_argument("--duration", type=float, default=60.0, help="overload window per mode (s)")
    ap.add_argument("--image-scale", type=float, default=1.0, help="player image scale")
    ap.add_argument("--weights", default="", help="checkpoint (default: "
                    "models/lss_small_synth.pt if present, else untrained LSSConfig.small())")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    ap.add_argument("--calib-frames", type=int, default=4)
    ap.add_argument("--modes", default="1,0", help="decode_reduction values to compare")
    args = ap.parse_args()
    if not args.weights and (REPO / "models" / "lss_small_synth.pt").is_file():
        args.weights = str(REPO / "models" / "lss_small_synth.pt")
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    if args.dataroot:
        root = Path(args.dataroot)
    else:
        from lss_bev_ros.data.synthetic import generate_dataset

        data_tmp = tempfile.TemporaryDirectory(prefix="bev_overload_data_")
        root = Path(data_tmp.name)  # removed at exit
        generate_dataset(root, n_scenes=1, samples_per_scene=6, seed=3, progress=False)
    print(f"weights: {args.weights or 'untrained LSSConfig.small()'}  device: {args.device}  "
          f"images: {round(1600 * args.image_scale)}x{round(900 * args.image_scale)} JPEG x 6")
    results = [run_mode(root, args, int(m)) for m in args.modes.split(",")]
    for r in results:
        name = "full decode" if r["reduction"] == 1 else (
            "auto reduced decode" if r["reduction"] == 0 else f"decode 1/{r['reduction']}")
        f50, f99 = r["lat_first"]
        l50, l99 = r["lat_last"]
        print(f"\n== decode_reduction={r['reduction']} ({name}) ==")
        print(f"  calibrated per-frame {r['per_frame_ms']:.0f} ms -> sustainable "
              f"{r['sustainable_hz']:.2f} Hz; input at {r['input_hz']:.2f} Hz for "
              f"{r['duration_s']:.0f} s")
        print(f"  output {r['output_hz']:.2f} Hz ({r['processed']} grids), published "
              f"{r['published']} sets, dropped {r['dropped']} (node latest-wins count "
              f"{r['node_dropped']})")
        print(f"  latency p50/p99 first third {f50:.0f}/{f99:.0f} ms, last third "
              f"{l50:.0f}/{l99:.0f} ms (last/first p50 = {l50 / f50:.2f})")
        print(f"  time outside the model: {100 * r['outside_share']:.1f} % of processing")
        print("  per-frame stages (ms): " + ", ".join(
            f"{k} {v:.1f}" for k, v in r["stage_ms"].items()))
    if len(results) == 2:
        a, b = results
        ratio = b["outside_share"] / a["outside_share"]
        print(f"\noutside-model share {100 * a['outside_share']:.1f} % -> "
              f"{100 * b['outside_share']:.1f} % (ratio {ratio:.2f}); "
              f"output rate ratio {b['output_hz'] / a['output_hz']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
