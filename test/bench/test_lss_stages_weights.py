"""``bench/lss_stages.py --weights``: the GFLOP and forward time of checkpoints come from the
configs stored in them (input size, crop), not from the named configs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from load_bench import load_bench

from lss_bev_ros.lss.checkpoint import save_checkpoint
from lss_bev_ros.lss.model import LiftSplatShoot
from lss_bev_ros.lss.train import MODEL_CONFIGS

bench = load_bench("lss_stages")


def test_checkpoint_configs_count_their_own_input(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    torch.manual_seed(0)
    base = MODEL_CONFIGS["small_cpu"]()
    wide = base.replace(image=dataclasses.replace(base.image, final_dim=(64, 352),
                                                  bot_pct_lim=(0.22, 0.30)))
    paths = [save_checkpoint(tmp_path / "narrow.pt", LiftSplatShoot(base)),
             save_checkpoint(tmp_path / "wide.pt", LiftSplatShoot(wide))]
    models = bench.load_checkpoints(paths)
    cfgs = {n: m.cfg for n, m in models.items()}
    assert cfgs["narrow"].image.final_dim == (64, 176)
    assert cfgs["wide"].image.final_dim == (64, 352)
    assert cfgs["wide"].image.bot_pct_lim == (0.22, 0.30)
    narrow, wide_f = bench.stage_gflops(cfgs["narrow"]), bench.stage_gflops(cfgs["wide"])
    # twice the pixels: twice the camera encoder, the same BEV encoder
    assert wide_f["camera_encoder"] == pytest.approx(2 * narrow["camera_encoder"], rel=0.05)
    assert wide_f["bev_encoder"] == pytest.approx(narrow["bev_encoder"], rel=1e-6)
    bench.print_forward_times(models, warmup=0, repeats=1)
    out = capsys.readouterr().out
    assert "narrow" in out and "64 x 176" in out and "64 x 352" in out


def test_checkpoint_labels_keep_clashing_names_apart() -> None:
    paths = [Path("a/run.pt"), Path("b/run.pt"), Path("c/small.pt"), Path("d/other.pt")]
    assert bench.checkpoint_labels(paths) == ["a/run.pt", "b/run.pt", "c/small.pt", "other"]
    with pytest.raises(ValueError, match="twice"):
        bench.checkpoint_labels([Path("a/run.pt"), Path("a/run.pt")])
