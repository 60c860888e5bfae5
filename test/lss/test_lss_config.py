"""Configuration dataclasses."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from lss_bev_ros.lss.config import GridConfig, ImageConfig, LSSConfig


def test_reference_defaults() -> None:
    g = GridConfig()
    assert g.dx == (0.5, 0.5, 20.0)
    assert g.bx == (-49.75, -49.75, 0.0)
    assert g.nx == (200, 200, 1)
    assert g.num_depth_bins == 41
    assert g.depths[0] == 4.0 and g.depths[-1] == 44.0
    assert g.bev_shape == (200, 200)
    cfg = LSSConfig()
    assert cfg.feature_size == (8, 22)
    assert cfg.depth_bins == 41
    assert cfg.bev_channels == 64
    assert cfg.image.final_dim == (128, 352)
    assert cfg.image.src_size == (900, 1600)
    assert cfg.image.ncams == 6
    assert cfg.pooling == "precomputed"


def test_small_config() -> None:
    s = LSSConfig.small()
    assert s.grid.bev_shape == (200, 200)
    assert s.image.final_dim == (64, 176)
    assert s.feature_size == (4, 11)
    assert s.depth_bins == 21
    assert LSSConfig.small(pooling="cumsum").pooling == "cumsum"


def test_frozen_and_round_trip() -> None:
    cfg = LSSConfig.small(out_channels=3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.out_channels = 2  # type: ignore[misc]
    d = cfg.to_dict()
    assert LSSConfig.from_dict(d) == cfg
    import json

    assert LSSConfig.from_dict(json.loads(json.dumps(d))) == cfg
    with pytest.raises(ValueError, match="unknown"):
        LSSConfig.from_dict({**d, "bogus": 1})


@pytest.mark.parametrize(
    "make",
    [
        lambda: GridConfig(xbound=(-50.0, 50.0, 0.3)),
        lambda: GridConfig(xbound=(50.0, -50.0, 0.5)),
        lambda: ImageConfig(final_dim=(0, 352)),
        lambda: LSSConfig(pooling="magic"),
        lambda: LSSConfig(downsample=2),
        lambda: LSSConfig(image=ImageConfig(final_dim=(120, 352))),
        lambda: LSSConfig(trunk="resnet50"),
    ],
)
def test_validation(make) -> None:
    with pytest.raises(ValueError):
        make()


def test_occupancy_layout_is_transpose() -> None:
    g = GridConfig()
    bev = np.zeros(g.bev_shape)
    bev[150, 20] = 1.0  # x index 150 (25 m ahead), y index 20 (40 m to the right)
    grid = g.to_occupancy_layout(bev)
    assert grid[20, 150] == 1.0  # row = y index, column = x index
    x0, y0 = g.occupancy_grid_origin()
    assert (x0 + 150.5 * g.dx[0], y0 + 20.5 * g.dx[1]) == (25.25, -39.75)
