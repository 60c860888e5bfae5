"""Voxel pooling: reference cumsum path vs precomputed indices vs a brute-force sum."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lss_testutil import rig_calibration

from lss_bev_ros.lss.config import GridConfig, LSSConfig
from lss_bev_ros.lss.geometry import create_frustum, frustum_to_ego
from lss_bev_ros.lss.pooling import (
    FixedPooling,
    PrecomputedPooling,
    QuickCumsum,
    cumsum_pool,
    voxel_coords,
)

# small grid with 2 z slabs so the Z collapse (channel z*C + c) is exercised
SMALL_GRID = GridConfig(
    xbound=(-4.0, 4.0, 0.5),
    ybound=(-3.0, 3.0, 0.5),
    zbound=(-1.0, 1.0, 1.0),
    dbound=(1.0, 5.0, 1.0),
)
METHODS = ("index_add", "gather_cumsum")


def brute_force_pool(geom: torch.Tensor, feats: torch.Tensor, grid: GridConfig) -> torch.Tensor:
    """Obviously-correct loop-free numpy version: np.add.at into B x Z x C x X x Y."""
    B = geom.shape[0]
    C = feats.shape[-1]
    X, Y, Z = grid.nx
    lo = np.array(grid.lower)
    dx = np.array(grid.dx)
    idx = np.trunc((geom.detach().double().numpy() - lo) / dx).astype(np.int64).reshape(B, -1, 3)
    f = feats.detach().double().numpy().reshape(B, -1, C)
    out = np.zeros((B, Z, C, X, Y))
    for b in range(B):
        ix, iy, iz = idx[b].T
        ok = (ix >= 0) & (ix < X) & (iy >= 0) & (iy < Y) & (iz >= 0) & (iz < Z)
        np.add.at(out[b], (iz[ok], slice(None), ix[ok], iy[ok]), f[b][ok])
    return torch.from_numpy(out.reshape(B, Z * C, X, Y))


def random_geom(B: int = 2, N: int = 3, D: int = 4, H: int = 5, W: int = 6) -> torch.Tensor:
    """Points spread ~1.5x beyond the grid in every axis (many outside, many shared cells),
    some just below the lower bounds (truncation zone)."""
    g = torch.empty(B, N, D, H, W, 3)
    g[..., 0].uniform_(-6.0, 6.0)
    g[..., 1].uniform_(-4.5, 4.5)
    g[..., 2].uniform_(-1.5, 1.5)
    g = torch.round(g * 4) / 4 + 0.01  # coarse values -> many points per cell
    g[0, 0, 0, 0, :3] = torch.tensor([[-4.2, 0.1, 0.1], [0.1, -3.3, 0.1], [0.1, 0.1, -1.2]])
    return g


@pytest.fixture(scope="module")
def rig_geom() -> torch.Tensor:
    cfg = LSSConfig()
    fr = create_frustum(cfg.grid, cfg.image, cfg.downsample)
    return frustum_to_ego(fr, *rig_calibration(cfg))


def test_voxel_index_rule_truncates_like_reference() -> None:
    geom = torch.tensor(
        [
            [-50.2, 0.0, 0.0],
            [-50.6, 0.0, 0.0],
            [49.9, 49.9, 9.9],
            [50.0, 0.0, 0.0],
            [0.0, 0.0, -10.5],
            [0.0, 0.0, 10.0],
        ]
    ).view(1, 1, 6, 1, 1, 3)
    coords, kept = voxel_coords(geom, GridConfig())
    assert kept.tolist() == [True, False, True, False, True, False]
    assert coords[0].tolist() == [0, 100, 0]  # -0.4 cells truncates to 0 (reference quirk)
    assert coords[2].tolist() == [199, 199, 0]


def test_all_paths_match_brute_force_small_grid() -> None:
    geom = random_geom()
    feats = torch.randn(*geom.shape[:-1], 7, dtype=torch.float64)
    _coords, kept = voxel_coords(geom, SMALL_GRID)
    assert 0.2 < kept.float().mean() < 0.8  # really has points outside the grid
    expected = brute_force_pool(geom, feats, SMALL_GRID)
    assert expected.shape == (2, 14, 16, 12)
    got = cumsum_pool(geom, feats, SMALL_GRID)
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-9)
    for method in METHODS:
        got = FixedPooling(geom, SMALL_GRID, method=method)(feats)
        assert got.shape == expected.shape
        assert torch.allclose(got, expected, atol=1e-9), method


def test_paths_allclose_on_rig_float32(rig_geom: torch.Tensor) -> None:
    _coords, kept = voxel_coords(rig_geom, GridConfig())
    assert not kept.all()  # the rig has frustum points outside the 200 x 200 x 1 grid
    feats = torch.randn(*rig_geom.shape[:-1], 64)
    ref = cumsum_pool(rig_geom, feats, GridConfig())
    assert ref.shape == (1, 64, 200, 200)
    exact = brute_force_pool(rig_geom, feats, GridConfig()).float()
    assert torch.allclose(ref, exact, atol=1e-3, rtol=1e-4)
    for method in METHODS:
        got = FixedPooling(rig_geom, GridConfig(), method=method)(feats)
        assert torch.allclose(got, exact, atol=1e-3, rtol=1e-4), method
        assert torch.allclose(got, ref, atol=1e-3, rtol=1e-4), method


@pytest.mark.parametrize("path", ["cumsum", *METHODS])
def test_gradient_flows_to_features(path: str) -> None:
    geom = random_geom()
    feats = torch.randn(*geom.shape[:-1], 5, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(2, 10, 16, 12, dtype=torch.float64)
    if path == "cumsum":
        out = cumsum_pool(geom, feats, SMALL_GRID)
    else:
        out = FixedPooling(geom, SMALL_GRID, method=path)(feats)
    (out * weight).sum().backward()
    # d out / d feat = weight at the point's cell and channel; 0 for points outside the grid
    coords, kept = voxel_coords(geom, SMALL_GRID)
    b = torch.arange(2).repeat_interleave(coords.shape[0] // 2)
    ix, iy, iz = coords.clamp(min=0).T.clamp(max=15).unbind(0)
    iy, iz = iy.clamp(max=11), iz.clamp(max=1)
    ch = iz.view(-1, 1) * 5 + torch.arange(5)
    expected = weight[b.view(-1, 1), ch, ix.view(-1, 1), iy.view(-1, 1)] * kept.view(-1, 1)
    assert feats.grad is not None
    assert torch.allclose(feats.grad.view(-1, 5), expected)


def test_quickcumsum_gradcheck() -> None:
    x = torch.randn(9, 3, dtype=torch.float64, requires_grad=True)
    ranks = torch.tensor([0, 0, 1, 2, 2, 2, 5, 7, 7])
    geom = torch.zeros(9, 4, dtype=torch.long)
    assert torch.autograd.gradcheck(lambda t: QuickCumsum.apply(t, geom, ranks)[0], (x,))


def test_precomputed_rebuilds_only_when_calibration_changes() -> None:
    cfg = LSSConfig()
    fr = create_frustum(cfg.grid, cfg.image, cfg.downsample)
    calib = rig_calibration(cfg)
    pool = PrecomputedPooling(cfg.grid)
    calls = []

    def geometry_fn(c: tuple[torch.Tensor, ...]) -> torch.Tensor:
        calls.append(1)
        return frustum_to_ego(fr, *c)

    assert pool.ensure_calibration(calib, lambda: geometry_fn(calib)) is True
    assert (pool.num_builds, len(calls)) == (1, 1)
    # same values in new tensor objects: a hit, and the geometry is not even computed
    same = tuple(t.clone() for t in calib)
    assert pool.ensure_calibration(same, lambda: geometry_fn(same)) is False
    assert (pool.num_builds, len(calls)) == (1, 1)
    # any value change (1 mm in one camera's translation) rebuilds
    moved = tuple(t.clone() for t in calib)
    moved[1][0, 2, 0] += 0.001
    assert pool.ensure_calibration(moved, lambda: geometry_fn(moved)) is True
    assert (pool.num_builds, len(calls)) == (2, 2)
    assert pool.ensure_calibration(moved, lambda: geometry_fn(moved)) is False
    # explicit invalidation
    pool.invalidate()
    assert not pool.is_valid
    with pytest.raises(RuntimeError, match="no indices"):
        pool(torch.zeros(1, 6, 41, 8, 22, 64))
    assert pool.ensure_calibration(moved, lambda: geometry_fn(moved)) is True
    assert pool.num_builds == 3
    # in-place change of the same tensor object is detected too (content key)
    moved[3][0, 0, 0, 0] *= 1.01
    assert pool.ensure_calibration(moved, lambda: geometry_fn(moved)) is True
    assert pool.num_builds == 4


def test_precomputed_geometry_key_and_result(rig_geom: torch.Tensor) -> None:
    pool = PrecomputedPooling(GridConfig())
    feats = torch.randn(*rig_geom.shape[:-1], 8)
    a = pool.pool(rig_geom, feats)
    b = pool.pool(rig_geom.clone(), feats)
    assert pool.num_builds == 1
    assert torch.equal(a, b)
    shifted = rig_geom.clone()
    shifted[..., 0] += 0.5  # everything moves one cell forward
    c = pool.pool(shifted, feats)
    assert pool.num_builds == 2
    assert torch.allclose(c[..., 1:, :], a[..., :-1, :], atol=1e-4)
    assert "fixed" not in dict(pool.named_modules())  # cache is not part of a state_dict
    assert pool.state_dict() == {}


def test_feature_shape_mismatch_is_an_error(rig_geom: torch.Tensor) -> None:
    pool = FixedPooling(rig_geom, GridConfig())
    with pytest.raises(ValueError, match="do not match"):
        pool(torch.zeros(1, 5, 41, 8, 22, 64))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("method", METHODS)
def test_fixed_pooling_onnx_export_matches(method: str, tmp_path) -> None:
    """The per-frame op exports with static shapes and onnxruntime gives the same sums (a
    plain index_add export would silently overwrite instead of add)."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    geom = random_geom()
    feats = torch.randn(*geom.shape[:-1], 4)
    m = FixedPooling(geom, SMALL_GRID, method=method)
    path = tmp_path / "pool.onnx"
    torch.onnx.export(
        m,
        (feats,),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["feats"],
        output_names=["bev"],
    )
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = sess.run(None, {"feats": feats.numpy()})
    expected = brute_force_pool(geom, feats, SMALL_GRID).float().numpy()
    assert np.allclose(out, expected, atol=1e-5)
