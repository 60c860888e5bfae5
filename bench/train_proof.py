"""Proof of learning: train LSS on synthetic scenes (CPU) and score held-out scenes.

    python bench/train_proof.py                       # ~10 min: generate, train 200 steps, score
    python bench/train_proof.py --config small_cpu --final-dim 80 352 --bot-pct 0.10 0.16 \
        --steps 3000 --batch-size 2 --threads 2 --time-limit 3600 \
        --save models/lss_small_cpu_80x352_synth.pt          # the default model, 55 min
    python bench/train_proof.py --eval-only models/lss_small_synth.pt             # score only

1. generates a synthetic nuScenes-schema dataset (`lss-bev-synth`; default 64 scenes x 6 key
   frames, seed 2024, the last 2 scenes held out) unless it already exists under --workdir;
2. trains --config (default `small_cpu`: the small config with the slim BEV encoder, ~10 GFLOP
   per frame) with `lss.train.train` (Adam, BCE with pos_weight 2.13, auxiliary lidar depth /
   vehicle-cell losses, float32 unless --amp bf16, cosine LR over --steps) for --steps steps or
   --time-limit seconds, whichever comes first; --resume <workdir>/ckpt/last.pt continues;
3. scores vehicle IoU on the HELD-OUT scenes for: the trained model, an untrained model, and
   the trained model fed deliberately wrong inputs (cameras yawed by 30 deg, cameras shifted
   5 m forward, calibrations rotated between cameras, blank images);
4. prints a table, writes results.json, and optionally saves the trained weights (fp16, no
   optimizer state) as a small release checkpoint.

IoU columns: pooled over all held-out cells at the reference threshold 0.5; per-frame mean at
0.5; and pooled at thr* = the threshold with the best IoU on two TRAINING scenes (chosen per
model with correct calibration, then kept fixed for its corrupted-input rows), which compares
models whose probabilities are not yet calibrated around 0.5 (short runs).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import logging
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from lss_bev_ros.data.dataset import LSSDataset  # noqa: E402
from lss_bev_ros.data.synthetic import (  # noqa: E402
    generate_dataset,
    scene_name,
    split_scene_names,
)
from lss_bev_ros.eval.dataset_reference import visibility_references  # noqa: E402
from lss_bev_ros.lss.checkpoint import save_checkpoint  # noqa: E402
from lss_bev_ros.lss.config import SUPPORTED_DOWNSAMPLES, GridConfig, LSSConfig  # noqa: E402
from lss_bev_ros.lss.model import LiftSplatShoot  # noqa: E402
from lss_bev_ros.lss.train import (  # noqa: E402
    MODEL_CONFIGS,
    SWEEP_THRESHOLDS,
    TrainOptions,
    add_memory_format_argument,
    consistent_resize_lim,
    evaluate,
    train,
)

Batch = list[Tensor]


def proof_config(
    grid_res: float,
    name: str = "small_cpu",
    final_dim: tuple[int, int] | None = None,
    downsample: int | None = None,
    bot_pct: tuple[float, float] | None = None,
    dbound: tuple[float, float, float] | None = None,
) -> LSSConfig:
    """Config `name` of `MODEL_CONFIGS` (64 x 176 images, 21 depth bins for the small ones) on a
    +-50 m grid of `grid_res` m cells; `final_dim` (H, W) px changes the network input size
    (the training resize range follows it: `lss.train.consistent_resize_lim`), `downsample` the
    camera feature stride (`LSSConfig.downsample`), `bot_pct` the share of the resized image
    cut off below the crop (`ImageConfig.bot_pct_lim`; its mean at inference), `dbound`
    (lo, hi, step) m the frustum's depth bins (`GridConfig.dbound`)."""
    cfg = MODEL_CONFIGS[name]()
    if downsample is not None:
        cfg = cfg.replace(downsample=downsample)
    if final_dim is not None:
        cfg = cfg.replace(image=dataclasses.replace(cfg.image, final_dim=tuple(final_dim)))
    if bot_pct is not None:
        lim = (float(bot_pct[0]), float(bot_pct[1]))
        cfg = cfg.replace(image=dataclasses.replace(cfg.image, bot_pct_lim=lim))
    cfg = consistent_resize_lim(cfg)
    img = cfg.image
    if int((1 - img.bot_pct_lim[1]) * int(img.src_size[0] * img.resize_lim[0])) < img.final_dim[0]:
        raise ValueError(f"bot_pct_lim {img.bot_pct_lim}: the smallest training resize "
                         f"{img.resize_lim[0]:.3f} leaves fewer than {img.final_dim[0]} rows above "
                         "the cut (the crop would leave the image)")
    if grid_res != cfg.grid.xbound[2]:
        g = cfg.grid
        cfg = cfg.replace(
            grid=GridConfig(
                xbound=(g.xbound[0], g.xbound[1], grid_res),
                ybound=(g.ybound[0], g.ybound[1], grid_res),
                zbound=g.zbound,
                dbound=g.dbound,
            )
        )
    if dbound is not None:
        lo, hi, step = (float(v) for v in dbound)
        cfg = cfg.replace(grid=dataclasses.replace(cfg.grid, dbound=(lo, hi, step)))
    return cfg


def _rot_z(deg: float) -> Tensor:
    a = math.radians(deg)
    return torch.tensor(
        [[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0], [0.0, 0.0, 1.0]]
    )


def yaw_cameras(deg: float) -> Callable[[Batch], Batch]:
    """Corrupt extrinsics: every camera rotated by `deg` about the ego z axis (in place)."""

    def f(b: Batch) -> Batch:
        b = list(b)
        b[1] = _rot_z(deg) @ b[1]
        return b

    return f


def shift_cameras(dx_m: float) -> Callable[[Batch], Batch]:
    """Corrupt extrinsics: every camera moved `dx_m` metres along ego x."""

    def f(b: Batch) -> Batch:
        b = list(b)
        b[2] = b[2] + torch.tensor([dx_m, 0.0, 0.0])
        return b

    return f


def roll_calibrations(b: Batch) -> Batch:
    """Corrupt extrinsics: each image gets the next camera's rotation and translation."""
    b = list(b)
    b[1] = torch.roll(b[1], 1, dims=1)
    b[2] = torch.roll(b[2], 1, dims=1)
    return b


def blank_images(b: Batch) -> Batch:
    """No image content (zeros after normalisation): what the model predicts from the prior."""
    b = list(b)
    b[0] = torch.zeros_like(b[0])
    return b


def ensure_dataset(args: argparse.Namespace, data: Path) -> float:
    """Generate the dataset unless `data` already holds one of the right size; seconds taken."""
    n_scenes = args.scenes + args.extra_train_scenes
    expected = n_scenes * args.samples_per_scene
    sample_json = data / "v1.0-mini" / "sample.json"
    if sample_json.exists() and len(json.loads(sample_json.read_text())) == expected:
        print(f"reusing dataset {data}")
        return float("nan")
    summary = generate_dataset(
        data, n_scenes, args.samples_per_scene, args.data_seed, progress=not args.no_progress
    )
    print(
        f"generated {summary.n_samples} samples in {summary.seconds:.1f} s "
        f"({summary.seconds_per_sample:.2f} s/sample)"
    )
    return summary.seconds


# name, GT IoU@0.5, GT mean frame IoU@0.5, thr*, GT IoU@thr*,
# LiDAR-visibility IoU@0.5, precision@0.5, recall@0.5 (observed cells only)
Row = tuple[str, float, float, float, float, float, float, float]


def score_table(
    model: torch.nn.Module,
    untrained: torch.nn.Module,
    val_ds: LSSDataset,
    calib_ds: LSSDataset,
    seed: int,
) -> tuple[list[Row], float]:
    """Held-out rows for the trained model, the untrained one and corrupted inputs, against
    the GT footprints and against the visibility-aware LiDAR reference; also returns the mean
    share of grid cells LiDAR observed on the held-out frames."""
    rows: list[Row] = []
    refs = {
        id(ds): visibility_references(ds.nusc, ds.tokens, ds.cfg.grid) for ds in (val_ds, calib_ds)
    }
    observed = float("nan")

    def calib(m: torch.nn.Module) -> float:
        return evaluate(m, calib_ds, batch_size=2, sweep=SWEEP_THRESHOLDS).best_threshold

    def score(
        name: str,
        m: torch.nn.Module,
        thr: float,
        transform: Callable[[Batch], Batch] | None = None,
        ds: LSSDataset = val_ds,
    ) -> None:
        nonlocal observed
        r = evaluate(
            m, ds, batch_size=2, transform=transform, sweep=(thr,), visibility=refs[id(ds)]
        )
        v = r.visibility
        assert v is not None
        rows.append(
            (
                name,
                r.iou,
                r.metrics.mean_iou,
                thr,
                r.iou_at[thr],
                v.pooled_iou,
                v.pooled_precision,
                v.pooled_recall,
            )
        )
        if ds is val_ds:
            observed = r.observed_fraction
        print(
            f"  {name:48s} GT-footprint IoU@0.5 {r.iou:.4f}  IoU@{thr:.2f} {r.iou_at[thr]:.4f}"
            f"  LiDAR-visibility IoU@0.5 {v.pooled_iou:.4f}",
            flush=True,
        )

    thr_t, thr_u = calib(model), calib(untrained)
    score("trained, correct calibration", model, thr_t)
    score(f"untrained (random init, seed {seed})", untrained, thr_u)
    score("trained, cameras yawed +30 deg", model, thr_t, yaw_cameras(30.0))
    score("trained, cameras shifted +5 m forward", model, thr_t, shift_cameras(5.0))
    score("trained, calibrations rotated between cameras", model, thr_t, roll_calibrations)
    score("trained, blank images (prior only)", model, thr_t, blank_images)
    score("trained, on 2 TRAINING scenes (reference)", model, thr_t, ds=calib_ds)
    return rows, observed


def print_table(rows: list[Row], val_ds: LSSDataset, val_names: list[str], observed: float) -> None:
    print()
    print(
        "GT: vehicle IoU against ground-truth box footprints (all 200 x 200 cells); "
        "LiDAR-vis: IoU / precision / recall against LIDAR_TOP obstacle returns, scored only "
        f"on the cells LiDAR observed ({observed:.1%} of the grid on average); all pooled over "
        "the frames at threshold 0.5 unless stated"
    )
    print(
        f"| held-out ({len(val_ds)} samples, scenes {', '.join(val_names)}) "
        "| GT IoU | GT mean frame IoU | thr* | GT IoU@thr* "
        "| LiDAR-vis IoU | LiDAR-vis precision | LiDAR-vis recall |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, pooled, mean, thr, at, viou, vp, vr in rows:
        print(
            f"| {name} | {pooled:.3f} | {mean:.3f} | {thr:.2f} | {at:.3f} "
            f"| {viou:.3f} | {vp:.3f} | {vr:.3f} |"
        )
    print()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--workdir", default=str(REPO / "runs" / "train_proof"))
    p.add_argument("--scenes", type=int, default=64)
    p.add_argument("--val-scenes", type=int, default=2)
    p.add_argument(
        "--extra-train-scenes",
        type=int,
        default=0,
        help="generate this many more scenes after --scenes and train on them too; the held-out "
        "scenes stay the same (each scene's content depends only on --data-seed and its index)",
    )
    p.add_argument("--samples-per-scene", type=int, default=6)
    p.add_argument("--data-seed", type=int, default=2024)
    p.add_argument("--seed", type=int, default=0, help="model init / augmentation seed")
    p.add_argument("--steps", type=int, default=200, help="steps (the cosine LR spans them)")
    p.add_argument(
        "--time-limit", type=float, default=540.0, help="training wall-time cap, s (0: none)"
    )
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument(
        "--grid-res",
        type=float,
        default=0.5,
        help="BEV cell size in m (0.5: the small config's 200 x 200 grid; 1.0 is ~4x cheaper)",
    )
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: fastest when shared)")
    p.add_argument(
        "--final-dim",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        default=None,
        help="network input size in px (default: the config's, 64 176 for the small ones)",
    )
    p.add_argument(
        "--downsample",
        type=int,
        choices=SUPPORTED_DOWNSAMPLES,
        default=None,
        help="camera feature stride (default: the config's, 8 for small_cpu)",
    )
    p.add_argument(
        "--bot-pct",
        type=float,
        nargs=2,
        default=None,
        metavar=("LO", "HI"),
        help="share of the resized image below the crop (ImageConfig.bot_pct_lim; default the "
        "config's 0 0.22): with a wide, low --final-dim, e.g. 64 352, 0.22 0.30 keeps the "
        "horizon. Stored in the checkpoint; give it again with --resume",
    )
    p.add_argument(
        "--dbound",
        type=float,
        nargs=3,
        default=None,
        metavar=("LO", "HI", "STEP"),
        help="frustum depth bins in m, arange(LO, HI, STEP) (default the config's, 4 45 2 for "
        "the small ones: 21 bins to 44 m). Stored in the checkpoint; give it again with --resume",
    )
    p.add_argument(
        "--config",
        choices=tuple(MODEL_CONFIGS),
        default="small_cpu",
        help="model config (small_cpu: slim BEV encoder made for CPUs; small: the committed "
        "lss_small_synth.pt's)",
    )
    p.add_argument(
        "--amp",
        choices=("auto", "bf16", "off"),
        default="off",
        help="bf16 autocast of the BEV encoder (off: float32, no dependency on bf16 hardware; "
        "auto: bf16 on CPUs with native bf16 only)",
    )
    p.add_argument("--lr-schedule", choices=("constant", "cosine"), default="cosine")
    p.add_argument("--depth-weight", type=float, default=1.0, help="aux lidar depth loss")
    p.add_argument("--vehicle-weight", type=float, default=1.0, help="aux vehicle-cell loss")
    p.add_argument(
        "--monitor-every",
        type=int,
        default=0,
        help="log held-out IoU and write last.pt every N steps (monitoring only; "
        "the final model is scored, never a selected one)",
    )
    add_memory_format_argument(p)
    p.add_argument("--init", default=None, help="start from these weights (fine-tuning)")
    p.add_argument("--resume", default=None, help="continue an interrupted run from its last.pt")
    p.add_argument("--save", default=None, help="write the trained weights here (fp16)")
    p.add_argument("--eval-only", default=None, help="skip training; score this checkpoint")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)

    from nuscenes.nuscenes import NuScenes

    from lss_bev_ros.lss.checkpoint import load_checkpoint

    t0 = time.perf_counter()
    work = Path(args.workdir)
    data = work / "data"
    gen_s = ensure_dataset(args, data)
    nusc = NuScenes(version="v1.0-mini", dataroot=str(data), verbose=False)
    train_names, val_names = split_scene_names(args.scenes, args.val_scenes)
    train_names += [scene_name(args.scenes + i) for i in range(args.extra_train_scenes)]
    cfg = proof_config(args.grid_res, args.config, args.final_dim, args.downsample, args.bot_pct,
                       args.dbound)
    torch.manual_seed(args.seed)  # untrained baseline = train()'s initial weights (same seed)
    untrained = LiftSplatShoot(cfg)

    result = None
    if args.eval_only:
        model, cfg, extra = load_checkpoint(args.eval_only)
        print(f"scoring {args.eval_only} (trained {extra.get('steps', '?')} steps)")
        torch.manual_seed(args.seed)
        untrained = LiftSplatShoot(cfg)
    else:
        opts = TrainOptions(
            dataroot=str(data),
            out_dir=str(work / "ckpt"),
            epochs=10_000,
            max_steps=args.steps,
            batch_size=args.batch_size,
            lr=args.lr,
            seed=args.seed,
            train_scene_names=train_names,
            val_scene_names=val_names if args.monitor_every else [],
            val_every=args.monitor_every,
            max_val_samples=12,
            lr_schedule=args.lr_schedule,
            warmup_steps=20,
            depth_weight=args.depth_weight,
            vehicle_weight=args.vehicle_weight,
            progress=not args.no_progress,
            time_limit_s=args.time_limit or None,
            log_every=25,
            amp=args.amp,
            channels_last=args.memory_format == "channels_last",
            threads=args.threads,
            init_weights=args.init,
            resume=args.resume,
        )
        result = train(opts, cfg=cfg, nusc=nusc)
        model, _, _ = load_checkpoint(result.last_checkpoint, cfg=cfg)

    val_ds = LSSDataset(nusc, val_names, cfg, is_train=False)
    calib_ds = LSSDataset(nusc, train_names[:2], cfg, is_train=False)
    print("scoring held-out scenes", ", ".join(val_names))
    rows, observed = score_table(model, untrained, val_ds, calib_ds, args.seed)
    print_table(rows, val_ds, val_names, observed)
    summary: dict[str, object] = {
        "rows": [
            {
                "name": n,
                "iou": a,
                "mean_frame_iou": b,
                "thr_star": t,
                "iou_thr_star": c,
                "lidar_visibility_iou": vi,
                "lidar_visibility_precision": vp,
                "lidar_visibility_recall": vr,
            }
            for n, a, b, t, c, vi, vp, vr in rows
        ],
        "observed_fraction": observed,
        "val_scenes": val_names,
        "config": cfg.to_dict(),
        "args": vars(args),
        "generation_seconds": gen_s,
    }
    if result is not None:
        first = sum(result.losses[:10]) / max(1, len(result.losses[:10]))
        last = sum(result.losses[-10:]) / max(1, len(result.losses[-10:]))
        print(
            f"training: {result.steps} steps x batch {args.batch_size} in {result.seconds:.0f} s;"
            f" BEV loss {first:.3f} (first 10) -> {last:.3f} (last 10); grid {cfg.grid.nx[0]} x "
            f"{cfg.grid.nx[1]} cells of {args.grid_res} m; data generation {gen_s:.1f} s"
        )
        summary.update(
            steps=result.steps,
            train_seconds=result.seconds,
            loss_first10=first,
            loss_last10=last,
            losses=result.losses,
            train_scenes=train_names,
        )
    summary["total_seconds"] = time.perf_counter() - t0
    work.mkdir(parents=True, exist_ok=True)
    (work / "results.json").write_text(json.dumps(summary, indent=1))
    print(f"total {summary['total_seconds']:.0f} s; results in {work / 'results.json'}")
    if args.save and result is not None:
        release = copy.deepcopy(model).half()
        extra = {
            "trained_on": "synthetic nuScenes-schema scenes (lss-bev-synth)",
            "data": {
                "scenes": args.scenes,
                "val_scenes": args.val_scenes,
                "extra_train_scenes": args.extra_train_scenes,
                "samples_per_scene": args.samples_per_scene,
                "seed": args.data_seed,
            },
            "steps": result.steps,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "heldout_iou": rows[0][1],
            "heldout_lidar_visibility_iou": rows[0][5],
            "heldout_iou_thr_star": rows[0][4],
            "untrained_iou": rows[1][1],
            "command": "python bench/train_proof.py " + " ".join(argv or sys.argv[1:]),
        }
        path = save_checkpoint(args.save, release, cfg, extra)
        print(f"saved {path} ({path.stat().st_size / 1e6:.1f} MB, fp16 weights)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
