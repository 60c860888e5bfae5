"""Train Lift-Splat-Shoot vehicle segmentation on a nuScenes-schema dataset (`lss-bev-train`).

Reference recipe (nv-tlabs/lift-splat-shoot `src/train.py`): Adam (lr 1e-3, weight decay 1e-7),
`BCEWithLogitsLoss(pos_weight=2.13)`, gradient clipping at 5, validation IoU at threshold 0.5 of
the sigmoid. Additions, all switchable, that make CPU training from scratch feasible:

* auxiliary lidar supervision of the lift step (`--depth-weight`, `--vehicle-weight`, default
  1 each; 0 gives the reference recipe): depth distribution of every frustum cell against the
  lidar depth histogram, and a training-only 1 x 1 head on the context features against the
  fraction of the cell's lidar points on vehicles (`data.dataset` computes the targets);
* bfloat16 autocast of the BEV encoder with channels-last activations (`--amp auto`: on CPUs
  with native bf16 such as AMX, ~3x faster convolutions);
* channels-last (NHWC) weights and activations in float32 too (`--memory-format`, default
  `channels_last`): the same math (rounded differently), 1.10x faster steps on a 2-core Intel
  Xeon (`models/README.md`);
* one torch thread by default: on a busy shared CPU, OpenMP barriers of 2 threads stall every
  small op (measured 5x slower steps);
* optional warm-up and cosine learning-rate decay (`--lr-schedule cosine`).

Checkpoints (`lss.checkpoint` format, loadable with `weights_only=True`):

    <out>/last.pt   model + optimizer + step (for --resume), written every validation and at exit
    <out>/best.pt   the model with the best validation IoU so far

Scenes: synthetic datasets (`synth-*` scenes) are split with
`data.synthetic.split_scene_names` (last `--val-scenes` held out); real nuScenes uses the devkit
splits (`mini_train` / `mini_val` for v1.0-mini, `train` / `val` otherwise).
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from lss_bev_ros.eval.metrics import Confusion, RunningMetrics
from lss_bev_ros.lss.checkpoint import load_checkpoint, save_checkpoint
from lss_bev_ros.lss.config import MODEL_CONFIGS, ImageConfig, LSSConfig
from lss_bev_ros.lss.model import LiftSplatShoot
from lss_bev_ros.lss.pooling import cumsum_pool

log = logging.getLogger("lss_bev_ros.train")

POS_WEIGHT = 2.13  # reference SimpleLoss pos_weight
REFERENCE_FINAL_W = 352  # the reference resize_lim (0.193, 0.225) belongs to a 352 px width
REFERENCE_RESIZE_LIM = (0.193, 0.225)


def consistent_resize_lim(cfg: LSSConfig) -> LSSConfig:
    """`cfg` with `image.resize_lim` scaled to its `final_dim` if it does not fit.

    The reference training range (0.193, 0.225) is meant for 352 px wide crops of 1600 px images
    (eval resize 0.22). A smaller `final_dim` with the same range would train on zoomed-in
    centre crops but evaluate on whole images; scale the range by the eval resize instead.
    """
    img = cfg.image
    H, W = img.src_size
    fH, fW = img.final_dim
    eval_resize = max(fH / H, fW / W)
    lo, hi = img.resize_lim
    if lo <= eval_resize * 1.05 and eval_resize <= hi * 1.05:
        return cfg
    ref_eval = REFERENCE_FINAL_W / 1600.0
    lim = (
        REFERENCE_RESIZE_LIM[0] / ref_eval * eval_resize,
        REFERENCE_RESIZE_LIM[1] / ref_eval * eval_resize,
    )
    new_img = ImageConfig(**{**_image_kwargs(img), "resize_lim": lim})
    return cfg.replace(image=new_img)


def _image_kwargs(img: ImageConfig) -> dict[str, Any]:
    return {k: getattr(img, k) for k in img.__dataclass_fields__}


#: `--config` choice -> LSSConfig factory (`small_cpu`: slim BEV encoder, ~6x fewer FLOPs).


def model_config(name: str) -> LSSConfig:
    """A named config of `MODEL_CONFIGS`, augmentation range made consistent."""
    if name not in MODEL_CONFIGS:
        raise ValueError(f"unknown config {name!r} ({' | '.join(MODEL_CONFIGS)})")
    return consistent_resize_lim(MODEL_CONFIGS[name]())


@dataclass
class TrainOptions:
    """Options of `train` (the CLI flags)."""

    dataroot: str
    out_dir: str
    version: str = "v1.0-mini"
    config: str = "small"
    epochs: int = 1
    max_steps: int | None = None  # stop after this many optimizer steps (over all epochs)
    batch_size: int = 4
    lr: float = 1e-3
    weight_decay: float = 1e-7
    grad_clip: float = 5.0
    pos_weight: float = POS_WEIGHT
    resume: str | None = None
    init_weights: str | None = None  # start from these weights (fresh optimizer, step 0)
    val_every: int = 0  # steps between validations; 0 = at the end of every epoch
    seed: int = 0
    val_scenes: int = 2  # synthetic datasets: how many trailing scenes are held out
    train_scene_names: list[str] | None = None
    val_scene_names: list[str] | None = None
    max_val_samples: int | None = None
    num_workers: int = 0
    threads: int | None = 1  # torch threads while training (1: no OpenMP stalls on a busy CPU)
    log_every: int = 10
    progress: bool = True
    time_limit_s: float | None = None  # stop (and save) after this much wall time
    amp: str = "auto"  # bfloat16 autocast: auto | bf16 | off
    # NHWC weights and activations (float32 too; the bf16 path always uses them): the same
    # result, 1.10x faster training steps (data loading included) on a 2-core Intel Xeon,
    # float32 (`bench/train_proof.py --memory-format`; models/README.md)
    channels_last: bool = True
    lr_schedule: str = "constant"  # constant | cosine (to 5 % of lr at max_steps)
    warmup_steps: int = 0
    depth_weight: float = 1.0  # auxiliary lidar depth loss (0: reference recipe)
    vehicle_weight: float = 1.0  # auxiliary per-cell vehicle loss on the context features


@dataclass
class TrainResult:
    """What `train` did."""

    steps: int
    epochs_done: int
    seconds: float
    losses: list[float]  # BEV loss per optimizer step
    aux_losses: list[tuple[float, float]]  # (depth, vehicle) auxiliary losses per step
    val_history: list[dict[str, float]]  # {"step", "iou", "loss"} per validation
    best_iou: float
    last_checkpoint: Path
    best_checkpoint: Path | None
    cfg: LSSConfig
    train_scenes: list[str] = field(default_factory=list)
    val_scenes: list[str] = field(default_factory=list)


def default_splits(nusc: Any, version: str, n_val: int = 2) -> tuple[list[str], list[str]]:
    """(train, val) scene names: synthetic → held-out trailing scenes; real → devkit splits."""
    from lss_bev_ros.data.synthetic import is_synthetic_scene, split_scene_names

    names = [s["name"] for s in nusc.scene]
    if names and all(is_synthetic_scene(n) for n in names):
        train, val = split_scene_names(len(names), n_val)
        return train, val
    from nuscenes.utils.splits import create_splits_scenes

    splits = create_splits_scenes()
    key_train, key_val = ("mini_train", "mini_val") if "mini" in version else ("train", "val")
    have = set(names)
    return [n for n in splits[key_train] if n in have], [n for n in splits[key_val] if n in have]


def bce_loss(pos_weight: float = POS_WEIGHT) -> nn.Module:
    """The reference `SimpleLoss`: BCE with logits, positive class weighted."""
    return nn.BCEWithLogitsLoss(pos_weight=torch.tensor([pos_weight]))


def match_state_layouts(opt: torch.optim.Optimizer) -> int:
    """Give every per-parameter optimizer state tensor (Adam's moments) its parameter's memory
    layout, after `load_state_dict` from a run trained in the other `--memory-format`: the
    values are kept, only their strides change (a mismatched moment is right but slower, and
    stays mismatched). Returns how many tensors were converted."""
    n = 0
    for group in opt.param_groups:
        for p in group["params"]:
            state = opt.state.get(p, {})
            for k, v in state.items():
                if isinstance(v, Tensor) and v.shape == p.shape and v.stride() != p.stride():
                    state[k] = torch.empty_like(p, dtype=v.dtype).copy_(v)
                    n += 1
    return n


MEMORY_FORMATS = ("channels_last", "contiguous")


def add_memory_format_argument(p: argparse.ArgumentParser) -> None:
    """``--memory-format`` (:attr:`TrainOptions.channels_last`) on a training CLI."""
    p.add_argument(
        "--memory-format",
        choices=MEMORY_FORMATS,
        default="channels_last",
        help="layout of weights and activations while training (the same float32 math; "
        "channels_last: 1.10x faster steps on a 2-core Intel Xeon, models/README.md; bf16 "
        "autocast always trains channels_last)",
    )


def resolve_amp(amp: str) -> bool:
    """Whether to train in bfloat16 autocast: "bf16", "off", or "auto" (CPUs with native bf16,
    e.g. AMX / AVX512-BF16, where it is ~2-3x faster than float32)."""
    if amp == "auto":
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    if amp in ("bf16", "off"):
        return amp == "bf16"
    raise ValueError(f"amp must be auto | bf16 | off, got {amp!r}")


def forward_staged(
    model: LiftSplatShoot,
    batch: Sequence[Tensor],
    device: torch.device,
    amp: bool = False,
    return_lift: bool = False,
    channels_last: bool = False,
) -> Tensor | tuple[Tensor, Tensor, Tensor]:
    """Training forward: `B x outC x X x Y` float32 logits of a batch (first 6 items).

    Geometry, camera encoder and pooling run in float32 (reference cumsum pooling, which suits
    a calibration that changes every step); with `amp` the BEV encoder, which holds most of the
    FLOPs, runs under bfloat16 autocast. With `amp` or `channels_last` the images and the BEV
    features enter the encoders channels-last (NHWC; give the model channels-last weights too).
    With `return_lift` also returns the depth distribution `BN x D x fH x fW` and context
    features `BN x fH x fW x C`.
    """
    imgs, rots, trans, intrins, post_rots, post_trans = (t.to(device) for t in batch[:6])
    B, N = imgs.shape[:2]
    geom = model.get_geometry(rots, trans, intrins, post_rots, post_trans)
    x = imgs.flatten(0, 1)
    nhwc = amp or channels_last
    if nhwc:
        x = x.contiguous(memory_format=torch.channels_last)
    depth, feats = model.camencode.get_depth_feat(x)  # BN x D x h x w, BN x D x h x w x C
    bev = cumsum_pool(geom, feats.view(B, N, *feats.shape[1:]), model.cfg.grid)
    if nhwc:
        bev = bev.contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
        out = model.bev_encode(bev)
    if return_lift:
        return out.float(), depth, feats.sum(dim=1)  # depth sums to 1: sum_D feats = context
    return out.float()


class AuxLoss(nn.Module):
    """Auxiliary lift supervision from lidar (not in the reference; speeds up learning).

    * depth: cross-entropy of the predicted depth distribution against the lidar depth
      histogram of each frustum cell (cells without points are ignored);
    * vehicle: a 1 x 1 conv on the context features predicts the fraction of the cell's lidar
      points on vehicles (BCE; only used in training, not part of the model).
    """

    def __init__(self, channels: int, depth_weight: float, vehicle_weight: float) -> None:
        super().__init__()
        self.depth_weight = depth_weight
        self.vehicle_weight = vehicle_weight
        self.head = nn.Conv2d(channels, 1, kernel_size=1)
        nn.init.zeros_(self.head.weight)
        nn.init.constant_(self.head.bias, -2.0)

    def forward(
        self, depth: Tensor, context: Tensor, depth_target: Tensor, vehicle_target: Tensor
    ) -> tuple[Tensor, Tensor]:
        """depth `BN x D x h x w`, context `BN x h x w x C`; targets `B x N x D x h x w`,
        `B x N x h x w` (-1 = no lidar). Returns (depth loss, vehicle loss), unweighted."""
        dt = depth_target.flatten(0, 1)
        valid = dt.sum(dim=1) > 0  # BN x h x w
        ce = -(dt * torch.log(depth.clamp_min(1e-6))).sum(dim=1)
        loss_d = ce[valid].mean() if valid.any() else depth.sum() * 0.0
        vt = vehicle_target.flatten(0, 1)
        vvalid = vt >= 0
        logits = self.head(context.permute(0, 3, 1, 2)).squeeze(1)
        loss_v = (
            nn.functional.binary_cross_entropy_with_logits(logits[vvalid], vt[vvalid])
            if vvalid.any()
            else logits.sum() * 0.0
        )
        return loss_d, loss_v

    def total(self, loss_d: Tensor, loss_v: Tensor) -> Tensor:
        """Weighted sum."""
        return self.depth_weight * loss_d + self.vehicle_weight * loss_v


def _forward(model: nn.Module, batch: Sequence[Tensor], device: torch.device) -> Tensor:
    imgs, rots, trans, intrins, post_rots, post_trans = (t.to(device) for t in batch[:6])
    return model(imgs, rots, trans, intrins, post_rots, post_trans)


SWEEP_THRESHOLDS: tuple[float, ...] = (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)


@dataclass
class EvalResult:
    """Validation result: pooled IoU (reference `get_val_info`) at `threshold`, mean loss,
    per-frame metrics, and pooled IoU at every swept threshold (`iou_at`)."""

    iou: float
    loss: float
    metrics: RunningMetrics
    n_samples: int
    threshold: float = 0.5
    iou_at: dict[float, float] = field(default_factory=dict)
    # against the visibility-aware LiDAR reference (observed cells only), when one was given
    visibility: RunningMetrics | None = None
    observed_fraction: float = math.nan  # mean share of grid cells LiDAR observed

    @property
    def best_threshold(self) -> float:
        """The swept threshold with the highest pooled IoU (`threshold` if none swept)."""
        finite = {t: v for t, v in self.iou_at.items() if math.isfinite(v)}
        return max(finite, key=finite.__getitem__) if finite else self.threshold


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset: Dataset,
    batch_size: int = 2,
    threshold: float = 0.5,
    max_samples: int | None = None,
    pos_weight: float = POS_WEIGHT,
    transform: Callable[[list[Tensor]], list[Tensor]] | None = None,
    sweep: Sequence[float] = (),
    visibility: Sequence[tuple[Any, Any]] | None = None,
) -> EvalResult:
    """Run `model` over `dataset` (items as `LSSDataset`); IoU of `sigmoid > threshold`.

    `transform` may modify each batch (list of the 7 tensors) before the forward pass, e.g. to
    corrupt the extrinsics; `sweep` adds the pooled IoU at these thresholds (`iou_at`).
    `visibility`: one `(occupied, observed)` X x Y reference per sample
    (`eval.dataset_reference.visibility_references`), scored over observed cells at `threshold`
    into `EvalResult.visibility`. The model's train/eval mode is restored afterwards.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    n = len(dataset) if max_samples is None else min(len(dataset), max_samples)
    idx = list(range(n))
    loss_fn = bce_loss(pos_weight).to(device)
    metrics = RunningMetrics()
    swept = {float(t): Confusion() for t in sweep}
    vis = RunningMetrics() if visibility is not None else None
    observed: list[float] = []
    if visibility is not None and len(visibility) < n:
        raise ValueError(f"{len(visibility)} visibility references for {n} samples")
    total_loss = 0.0
    for start in range(0, n, batch_size):
        items = [dataset[i] for i in idx[start : start + batch_size]]
        batch = [torch.stack([it[k] for it in items]) for k in range(7)]
        if transform is not None:
            batch = transform(batch)
        out = _forward(model, batch, device)
        target = batch[6].to(device)
        total_loss += loss_fn(out, target).item() * len(items)
        prob = out.sigmoid().cpu().numpy()
        tgt = target.cpu().numpy() > 0.5
        for b in range(len(items)):
            metrics.update(Confusion.from_scores(prob[b], tgt[b], threshold))
            if vis is not None and visibility is not None:
                occ, obs = visibility[start + b]
                vis.update(Confusion.from_scores(prob[b, 0], occ, threshold, obs))
                observed.append(float(np.mean(obs)))
        for t, c in list(swept.items()):
            swept[t] = c + Confusion.from_scores(prob, tgt, t)
    model.train(was_training)
    return EvalResult(
        metrics.pooled_iou,
        total_loss / max(n, 1),
        metrics,
        n,
        threshold,
        {t: c.iou for t, c in swept.items()},
        vis,
        float(np.mean(observed)) if observed else math.nan,
    )


def evaluate_iou(model: nn.Module, dataset: Dataset, **kwargs: Any) -> float:
    """Pooled vehicle IoU of `model` over `dataset` (see `evaluate`)."""
    return evaluate(model, dataset, **kwargs).iou


def calibrated_iou(
    model: nn.Module,
    calib_dataset: Dataset,
    dataset: Dataset,
    thresholds: Sequence[float] = SWEEP_THRESHOLDS,
    **kwargs: Any,
) -> tuple[float, float]:
    """(threshold, IoU): the threshold with the best IoU on `calib_dataset` (e.g. training
    scenes) and the IoU it gives on `dataset` (e.g. held-out scenes). Compares models whose
    probabilities are not (yet) calibrated around 0.5, without tuning on the held-out data."""
    thr = evaluate(model, calib_dataset, sweep=thresholds, **kwargs).best_threshold
    return thr, evaluate(model, dataset, threshold=thr, **kwargs).iou


def _save(
    path: Path,
    model: LiftSplatShoot,
    cfg: LSSConfig,
    opt: torch.optim.Optimizer | None,
    step: int,
    epoch: int,
    best_iou: float,
    opts: TrainOptions,
    aux: AuxLoss | None = None,
) -> Path:
    extra: dict[str, Any] = {
        "step": step,
        "epoch": epoch,
        "best_iou": best_iou if math.isfinite(best_iou) else -1.0,
        "train_options": {
            k: v for k, v in asdict(opts).items() if isinstance(v, (str, int, float, bool))
        },
    }
    if opt is not None:
        extra["optimizer"] = opt.state_dict()
        if aux is not None:
            extra["aux_head"] = {k: v.detach().clone() for k, v in aux.state_dict().items()}
    return save_checkpoint(path, model, cfg, extra)


def _seed_worker(worker_id: int) -> None:
    info = torch.utils.data.get_worker_info()
    if info is not None and hasattr(info.dataset, "reseed"):
        info.dataset.reseed(worker_id + 1)


def train(opts: TrainOptions, cfg: LSSConfig | None = None, nusc: Any = None) -> TrainResult:
    """Train (or resume) LSS; returns losses, validation history and checkpoint paths.

    `cfg` overrides `opts.config`; `nusc` reuses a loaded `NuScenes` object.
    """
    t_start = time.perf_counter()
    threads_before = torch.get_num_threads()
    if opts.threads:
        torch.set_num_threads(opts.threads)
    try:
        return _train(opts, cfg, nusc, t_start)
    finally:
        torch.set_num_threads(threads_before)


def _train(opts: TrainOptions, cfg: LSSConfig | None, nusc: Any, t_start: float) -> TrainResult:
    from lss_bev_ros.data.dataset import LSSDataset

    torch.manual_seed(opts.seed)
    if nusc is None:
        from nuscenes.nuscenes import NuScenes

        nusc = NuScenes(version=opts.version, dataroot=opts.dataroot, verbose=False)
    train_names, val_names = default_splits(nusc, opts.version, opts.val_scenes)
    if opts.train_scene_names is not None:
        train_names = list(opts.train_scene_names)
    if opts.val_scene_names is not None:
        val_names = list(opts.val_scene_names)

    out_dir = Path(opts.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start_step, start_epoch, best_iou = 0, 0, -math.inf
    opt_state = None
    aux_state = None
    if opts.resume:
        model, cfg_loaded, extra = load_checkpoint(opts.resume, cfg=cfg)
        cfg = cfg_loaded
        start_step = int(extra.get("step", 0))
        start_epoch = int(extra.get("epoch", 0))
        best_iou = float(extra.get("best_iou", -math.inf))
        opt_state = extra.get("optimizer")
        aux_state = extra.get("aux_head")
        log.info("resumed %s at step %d (epoch %d)", opts.resume, start_step, start_epoch)
    else:
        cfg = cfg if cfg is not None else model_config(opts.config)
        model = LiftSplatShoot(cfg)
        if opts.init_weights:
            src, _, _ = load_checkpoint(opts.init_weights)
            model.load_state_dict(src.state_dict())
            log.info("initialised from %s", opts.init_weights)
    device = torch.device("cpu")
    amp = resolve_amp(opts.amp)
    model.to(device).train()
    nhwc = amp or opts.channels_last
    if nhwc:
        model.to(memory_format=torch.channels_last)
    use_aux = opts.depth_weight > 0 or opts.vehicle_weight > 0
    aux = AuxLoss(cfg.cam_channels, opts.depth_weight, opts.vehicle_weight) if use_aux else None
    params = list(model.parameters())
    if aux is not None:
        if aux_state is not None:
            aux.load_state_dict(aux_state)
        params += list(aux.parameters())
    opt = torch.optim.Adam(params, lr=opts.lr, weight_decay=opts.weight_decay)
    if opt_state is not None:
        try:
            opt.load_state_dict(opt_state)
            match_state_layouts(opt)
        except ValueError as e:  # e.g. auxiliary losses switched on or off
            log.warning("optimizer state not restored (%s); starting it afresh", e)
        for g in opt.param_groups:
            g["lr"] = opts.lr
    loss_fn = bce_loss(opts.pos_weight).to(device)

    train_ds = LSSDataset(
        nusc, train_names, cfg, is_train=True, seed=opts.seed + start_step, aux_targets=use_aux
    )
    val_ds = LSSDataset(nusc, val_names, cfg, is_train=False) if val_names else None
    gen = torch.Generator().manual_seed(opts.seed + start_step)
    loader = DataLoader(
        train_ds,
        batch_size=opts.batch_size,
        shuffle=True,
        drop_last=len(train_ds) > opts.batch_size,
        num_workers=opts.num_workers,
        generator=gen,
        worker_init_fn=_seed_worker,
    )
    log.info(
        "training on %d samples (%d scenes), validating on %d samples (%d scenes); bf16 %s; "
        "channels-last %s; "
        "aux depth/vehicle weights %.2f/%.2f; out %s",
        len(train_ds),
        len(train_names),
        len(val_ds) if val_ds else 0,
        len(val_names),
        amp,
        nhwc,
        opts.depth_weight,
        opts.vehicle_weight,
        out_dir,
    )
    steps_per_epoch = max(len(loader), 1)
    total = opts.epochs * steps_per_epoch
    if opts.max_steps is not None:
        total = min(total, opts.max_steps)
    from tqdm import tqdm

    pbar = tqdm(
        total=total,
        initial=min(start_step, total),
        desc="train",
        unit="step",
        disable=not opts.progress,
    )
    losses: list[float] = []
    aux_losses: list[tuple[float, float]] = []
    history: list[dict[str, float]] = []
    step, epoch = start_step, start_epoch
    best_path: Path | None = out_dir / "best.pt" if (out_dir / "best.pt").exists() else None
    last_path = out_dir / "last.pt"

    def validate() -> None:
        nonlocal best_iou, best_path
        if val_ds is None:
            return
        res = evaluate(
            model,
            val_ds,
            batch_size=max(1, opts.batch_size),
            max_samples=opts.max_val_samples,
            pos_weight=opts.pos_weight,
        )
        history.append({"step": float(step), "iou": res.iou, "loss": res.loss})
        log.info("step %d  val_iou %.4f  val_loss %.4f", step, res.iou, res.loss)
        if math.isfinite(res.iou) and res.iou > best_iou:
            best_iou = res.iou
            best_path = _save(out_dir / "best.pt", model, cfg, None, step, epoch, best_iou, opts)
        _save(last_path, model, cfg, opt, step, epoch, best_iou, opts, aux)

    base_lrs = [g["lr"] for g in opt.param_groups]

    def set_lr(at_step: int) -> None:
        f = 1.0
        if opts.warmup_steps and at_step < opts.warmup_steps:
            f = (at_step + 1) / opts.warmup_steps
        if opts.lr_schedule == "cosine" and total > 0:
            f *= 0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * min(at_step, total) / total))
        for g, lr in zip(opt.param_groups, base_lrs, strict=True):
            g["lr"] = lr * f

    if opts.lr_schedule not in ("constant", "cosine"):
        raise ValueError(f"lr_schedule must be constant | cosine, got {opts.lr_schedule!r}")
    stop = step >= total
    with pbar:
        while epoch < opts.epochs and not stop:
            for batch in loader:
                if aux is not None:
                    out, depth, context = forward_staged(
                        model, batch, device, amp, return_lift=True, channels_last=nhwc)
                    loss = loss_fn(out, batch[6].to(device))
                    loss_d, loss_veh = aux(depth, context, batch[7].to(device), batch[8].to(device))
                    total_loss = loss + aux.total(loss_d, loss_veh)
                    aux_losses.append((loss_d.item(), loss_veh.item()))
                else:
                    out = forward_staged(model, batch, device, amp, channels_last=nhwc)
                    total_loss = loss = loss_fn(out, batch[6].to(device))
                set_lr(step)
                opt.zero_grad(set_to_none=True)
                total_loss.backward()
                nn.utils.clip_grad_norm_(params, opts.grad_clip)
                opt.step()
                step += 1
                loss_v = loss.item()
                losses.append(loss_v)
                pbar.update(1)
                pbar.set_postfix(loss=f"{loss_v:.4f}")
                if opts.log_every and step % opts.log_every == 0:
                    aux_txt = ""
                    if aux_losses:
                        aux_txt = (
                            f"  depth {aux_losses[-1][0]:.3f}  vehicle {aux_losses[-1][1]:.3f}"
                        )
                    log.info("step %d  epoch %d  loss %.4f%s", step, epoch, loss_v, aux_txt)
                if opts.val_every and step % opts.val_every == 0:
                    validate()
                if step >= total:
                    stop = True
                elif opts.time_limit_s and time.perf_counter() - t_start > opts.time_limit_s:
                    log.info("time limit reached at step %d", step)
                    stop = True
                if stop:
                    break
            else:
                epoch += 1
                if not opts.val_every:
                    validate()
    if not history or history[-1]["step"] != step:
        validate()
    _save(last_path, model, cfg, opt, step, epoch, best_iou, opts, aux)
    return TrainResult(
        steps=step,
        epochs_done=epoch,
        seconds=time.perf_counter() - t_start,
        losses=losses,
        aux_losses=aux_losses,
        val_history=history,
        best_iou=best_iou,
        last_checkpoint=last_path,
        best_checkpoint=best_path,
        cfg=cfg,
        train_scenes=train_names,
        val_scenes=val_names,
    )


def main(argv: list[str] | None = None) -> int:
    """`lss-bev-train` entry point."""
    p = argparse.ArgumentParser(
        prog="lss-bev-train",
        description="Train Lift-Splat-Shoot vehicle BEV segmentation on a nuScenes-schema "
        "dataset (real or lss-bev-synth).",
    )
    p.add_argument("--dataroot", required=True, help="nuScenes root (holds <version>/ tables)")
    p.add_argument("--version", default="v1.0-mini")
    p.add_argument("--out", required=True, help="output folder for last.pt / best.pt")
    p.add_argument("--config", choices=tuple(MODEL_CONFIGS), default="small")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=1e-7)
    p.add_argument("--resume", default=None, help="checkpoint (last.pt) to continue from")
    p.add_argument(
        "--init",
        default=None,
        help="initial weights (any grid with the same layers); fresh optimizer",
    )
    p.add_argument(
        "--val-every",
        type=int,
        default=0,
        help="validate every N steps (0: at the end of each epoch)",
    )
    p.add_argument(
        "--val-scenes",
        type=int,
        default=2,
        help="synthetic data: number of trailing scenes held out for validation",
    )
    p.add_argument("--max-val-samples", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (1 avoids OpenMP stalls on a shared CPU; 0: default)",
    )
    p.add_argument("--time-limit", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--lr-schedule", choices=("constant", "cosine"), default="constant")
    p.add_argument("--warmup-steps", type=int, default=0)
    p.add_argument(
        "--depth-weight",
        type=float,
        default=1.0,
        help="auxiliary lidar depth loss weight (0: reference recipe)",
    )
    p.add_argument(
        "--vehicle-weight",
        type=float,
        default=1.0,
        help="auxiliary per-cell vehicle loss weight (0: off)",
    )
    p.add_argument(
        "--amp",
        choices=("auto", "bf16", "off"),
        default="auto",
        help="bfloat16 autocast for the encoders (auto: if the CPU has native bf16)",
    )
    add_memory_format_argument(p)
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    opts = TrainOptions(
        dataroot=args.dataroot,
        out_dir=args.out,
        version=args.version,
        config=args.config,
        epochs=args.epochs,
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        resume=args.resume,
        init_weights=args.init,
        val_every=args.val_every,
        seed=args.seed,
        val_scenes=args.val_scenes,
        max_val_samples=args.max_val_samples,
        num_workers=args.workers,
        threads=args.threads,
        progress=not args.no_progress,
        time_limit_s=args.time_limit,
        amp=args.amp,
        channels_last=args.memory_format == "channels_last",
        depth_weight=args.depth_weight,
        vehicle_weight=args.vehicle_weight,
        lr_schedule=args.lr_schedule,
        warmup_steps=args.warmup_steps,
    )
    res = train(opts)
    print(
        f"done: {res.steps} steps in {res.seconds:.0f} s, final loss "
        f"{res.losses[-1] if res.losses else float('nan'):.4f}, best val IoU {res.best_iou:.4f}; "
        f"checkpoints {res.last_checkpoint}"
        + (f", {res.best_checkpoint}" if res.best_checkpoint else "")
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
