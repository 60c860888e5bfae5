"""Checkpoints: round trip, weights_only enforcement, error messages, reference layout."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from lss_bev_ros.lss.checkpoint import (
    config_from_reference_state_dict,
    load_checkpoint,
    save_checkpoint,
    to_reference_state_dict,
)
from lss_bev_ros.lss.config import LSSConfig
from lss_bev_ros.lss.model import LiftSplatShoot


@pytest.fixture(scope="module")
def model() -> LiftSplatShoot:
    torch.manual_seed(0)
    m = LiftSplatShoot(LSSConfig.small(out_channels=2))
    with torch.no_grad():  # make every tensor distinctive
        for p in m.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return m


def _assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_round_trip(model: LiftSplatShoot, tmp_path: Path) -> None:
    extra = {"epoch": 3, "iou": 0.31, "notes": ["a", "b"], "hist": torch.arange(4)}
    path = save_checkpoint(tmp_path / "sub" / "ckpt.pt", model, extra=extra)
    assert path.is_file()
    assert not [p for p in path.parent.iterdir() if p.suffix == ".tmp"]  # atomic write
    loaded, cfg, extra2 = load_checkpoint(path)
    assert cfg == model.cfg
    assert not loaded.training
    _assert_same_weights(model, loaded)
    assert extra2["epoch"] == 3
    assert extra2["notes"] == ["a", "b"]
    assert torch.equal(extra2["hist"], torch.arange(4))
    # the file is plain data: torch's safe loader reads it directly
    raw = torch.load(path, weights_only=True)
    assert raw["config"] == model.cfg.to_dict()


def test_config_override_on_load(model: LiftSplatShoot, tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "c.pt", model)
    loaded, cfg, _ = load_checkpoint(path, cfg=model.cfg.replace(pooling="cumsum"))
    assert cfg.pooling == "cumsum"
    assert loaded.cfg.pooling == "cumsum"
    with pytest.raises(ValueError, match="do not fit"):
        load_checkpoint(path, cfg=LSSConfig())  # different image size / depth bins


class _Evil:
    """Pickles to a call that would create a marker file if it were ever unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickled_objects_are_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"format": "lss_bev_ros/lss", "state_dict": {}, "payload": _Evil(marker)}, path)
    with pytest.raises(ValueError, match=r"refusing to load .*Unsupported global"):
        load_checkpoint(path)
    assert not marker.exists()
    # same for a bare state dict with an object inside
    torch.save({"camencode.x": torch.zeros(1), "bevencode.y": _Evil(marker)}, path)
    with pytest.raises(ValueError, match="refusing to load"):
        load_checkpoint(path)
    assert not marker.exists()


def test_extra_must_be_plain_data(model: LiftSplatShoot, tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="not plain data"):
        save_checkpoint(tmp_path / "x.pt", model, extra={"obj": _Evil(tmp_path / "m")})
    assert not (tmp_path / "x.pt").exists()


def test_missing_and_corrupt_files(model: LiftSplatShoot, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")
    garbage = tmp_path / "garbage.pt"
    for seed in range(20):  # random bytes make the unpickler fail in many different ways
        garbage.write_bytes(random.Random(seed).randbytes(1000))
        with pytest.raises(ValueError, match="corrupt or unreadable checkpoint"):
            load_checkpoint(garbage)
    good = save_checkpoint(tmp_path / "good.pt", model)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ValueError, match="corrupt or unreadable checkpoint"):
        load_checkpoint(truncated)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(ValueError, match="not an lss_bev_ros checkpoint"):
        load_checkpoint(other)


@pytest.mark.parametrize("prefix", ["", "module."])
def test_reference_layout_loads(prefix: str, tmp_path: Path) -> None:
    """A state dict with the reference release's key names (as model525000.pt has: constants
    as parameters, the unused EfficientNet head, optionally DataParallel's prefix) loads."""
    torch.manual_seed(1)
    src = LiftSplatShoot(LSSConfig())  # the reference configuration
    sd = to_reference_state_dict(src)
    assert {"dx", "bx", "nx", "frustum"} <= sd.keys()
    assert any(k.startswith("camencode.trunk._blocks.") for k in sd)
    assert any(k.startswith("camencode.up1.") for k in sd)
    assert "camencode.depthnet.weight" in sd
    assert any(k.startswith("bevencode.layer3.") for k in sd)
    sd["camencode.trunk._conv_head.weight"] = torch.zeros(1280, 320, 1, 1)
    sd["camencode.trunk._bn1.weight"] = torch.zeros(1280)
    sd["camencode.trunk._fc.weight"] = torch.zeros(1000, 1280)
    sd["camencode.trunk._fc.bias"] = torch.zeros(1000)
    sd = {prefix + k: v for k, v in sd.items()}
    path = tmp_path / "model525000.pt"
    torch.save(sd, path)
    assert config_from_reference_state_dict(sd) == LSSConfig()
    loaded, cfg, extra = load_checkpoint(path)
    assert cfg == LSSConfig()
    assert extra["source"] == "reference"
    _assert_same_weights(src, loaded)


def test_reference_constants_must_match_config(tmp_path: Path) -> None:
    src = LiftSplatShoot(LSSConfig.small())
    sd = to_reference_state_dict(src)
    path = tmp_path / "ref.pt"
    torch.save(sd, path)
    _, cfg, _ = load_checkpoint(path)  # inferred: the small config
    assert cfg.image.final_dim == (64, 176)
    assert cfg.depth_bins == 21
    with pytest.raises(ValueError, match="does not match"):
        load_checkpoint(path, cfg=LSSConfig.small(grid=LSSConfig().grid))
