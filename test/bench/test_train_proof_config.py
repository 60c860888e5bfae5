"""``bench/train_proof.py``'s config flags: the regenerate command of the default checkpoint
(models/README.md) rebuilds the config stored in it, and ``--dbound`` changes the frustum's
depth bins and nothing else."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from load_bench import load_bench

from lss_bev_ros.lss.checkpoint import load_checkpoint, save_checkpoint
from lss_bev_ros.lss.model import LiftSplatShoot

bench = load_bench("train_proof")
REPO = Path(__file__).resolve().parents[2]


def test_regenerate_command_rebuilds_the_default_checkpoint_config() -> None:
    # models/README.md: --config small_cpu --final-dim 80 352 --bot-pct 0.10 0.16 (grid 0.5 m)
    cfg = bench.proof_config(0.5, "small_cpu", (80, 352), None, (0.10, 0.16))
    _, stored, extra = load_checkpoint(REPO / "models" / "lss_small_cpu_80x352_synth.pt")
    assert stored == cfg
    assert extra["steps"] == 3000


def test_dbound_changes_only_the_depth_bins(tmp_path: Path) -> None:
    base = bench.proof_config(0.5, "small_cpu", (80, 352), None, (0.10, 0.16))
    far = bench.proof_config(0.5, "small_cpu", (80, 352), None, (0.10, 0.16), (4.0, 61.0, 2.0))
    assert base.depth_bins == 21 and far.depth_bins == 29  # 4..44 m / 4..60 m in 2 m bins
    assert far.grid.dbound == (4.0, 61.0, 2.0)
    assert far.replace(grid=base.grid) == base
    torch.manual_seed(0)
    _, loaded, _ = load_checkpoint(save_checkpoint(tmp_path / "far.pt", LiftSplatShoot(far)))
    assert loaded == far  # stored in the checkpoint: bev_node builds the same frustum
    assert dataclasses.asdict(loaded.grid)["dbound"] == (4.0, 61.0, 2.0)
