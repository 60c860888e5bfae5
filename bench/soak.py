"""Soak: the full node set at 2x the nuScenes key-frame rate for 10 minutes, RSS and latency.

    python bench/soak.py [--minutes 10] [--rate-hz 4] [--weights models/lss_small_synth.pt]

``python -m lss_bev_ros.pipeline`` runs frame_player_node (synthetic scenes, looped, 4 Hz =
2 x nuScenes' 2 Hz), bev_node, detector_node, fusion_node, objects_node and eval_node in ONE
process, as the demo does; this script samples that process's RSS (psutil) every 10 s and
records ``/bev/timing`` and ``/objects/timing`` from its own rclpy node. It prints, side by side,
the first and the last 2 minutes: RSS (MB), bev node latency p50 / p99 (ms, set complete ->
publish), grids and object frames per second, and the growth. Flat = RSS growth < 5 % and
latency p50 growth < 20 %. Prints `lscpu` model name first.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _cpu() -> str:
    try:
        out = subprocess.run(["lscpu"], check=False, capture_output=True, text=True).stdout
        return next(ln.split(":", 1)[1].strip() for ln in out.splitlines()
                    if ln.startswith("Model name"))
    except Exception:
        return "unknown"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--rate-hz", type=float, default=4.0)
    ap.add_argument("--weights", default=str(REPO / "models" / "lss_small_synth.pt"))
    ap.add_argument("--workdir", default="")
    a = ap.parse_args()
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    work = Path(a.workdir or tempfile.mkdtemp(prefix="soak_"))
    data = work / "synth"
    if not (data / "v1.0-mini").is_dir():
        from lss_bev_ros.data.synthetic import generate_dataset

        generate_dataset(data, n_scenes=1, samples_per_scene=10, seed=4242, progress=False)
    rig = work / "rig.yaml"
    params = work / "soak.yaml"
    params.write_text(yaml.safe_dump({
        "frame_player_node": {"ros__parameters": {
            "dataroot": str(data), "rate_hz": a.rate_hz, "loop": True,
            "image_type": "compressed", "rig_file_out": str(rig)}},
        "bev_node": {"ros__parameters": {"rig_file": str(rig), "weights": a.weights,
                                         "input_type": "compressed", "torch_threads": 1}},
        "detector_node": {"ros__parameters": {"input_type": "compressed", "imgsz": 416,
                                              "rig_file": str(rig), "cpu_threads": 1}},
        "fusion_node": {"ros__parameters": {}},
        "objects_node": {"ros__parameters": {"rig_file": str(rig)}},
        "eval_node": {"ros__parameters": {"rig_file": str(rig)}},
    }, sort_keys=False))
    print(f"CPU: {_cpu()}; {psutil.cpu_count()} cores; rate {a.rate_hz} Hz; "
          f"{a.minutes} min", flush=True)
    err = (work / "pipeline.stderr").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "lss_bev_ros.pipeline", "--params-file",
                             str(params)], cwd=REPO, stdout=subprocess.DEVNULL, stderr=err)
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from lss_bev_ros.msg import PipelineTiming

    rclpy.init()
    node = rclpy.create_node("soak_probe")
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    bev: list[tuple[float, float]] = []
    obj: list[tuple[float, float]] = []
    node.create_subscription(PipelineTiming, "/bev/timing",
                             lambda m: bev.append((time.monotonic(), m.node_latency_ms)), 50)
    node.create_subscription(PipelineTiming, "/objects/timing",
                             lambda m: obj.append((time.monotonic(), m.total_ms)), 50)
    rss: list[tuple[float, float]] = []
    ps = psutil.Process(proc.pid)
    t0 = time.monotonic()
    t_end = t0 + a.minutes * 60.0
    next_sample = t0
    try:
        while time.monotonic() < t_end and proc.poll() is None:
            ex.spin_once(timeout_sec=0.1)
            if time.monotonic() >= next_sample:
                rss.append((time.monotonic(), ps.memory_info().rss / 1e6))
                next_sample += 10.0
    finally:
        proc.send_signal(2)
        try:
            rc = proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = -9
        ex.shutdown()
        node.destroy_node()
        rclpy.shutdown()
    dur = time.monotonic() - t0
    win = min(120.0, dur / 3)

    def part(rows: list[tuple[float, float]], first: bool) -> list[float]:
        lo, hi = (t0 + 60.0, t0 + 60.0 + win) if first else (t0 + dur - win, t0 + dur)
        return [v for t, v in rows if lo <= t < hi]  # first minute = start-up, skipped

    print(f"\nran {dur / 60:.1f} min; pipeline exit code {rc}; windows of {win:.0f} s")
    print(f"{'':28}{'first':>12}{'last':>12}{'growth':>10}")
    for name, rows, fn in (("RSS (MB)", rss, np.mean),
                           ("bev node latency p50 (ms)", bev, np.median),
                           ("bev node latency p99 (ms)", bev, lambda v: np.percentile(v, 99)),
                           ("objects stage p50 (ms)", obj, np.median)):
        f, last = part(rows, True), part(rows, False)
        if f and last:
            a_, b_ = float(fn(f)), float(fn(last))
            print(f"{name:<28}{a_:>12.1f}{b_:>12.1f}{(b_ / a_ - 1) * 100:>9.1f}%")
    for name, rows in (("grids / s", bev), ("object frames / s", obj)):
        f, last = part(rows, True), part(rows, False)
        print(f"{name:<28}{len(f) / win:>12.2f}{len(last) / win:>12.2f}")
    print(f"stderr of the pipeline: {work / 'pipeline.stderr'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
