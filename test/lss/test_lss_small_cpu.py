"""The CPU config: a slim BEV encoder on the same grid, recorded in its checkpoints."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from lss_bev_ros.lss.checkpoint import load_checkpoint, save_checkpoint
from lss_bev_ros.lss.config import BEV_ENCODER_NAMES, LSSConfig
from lss_bev_ros.lss.model import BEV_ENCODERS, BevEncode, LiftSplatShoot, SlimBevEncode
from lss_bev_ros.lss.train import MODEL_CONFIGS, model_config

COMMITTED = Path(__file__).resolve().parents[2] / "models" / "lss_small_synth.pt"


def bev_gflop(cfg: LSSConfig) -> float:
    """GFLOP of one BEV encoder pass, counted on the meta device (shapes only, no compute)."""
    model = LiftSplatShoot(cfg).eval().to("meta")
    bev = torch.zeros(1, cfg.bev_channels, *cfg.grid.bev_shape, device="meta")
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.bev_encode(bev)
    return counter.get_total_flops() / 1e9


def test_every_bev_encoder_name_has_a_module() -> None:
    assert tuple(BEV_ENCODERS) == BEV_ENCODER_NAMES


def test_small_cpu_keeps_the_small_grid_and_cameras() -> None:
    small, cpu = LSSConfig.small(), LSSConfig.small_cpu()
    assert cpu.grid == small.grid and cpu.image == small.image
    assert cpu.grid.bev_shape == (200, 200) and cpu.grid.dx[:2] == (0.5, 0.5)


def test_small_cpu_bev_encoder_costs_under_a_third_of_small() -> None:
    assert 3.0 * bev_gflop(LSSConfig.small_cpu()) <= bev_gflop(LSSConfig.small())


def test_small_cpu_outputs_the_full_grid() -> None:
    cfg = LSSConfig.small_cpu()
    model = LiftSplatShoot(cfg).eval()
    assert isinstance(model.bevencode, SlimBevEncode)
    with torch.no_grad():
        out = model.bev_encode(torch.zeros(1, cfg.bev_channels, 200, 200))
    assert out.shape == (1, 1, 200, 200)


def test_checkpoint_records_the_bev_encoder_and_rebuilds_it(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = LiftSplatShoot(model_config("small_cpu"))
    path = save_checkpoint(tmp_path / "cpu.pt", model)
    loaded, cfg, _ = load_checkpoint(path)
    assert cfg.bev_encoder == "slim" and isinstance(loaded.bevencode, SlimBevEncode)
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k


def test_checkpoint_without_bev_encoder_key_loads_the_reference_encoder() -> None:
    raw = torch.load(COMMITTED, weights_only=True)
    assert "bev_encoder" not in raw["config"]  # written before the key existed
    model, cfg, _ = load_checkpoint(COMMITTED)
    assert cfg.bev_encoder == "resnet18" and isinstance(model.bevencode, BevEncode)


def test_train_config_choices_include_small_cpu() -> None:
    assert {"small", "small_cpu", "full"} <= set(MODEL_CONFIGS)
    assert model_config("small_cpu").bev_encoder == "slim"
