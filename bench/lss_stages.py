#!/usr/bin/env python3
"""Per-stage latency of the LSS core on CPU, and reference vs precomputed voxel pooling.

    python bench/lss_stages.py [--repeats 7] [--warmup 2] [--threads 2] [--config small_cpu]
    python bench/lss_stages.py --flops-only            # [0] only: GFLOP per stage and config
    python bench/lss_stages.py --flops-only --weights a.pt b.pt   # + those checkpoints' configs

0. GFLOP per frame and stage (``torch.utils.flop_counter.FlopCounterMode``; convolutions and
   matmuls, so the scatter-add pooling counts ~0) of every named config side by side:
   ``full`` (reference), ``small`` (the committed lss_small_synth.pt) and ``small_cpu``
   (slim BEV encoder); with ``--weights``, also the config stored in each checkpoint (its input
   size, stride, crop) and the median forward time of each loaded model, runs interleaved;
1. Full model (6 cameras, 128 x 352, batch 1, eval, no_grad), stage by stage with
   ``lss.timing.run_staged``: ``geometry``, ``camera_encoder``, ``voxel_pooling``,
   ``bev_encoder``, ``total`` for both pooling modes (same weights):
   * ``cumsum``: the reference path, geometry + sort + cumsum every frame;
   * ``precomputed``: geometry and indices cached per calibration (``geometry`` is then only
     the calibration check), per frame one ``index_add``.
2. Pooling alone on the same geometry / features: reference ``cumsum_pool`` vs
   ``FixedPooling`` (``index_add`` and ``gather_cumsum``), runs interleaved so machine load
   hits all of them alike; speed ratio = cumsum median / precomputed median.

Median and min of ``--repeats`` runs after ``--warmup`` runs (milliseconds). Random weights:
timings do not depend on them.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from lss_bev_ros.lss.config import LSSConfig
from lss_bev_ros.lss.geometry import nuscenes_like_rig
from lss_bev_ros.lss.model import LiftSplatShoot
from lss_bev_ros.lss.pooling import FixedPooling, cumsum_pool
from lss_bev_ros.lss.preprocess import augmentation_matrices, sample_augmentation
from lss_bev_ros.lss.timing import STAGES, StageTimer, run_staged
from lss_bev_ros.lss.train import MODEL_CONFIGS


def rig_inputs(cfg: LSSConfig) -> tuple[torch.Tensor, ...]:
    """Random images + the nuScenes-like rig calibration with the eval augmentation."""
    N = cfg.image.ncams
    K, T = nuscenes_like_rig(N)
    aug = sample_augmentation(cfg.image, train=False)
    pr, pt = augmentation_matrices(aug.resize, aug.crop, aug.flip, aug.rotate)
    H, W = cfg.image.final_dim
    g = torch.Generator().manual_seed(0)
    return (
        torch.randn(1, N, 3, H, W, generator=g),
        T[None, :, :3, :3].float(),
        T[None, :, :3, 3].float(),
        K[None].float(),
        pr.expand(1, N, 3, 3).contiguous(),
        pt.expand(1, N, 3).contiguous(),
    )


def stage_gflops(cfg: LSSConfig) -> dict[str, float]:
    """GFLOP of one frame (batch 1) per stage: camera_encoder, voxel_pooling, bev_encoder."""
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    model = LiftSplatShoot(cfg.replace(pooling="cumsum")).eval()
    imgs, *calib = rig_inputs(cfg)
    out: dict[str, float] = {}
    with torch.no_grad():
        geom = model.get_geometry(*calib)
        stages: list[tuple[str, Callable[[], torch.Tensor]]] = [
            ("camera_encoder", lambda: model.get_cam_feats(imgs)),
        ]
        feats = model.get_cam_feats(imgs)
        stages.append(("voxel_pooling", lambda: model.voxel_pooling(geom, feats)))
        bev = model.voxel_pooling(geom, feats)
        stages.append(("bev_encoder", lambda: model.bev_encode(bev)))
        for name, fn in stages:
            with FlopCounterMode(display=False) as counter:
                fn()
            out[name] = counter.get_total_flops() / 1e9
    out["total"] = sum(out.values())
    return out


def print_flops(cfgs: dict[str, LSSConfig]) -> None:
    """[0]: GFLOP per stage for each config (named ones and checkpoints' stored ones, by label),
    and each total relative to ``small``."""
    res = {n: stage_gflops(c) for n, c in cfgs.items()}
    print("[0] GFLOP per frame (batch 1, FlopCounterMode)")
    w = max(14, *(len(n) + 2 for n in res))
    print(f"  {'stage':<16}" + "".join(f"{n:>{w}}" for n in res))
    for s in ("camera_encoder", "voxel_pooling", "bev_encoder", "total"):
        print(f"  {s:<16}" + "".join(f"{res[n][s]:>{w}.2f}" for n in res))
    if "small" in res:
        base = res["small"]["total"]
        print(f"  {'small / config':<16}" + "".join(f"{base / res[n]['total']:>{w - 1}.1f}x"
                                                  for n in res))
    print()


def checkpoint_labels(paths: list[Path]) -> list[str]:
    """A column label per checkpoint: its file stem, or its path where stems repeat or clash
    with a named config."""
    stems = [p.stem for p in paths]
    labels = [str(p) if stems.count(p.stem) > 1 or p.stem in MODEL_CONFIGS else p.stem
              for p in paths]
    if len(set(labels)) != len(labels):
        raise ValueError(f"checkpoints given twice: {[str(p) for p in paths]}")
    return labels


def load_checkpoints(paths: list[Path]) -> dict[str, LiftSplatShoot]:
    """Label (:func:`checkpoint_labels`) -> each checkpoint's model (loaded with weights_only;
    ``model.cfg`` is the config stored in it)."""
    from lss_bev_ros.lss.checkpoint import load_checkpoint

    return {n: load_checkpoint(p)[0] for n, p in zip(checkpoint_labels(paths), paths, strict=True)}


def print_forward_times(models: dict[str, LiftSplatShoot], warmup: int, repeats: int) -> None:
    """[0] continued: median / min forward ms (batch 1, no_grad) of each loaded checkpoint on
    its own input size, runs interleaved so machine load hits all of them alike."""
    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    inputs = {n: rig_inputs(m.cfg) for n, m in models.items()}
    times: dict[str, list[float]] = {n: [] for n in models}
    with torch.no_grad():
        for i in range(warmup + repeats):
            for n, m in models.items():
                t0 = time.perf_counter()
                m(*inputs[n])
                if i >= warmup:
                    times[n].append((time.perf_counter() - t0) * 1e3)
    print(f"  forward ms (median / min of {repeats}, {torch.get_num_threads()} threads, "
          f"{platform.processor() or 'cpu'})")
    for n, t in times.items():
        med, mn = stats(t)
        h, w = models[n].cfg.image.final_dim
        print(f"  {n:<40} {h} x {w}: {med:7.1f} / {mn:7.1f}")
    print()


def stats(values: list[float]) -> tuple[float, float]:
    return statistics.median(values), min(values)


def bench_model(
    cfg: LSSConfig, inputs: tuple[torch.Tensor, ...], warmup: int, repeats: int
) -> dict[str, dict[str, list[float]]]:
    """Stage times (ms lists) for both pooling modes, runs interleaved."""
    torch.manual_seed(0)
    models = {"cumsum": LiftSplatShoot(cfg.replace(pooling="cumsum")).eval()}
    models["precomputed"] = LiftSplatShoot(cfg.replace(pooling="precomputed")).eval()
    models["precomputed"].load_state_dict(models["cumsum"].state_dict())
    timer = StageTimer()
    out: dict[str, dict[str, list[float]]] = {
        k: {s: [] for s in (*STAGES, "total")} for k in models
    }
    with torch.no_grad():
        for i in range(warmup + repeats):
            for name, model in models.items():
                _, times = run_staged(model, inputs, timer)
                if i >= warmup:
                    for s, ms in times.items():
                        out[name][s].append(ms)
        a = models["cumsum"](*inputs)
        b = models["precomputed"](*inputs)
    err = (a - b).abs().max().item()
    print(f"  outputs of the two modes: max |diff| = {err:.2e}")
    return out


def bench_pooling(
    model: LiftSplatShoot, inputs: tuple[torch.Tensor, ...], warmup: int, repeats: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Wall ms and single-thread CPU ms per pooling method (interleaved runs)."""
    imgs, *calib = inputs
    with torch.no_grad():
        geom = model.get_geometry(*calib)
        feats = model.get_cam_feats(imgs)
        t0 = time.perf_counter()
        fixed = FixedPooling(geom, model.cfg.grid, method="index_add")
        build_ms = (time.perf_counter() - t0) * 1e3
        fixed_gc = FixedPooling(geom, model.cfg.grid, method="gather_cumsum")
        grid = model.cfg.grid
        ref = cumsum_pool(geom, feats, grid)
        for f in (fixed, fixed_gc):
            assert torch.allclose(f(feats), ref, atol=1e-3, rtol=1e-4), "pooling paths differ"
    print(
        f"  geometry {tuple(geom.shape)}, features {tuple(feats.shape)}, "
        f"{fixed.num_points}/{geom[..., 0].numel()} points in the grid; "
        f"index build (once per calibration): {build_ms:.1f} ms"
    )
    cases: dict[str, Callable[[], object]] = {
        "cumsum_pool (reference, per frame)": lambda: cumsum_pool(geom, feats, grid),
        "precomputed index_add": lambda: fixed(feats),
        "precomputed index_add + .contiguous()": lambda: fixed(feats).contiguous(),
        "precomputed gather_cumsum": lambda: fixed_gc(feats),
    }
    wall: dict[str, list[float]] = {k: [] for k in cases}
    cpu: dict[str, list[float]] = {k: [] for k in cases}
    threads = torch.get_num_threads()
    with torch.no_grad():
        # pass 1: wall clock with the benchmark's thread count
        for i in range(warmup + repeats):
            for name, fn in cases.items():
                t0 = time.perf_counter()
                fn()
                if i >= warmup:
                    wall[name].append((time.perf_counter() - t0) * 1e3)
        # pass 2: single-threaded, CPU time of this thread: immune to being descheduled by
        # other processes (and to OpenMP workers spinning), i.e. the work each method does
        torch.set_num_threads(1)
        try:
            for i in range(warmup + repeats):
                for name, fn in cases.items():
                    c0 = time.thread_time()
                    fn()
                    if i >= warmup:
                        cpu[name].append((time.thread_time() - c0) * 1e3)
        finally:
            torch.set_num_threads(threads)
    return wall, cpu


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--repeats", type=int, default=7, help="timed runs (median reported)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--pool-repeats", type=int, default=30, help="timed pooling runs")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    ap.add_argument("--small", action="store_true", help="same as --config small")
    ap.add_argument(
        "--config",
        choices=tuple(MODEL_CONFIGS),
        default="full",
        help="config timed in [1] and [2] (full: the reference)",
    )
    ap.add_argument("--flops-only", action="store_true", help="print [0] only")
    ap.add_argument("--weights", type=Path, nargs="+", default=[],
                    help="checkpoints whose stored configs [0] also counts, and times")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    cfgs = {n: f() for n, f in MODEL_CONFIGS.items()}
    checkpoints = load_checkpoints(args.weights)
    print_flops({**cfgs, **{n: m.cfg for n, m in checkpoints.items()}})
    if checkpoints:
        print_forward_times(checkpoints, args.warmup, args.repeats)
    if args.flops_only:
        return 0
    cfg = MODEL_CONFIGS["small" if args.small else args.config]()
    inputs = rig_inputs(cfg)
    H, W = cfg.image.final_dim
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"LSS stage benchmark: torch {torch.__version__}, {platform.processor() or 'cpu'}, "
        f"{args.threads} threads, load avg {load:.1f}"
    )
    print(
        f"config: {cfg.image.ncams} cams x {H} x {W}, D={cfg.depth_bins}, "
        f"BEV {cfg.grid.bev_shape}, batch 1, eval, no_grad; "
        f"{args.warmup} warm-up + {args.repeats} runs\n"
    )

    print("[1] full model, per stage (ms)")
    res = bench_model(cfg, inputs, args.warmup, args.repeats)
    print(f"  {'stage':<16}" + "".join(f"{m + ' median':>20}{'min':>9}" for m in res))
    for s in (*STAGES, "total"):
        row = f"  {s:<16}"
        for m in res:
            med, mn = stats(res[m][s])
            row += f"{med:>20.1f}{mn:>9.1f}"
        print(row)

    print("\n[2] voxel pooling alone, same geometry and features (ms)")
    torch.manual_seed(0)
    model = LiftSplatShoot(cfg).eval()
    wall, cpu = bench_pooling(model, inputs, 3, args.pool_repeats)
    ref = "cumsum_pool (reference, per frame)"
    print(
        f"  {'method':<40}{'wall median':>12}{'wall min':>10}{'1-thr CPU med':>15}"
        f"{'speed-up: wall median / wall min / CPU':>42}"
    )
    for name in wall:
        wmed, wmin = stats(wall[name])
        cmed, _ = stats(cpu[name])
        ups = (
            stats(wall[ref])[0] / wmed,
            stats(wall[ref])[1] / wmin,
            stats(cpu[ref])[0] / cmed,
        )
        row = f"  {name:<40}{wmed:>12.2f}{wmin:>10.2f}{cmed:>15.2f}"
        print(row + f"{ups[0]:>23.1f}x /{ups[1]:>6.1f}x /{ups[2]:>6.1f}x")
    best = "precomputed index_add"
    r_med = stats(wall[ref])[0] / stats(wall[best])[0]
    r_min = stats(wall[ref])[1] / stats(wall[best])[1]
    r_cpu = stats(cpu[ref])[0] / stats(cpu[best])[0]
    print(
        f"\n  speed ratio cumsum / precomputed (index_add): {r_med:.1f}x (wall median), "
        f"{r_min:.1f}x (wall min), {r_cpu:.1f}x (1-thread CPU time)  [goal >= 10x]"
    )
    if load > args.threads:
        print(
            f"  note: load average {load:.1f} > {args.threads} threads: wall medians include"
            " time descheduled by other processes; wall min and CPU time are the robust figures."
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
