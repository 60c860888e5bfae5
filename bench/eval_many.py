"""Wall time of evaluating many bags: sequential ``lss-bev-bag eval`` vs ``eval-many``.

    python bench/eval_many.py                # 8 synthetic bags x 5 frames, 1 and 2 workers
    python bench/eval_many.py --bags 16 --frames 10 --workers 1 2 4
    python bench/eval_many.py --bag-dir DIR  # your bags instead of synthetic ones

Modes, all on the same bags with the same options (fresh output folders, nothing skipped):

- ``sequential``: ``evaluate_bag`` per bag in one process, the model loaded per bag (what a shell
  loop over ``lss-bev-bag eval`` does, minus each CLI's Python/torch start-up, which is printed
  separately once);
- ``in-process``: ``eval-many --no-ray`` (the same tasks, weights loaded once);
- ``ray-N``: ``eval-many --workers N`` on a local Ray cluster started for the run (its start-up
  is in the wall time).

Printed per mode: wall seconds, the sum of in-task ``evaluate_bag`` seconds, model loads,
bags/minute and speed-up over sequential; for Ray also the cluster start-up, actor start-up and
the per-bag overhead Ray adds (worker-seconds of the dispatch loop not spent inside tasks, per
bag). See docs/EVAL_MANY.md for the N-machine estimate built from these numbers.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rosbag_tools.eval_many import EvalManyOptions, ModelSpec, evaluate_many, find_bags
from rosbag_tools.evaluate import EvalOptions, evaluate_bag

REPO = Path(__file__).resolve().parents[1]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def make_bags(root: Path, n: int, frames: int) -> list[Path]:
    from lss_bev_ros.data.synthetic import generate_dataset
    from rosbag_tools.convert import convert_dataset

    data = root / "nuscenes"
    generate_dataset(data, n_scenes=n, samples_per_scene=frames, seed=3, progress=False)
    return [r.bag for r in convert_dataset(data, root / "bags", progress=False)]


def cli_startup_s() -> float:
    """Seconds for ``python -m rosbag_tools.cli eval --help`` after importing torch (the fixed
    cost each separate ``lss-bev-bag eval`` pays before reading a bag)."""
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch, rosbag_tools.evaluate, "
                    "rosbag_tools.cli as c; c.build_parser()"], check=True, cwd=REPO)
    return time.perf_counter() - t


def run_sequential(bags: list[Path], out: Path, opts: EvalOptions) -> dict[str, Any]:
    t = time.perf_counter()
    eval_s = 0.0
    for b in bags:
        t1 = time.perf_counter()
        evaluate_bag(b, out / b.name, opts)
        eval_s += time.perf_counter() - t1
    return {"wall_s": time.perf_counter() - t, "eval_s_sum": eval_s, "model_loads": len(bags),
            "workers": 1}


def run_many(bags: list[Path], out: Path, model: ModelSpec, opts: EvalOptions,
             run: EvalManyOptions) -> dict[str, Any]:
    rep = evaluate_many(bags, [model], out, opts, run)
    bad = [r for r in rep.results if r.status != "ok"]
    if bad:
        raise SystemExit(f"{len(bad)} bag(s) failed: {bad[0].error}")
    (m,) = rep.aggregate["models"].values()
    return {**rep.aggregate["run"], "frames": m["grid"]["frames"],
            "processing_s_sum": sum(float(r.summary["processing_s"]) for r in rep.results)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bags", type=int, default=8, help="synthetic bags (default 8)")
    ap.add_argument("--frames", type=int, default=5, help="frames per synthetic bag")
    ap.add_argument("--bag-dir", default=None, help="evaluate these bags instead")
    ap.add_argument("--weights", default=str(REPO / "models" / "lss_small_synth.pt"))
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--torch-threads", type=int, default=1)
    ap.add_argument("--json", default=None, help="also write the numbers here")
    a = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench_eval_many_") as tmp:
        root = Path(tmp)
        bags = find_bags([a.bag_dir]) if a.bag_dir else make_bags(root, a.bags, a.frames)
        opts = EvalOptions(weights=Path(a.weights), torch_threads=a.torch_threads,
                           progress=False)
        model = ModelSpec(Path(a.weights))
        rows: dict[str, dict[str, Any]] = {}
        rows["sequential"] = run_sequential(bags, root / "seq", opts)
        rows["in-process"] = run_many(bags, root / "inproc", model, opts,
                                      EvalManyOptions(use_ray=False, progress=False))
        for w in a.workers:
            rows[f"ray-{w}"] = run_many(bags, root / f"ray{w}", model, opts,
                                        EvalManyOptions(workers=w, progress=False))
        startup = cli_startup_s()

    base = rows["sequential"]["wall_s"]
    print(f"CPU: {cpu_model()} ({len(bags)} bags, weights {Path(a.weights).name}, "
          f"torch threads {a.torch_threads})")
    print(f"one lss-bev-bag CLI start-up (python + torch import): {startup:.1f} s per bag "
          "on top of 'sequential' for a shell loop")
    hdr = (f"{'mode':<11} {'workers':>7} {'wall s':>8} {'sum eval s':>10} {'loads':>5} "
           f"{'bags/min':>8} {'speed-up':>8} {'ray init s':>10} {'actors s':>8} "
           f"{'stop s':>6} {'overhead/bag ms':>15}")
    print(hdr)
    print("-" * len(hdr))
    for name, r in rows.items():
        ray = "ray_start_s" in r
        print(f"{name:<11} {r['workers']:>7} {r['wall_s']:>8.1f} {r['eval_s_sum']:>10.1f} "
              f"{r['model_loads']:>5} {60 * len(bags) / r['wall_s']:>8.2f} "
              f"{base / r['wall_s']:>8.2f} "
              + (f"{r['ray_start_s']:>10.1f} {r['ray_actors_s']:>8.1f} "
                 f"{r.get('ray_stop_s', float('nan')):>6.1f} "
                 f"{1e3 * r['ray_overhead_per_task_s']:>15.1f}" if ray else
                 f"{'-':>10} {'-':>8} {'-':>6} {'-':>15}"))
    ip = rows["in-process"]
    per_bag = ip["eval_s_sum"] / len(bags)
    per_frame = ip["processing_s_sum"] / ip["frames"]
    print(f"in-task evaluate_bag per bag (in-process): {per_bag:.2f} s = "
          f"{(ip['eval_s_sum'] - ip['processing_s_sum']) / len(bags):.2f} s fixed (backend set-up, "
          f"warm-up, report) + {ip['frames'] / len(bags):.1f} frames x {per_frame:.3f} s")
    if a.json:
        Path(a.json).write_text(json.dumps(
            {"cpu": cpu_model(), "bags": len(bags), "cli_startup_s": startup,
             "modes": {k: {kk: v for kk, v in r.items() if not isinstance(v, dict)}
                       for k, r in rows.items()}}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())

