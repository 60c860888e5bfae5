"""A tiny CPU training run on synthetic scenes: the loss falls, the held-out IoU beats the
untrained model, checkpoints are written and a resume continues from the saved step.

A minute of CPU training does not yet push vehicle probabilities over 0.5 (the reference
threshold; `bench/train_proof.py` trains long enough for that), so the IoUs compared here use
the threshold that is best on the *training* scenes, for both models (`calibrated_iou`)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from lss_bev_ros.data.dataset import LSSDataset
from lss_bev_ros.data.synthetic import generate_dataset, split_scene_names
from lss_bev_ros.lss.checkpoint import load_checkpoint
from lss_bev_ros.lss.config import GridConfig
from lss_bev_ros.lss.model import LiftSplatShoot
from lss_bev_ros.lss.train import (
    TrainOptions,
    calibrated_iou,
    consistent_resize_lim,
    evaluate_iou,
    main,
    model_config,
    train,
)

pytestmark = pytest.mark.slow

SCENES, VAL, SAMPLES = 4, 1, 4


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("train_synth")
    generate_dataset(root, n_scenes=SCENES, samples_per_scene=SAMPLES, seed=21, progress=False)
    return root


def _tiny_cfg():
    """Small config on a coarse 2 m grid (50 x 50 cells): cheap enough for CI on a CPU."""
    cfg = model_config("small")
    g = cfg.grid
    return cfg.replace(
        grid=GridConfig(
            xbound=(-50, 50, 2.0), ybound=(-50, 50, 2.0), zbound=g.zbound, dbound=g.dbound
        )
    )


def test_loss_falls_and_heldout_iou_beats_untrained(tiny_root: Path, tmp_path: Path) -> None:
    from nuscenes.nuscenes import NuScenes

    nusc = NuScenes("v1.0-mini", str(tiny_root), verbose=False)
    cfg = _tiny_cfg()
    train_names, val_names = split_scene_names(SCENES, VAL)
    torch.manual_seed(0)
    untrained = LiftSplatShoot(cfg)
    opts = TrainOptions(
        dataroot=str(tiny_root),
        out_dir=str(tmp_path / "run"),
        epochs=1000,
        max_steps=60,
        batch_size=2,
        lr=3e-3,
        seed=0,
        val_every=30,
        progress=False,
        val_scenes=VAL,
    )
    res = train(opts, cfg=cfg, nusc=nusc)
    assert res.steps == 60
    assert res.train_scenes == train_names and res.val_scenes == val_names
    first, last = sum(res.losses[:5]) / 5, sum(res.losses[-5:]) / 5
    assert last < 0.5 * first, res.losses
    assert [h["step"] for h in res.val_history] == [30.0, 60.0]
    assert len(res.aux_losses) == 60  # lidar depth / vehicle auxiliary losses were used

    model, loaded_cfg, extra = load_checkpoint(res.last_checkpoint)
    assert loaded_cfg == cfg and extra["step"] == 60 and "optimizer" in extra
    assert res.best_checkpoint is not None and res.best_checkpoint.is_file()
    val_ds = LSSDataset(nusc, val_names, cfg, is_train=False)
    train_eval = LSSDataset(nusc, train_names, cfg, is_train=False)
    assert evaluate_iou(model, val_ds) == pytest.approx(res.val_history[-1]["iou"], abs=1e-6)
    thr_t, iou_t = calibrated_iou(model, train_eval, val_ds)
    thr_u, iou_u = calibrated_iou(untrained, train_eval, val_ds)
    print(f"held-out IoU trained {iou_t:.3f} (thr {thr_t}) vs untrained {iou_u:.3f} (thr {thr_u})")
    assert math.isfinite(iou_t)
    assert iou_t > 1.5 * iou_u + 0.03, (iou_t, iou_u)

    # Resume: model, optimizer and step continue.
    more = dataclasses.replace(opts, max_steps=62, val_every=0, resume=str(res.last_checkpoint))
    res2 = train(more, nusc=nusc)
    assert res2.steps == 62 and len(res2.losses) == 2
    assert load_checkpoint(res2.last_checkpoint)[2]["step"] == 62


def test_small_config_augmentation_matches_its_eval_resize() -> None:
    cfg = model_config("small")
    lo, hi = cfg.image.resize_lim
    eval_resize = max(h / s for h, s in zip(cfg.image.final_dim, cfg.image.src_size, strict=True))
    assert lo <= eval_resize <= hi * 1.05
    full = model_config("full")
    assert full.image.resize_lim == (0.193, 0.225)  # the reference range is left alone
    assert consistent_resize_lim(full) == full


def test_cli_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for flag in (
        "--dataroot",
        "--version",
        "--out",
        "--config",
        "--epochs",
        "--max-steps",
        "--batch-size",
        "--lr",
        "--resume",
        "--val-every",
        "--seed",
    ):
        assert flag in out
