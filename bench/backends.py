"""Benchmark the LSS inference backends side by side in one run.

    python bench/backends.py                      # full model, 6 x 128 x 352, CPU
    python bench/backends.py --config small --iters 3
    python bench/backends.py --compile            # also torch.compile (minutes to compile)
    python bench/backends.py --device cuda        # GPU variants (fp16, CUDA graphs, EPs)
    python bench/backends.py --weights models/lss_small_synth.pt --data <nuScenes root>
                                                  # trained model on real frames: flipped cells

For every backend variant that can run here: per-stage and whole-model milliseconds (median over
``--iters`` frames after ``--warmup``), speed-up versus torch eager fp32, and the max abs logit
difference from torch eager on the same frame, and the share of BEV cells whose mask at the 0.5
threshold (logit >= 0) differs from torch eager fp32 ("flips": what reduced precision costs).
Random weights give near-constant logits, which hides flips: judge reduced precision with
``--weights`` (a trained checkpoint, its own config) and ``--data`` (frames of a nuScenes-format
dataset, e.g. from ``lss-bev-synth``, cycled over the timed frames).

Frames are timed round-robin (frame i of every variant before frame i + 1 of any) so load
changes on a shared machine hit all variants alike.
Variants that are unavailable are listed with the reason, not silently dropped.

Threads matter on a shared machine: with 2 torch threads on 2 busy cores, torch's OpenMP
workers spin-wait on each other and eager torch gets several times slower than with
``--threads 1``, while onnxruntime's pool degrades gracefully; compare ``--threads 1`` (per-core
efficiency) with the default before drawing conclusions.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lss_bev_ros.backends import BackendUnavailableError, create_backend
from lss_bev_ros.backends.base import BackendOptionError
from lss_bev_ros.backends.rig import calibration_tensors, random_images
from lss_bev_ros.lss.checkpoint import load_checkpoint
from lss_bev_ros.lss.config import LSSConfig
from lss_bev_ros.lss.model import LiftSplatShoot

STAGE_COLS = ("camera_encoder", "voxel_pooling", "bev_encoder", "whole_model")
FP32_MAX_FLIPPED = 5e-4  # share of cells, as test_backend_parity's fp32 bound


def load_frames(root: Path, version: str, cfg: LSSConfig, n: int) -> list[tuple[Tensor, tuple]]:
    """Up to ``n`` key frames of a nuScenes-format dataset as ``(imgs, calibration)`` model
    inputs (eval transform): ``1 x N x 3 x H x W`` and the five ``1 x N x ...`` tensors."""
    from nuscenes.nuscenes import NuScenes

    from lss_bev_ros.data.dataset import sample_inputs

    nusc = NuScenes(version=version, dataroot=str(root), verbose=False)
    out = []
    for rec in nusc.sample[:n]:
        inp = sample_inputs(nusc, rec["token"], cfg)
        out.append((inp[0], tuple(inp[1:])))
    return out


def variants(device: str, compile_: bool) -> list[tuple[str, str, dict[str, Any]]]:
    """(label, backend name, options) to try; the first is the baseline."""
    v: list[tuple[str, str, dict[str, Any]]] = [
        ("torch fp32 (baseline)", "torch", {}),
        ("torch fp32 channels_last", "torch", {"channels_last": True}),
        ("torch fp32 jit freeze (BN folded)", "torch", {"jit": "freeze"}),
        ("torch fp32 jit optimize_for_inference", "torch", {"jit": "optimize"}),
        ("torch bf16 autocast", "torch", {"precision": "bf16"}),
        ("torch bf16 autocast channels_last", "torch",
         {"precision": "bf16", "channels_last": True}),
        ("torch bf16 BEV encoder only, channels_last", "torch",
         {"precision": "bf16", "channels_last": True, "reduced_stages": ["bev_encoder"]}),
    ]
    if compile_:
        v.append(("torch_compile fp32", "torch_compile", {}))
    v += [
        ("onnxruntime whole graph (gather_cumsum)", "onnxruntime", {}),
        # onnxruntime's CPU ScatterND add is only correct single-threaded (it races otherwise)
        ("onnxruntime whole graph (scatter_nd, 1 thread)", "onnxruntime",
         {"pooling_op": "scatter_nd", "threads": 1}),
        ("onnxruntime whole graph, basic graph opt", "onnxruntime",
         {"graph_optimization": "basic"}),
        ("onnxruntime stages (demo split)", "onnxruntime", {"mode": "stages"}),
        ("onnxruntime cam encoder + torch bf16 BEV", "onnxruntime",
         {"mode": "stages", "bev_encoder": "torch_bf16"}),
    ]
    if device == "cuda":
        v += [
            ("torch fp16 autocast channels_last", "torch",
             {"precision": "fp16", "channels_last": True}),
            ("cuda_graphs fp16", "cuda_graphs", {"precision": "fp16"}),
            ("tensorrt fp16", "tensorrt", {"precision": "fp16"}),
        ]
    return v


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", choices=("full", "small"), default="full")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0, help="torch + onnxruntime threads")
    ap.add_argument("--compile", action="store_true", help="include torch_compile")
    ap.add_argument("--only", nargs="*", default=None, help="substrings of labels to run")
    ap.add_argument("--cache-dir", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None, help="also write results as JSON")
    ap.add_argument("--weights", type=Path, default=None,
                    help="trained checkpoint (its config replaces --config)")
    ap.add_argument("--data", type=Path, default=None,
                    help="nuScenes-format dataroot: time real frames instead of random images")
    ap.add_argument("--version", default="v1.0-mini", help="table folder of --data")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.weights is not None:
        model, cfg, _ = load_checkpoint(args.weights)
        args.config = f"checkpoint {args.weights.name}"
    else:
        cfg = LSSConfig() if args.config == "full" else LSSConfig.small()
        torch.manual_seed(0)
        model = LiftSplatShoot(cfg).eval()
    frames = load_frames(args.data, args.version, cfg, args.iters) if args.data else [
        (random_images(cfg, seed=1), calibration_tensors(cfg))]
    imgs, calib = frames[0]
    H, W = cfg.image.final_dim
    load0 = os.getloadavg()[0]
    print(f"LSS {args.config}: {cfg.image.ncams} cameras x {H} x {W}, "
          f"{cfg.grid.num_depth_bins} depth bins, BEV {cfg.grid.bev_shape}; device {args.device},"
          f" torch threads {torch.get_num_threads()}, torch {torch.__version__}")

    runs: list[dict[str, Any]] = []
    skipped: list[tuple[str, str]] = []
    for label, name, opts in variants(args.device, args.compile):
        if args.only and label != variants(args.device, False)[0][0] and not any(
            s in label for s in args.only
        ):
            continue
        t0 = time.perf_counter()
        extra = ({"threads": args.threads} if name == "onnxruntime" and args.threads
                 and "threads" not in opts else {})
        try:
            backend = create_backend(name, model, device=args.device,
                                     cache_dir=args.cache_dir, **opts, **extra)
            backend.set_calibration(*calib)
            for _ in range(args.warmup):
                backend.infer(imgs)
        except (BackendUnavailableError, BackendOptionError) as exc:
            skipped.append((label, str(exc)))
            continue
        runs.append({"label": label, "backend": backend, "name": backend.name,
                     "setup_s": time.perf_counter() - t0, "totals": [], "stages": []})
        print(f"  ready: {label:42s} setup {runs[-1]['setup_s']:.1f} s", flush=True)

    ref_logits = None
    for i in range(args.iters):
        imgs, calib = frames[i % len(frames)]
        for r in runs:
            r["backend"].set_calibration(*calib)  # cached: rebuilt only for a new rig
            t = time.perf_counter()
            logits, stages = r["backend"].infer(imgs)
            r["totals"].append((time.perf_counter() - t) * 1e3)
            r["stages"].append(stages)
            if r is runs[0]:
                ref_logits = logits
            r["err"] = max(r.get("err", 0.0), float((logits - ref_logits).abs().max()))
            r.setdefault("flips", []).append(float(((logits >= 0) != (ref_logits >= 0))
                                                   .float().mean()))
        print(f"  round {i + 1}/{args.iters} done", flush=True)

    base = statistics.median(runs[0]["totals"])
    header = (f"{'variant':42s} {'cam_enc':>8s} {'pool':>7s} {'bev_enc':>8s} {'whole':>8s} "
              f"{'total':>8s} {'speedup':>8s} {'max|err|':>9s} {'flips':>7s}")
    print("\nmedian ms per frame (" + f"{args.iters} frames, round-robin)")
    print(header)
    print("-" * len(header))
    table = []
    for r in runs:
        med = {c: statistics.median([s.get(c, float("nan")) for s in r["stages"]])
               for c in STAGE_COLS}
        total = statistics.median(r["totals"])
        flips = max(r["flips"])  # worst frame
        row = {"variant": r["label"], "backend": r["name"], "total_ms": total,
               "speedup": base / total, "max_abs_err": r["err"], "max_flipped": flips,
               "setup_s": r["setup_s"],
               **{f"{c}_ms": med[c] for c in STAGE_COLS}}
        table.append(row)
        cells = " ".join(f"{med[c]:8.1f}" if med[c] == med[c] else f"{'-':>8s}"
                         for c in STAGE_COLS)
        print(f"{r['label']:42s} {cells} {total:8.1f} {base / total:7.2f}x {r['err']:9.1e} "
              f"{flips:7.3%}")
    for label, why in skipped:
        print(f"{label:42s} unavailable: {why}")
    print(f"load average (1 min) at start {load0:.1f}, at end {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} CPUs")
    best = max(table, key=lambda row: row["speedup"])
    print(f"\nbest: {best['variant']} ({best['backend']}) {best['speedup']:.2f}x vs torch eager "
          f"fp32 (flips {best['max_flipped']:.3%})")
    exact = [row for row in table if row["max_flipped"] <= FP32_MAX_FLIPPED]
    best = max(exact, key=lambda row: row["speedup"])
    print(f"best with <= {FP32_MAX_FLIPPED:.2%} flipped cells (the fp32 parity bound): "
          f"{best['variant']} {best['speedup']:.2f}x")
    if args.json:
        args.json.write_text(json.dumps({"config": args.config, "device": args.device,
                                         "rows": table, "skipped": skipped}, indent=2))
    for r in runs:
        r["backend"].close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
