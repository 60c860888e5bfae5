"""Frustum / lift geometry against nuScenes-devkit's projection (view_points)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from lss_testutil import CAM_FRONT_K, cam_front_extrinsic
from nuscenes.utils.geometry_utils import view_points

from lss_bev_ros.lss.config import GridConfig, ImageConfig, LSSConfig
from lss_bev_ros.lss.geometry import (
    create_frustum,
    ego_to_image,
    frustum_to_ego,
    frustum_to_ego_reference,
    nuscenes_like_rig,
)
from lss_bev_ros.lss.preprocess import AugParams, augmentation_matrices, sample_augmentation

EVAL_AUG = sample_augmentation(ImageConfig(), train=False)
# a train-style augmentation: different scale, off-centre crop, flip and a rotation
TRAIN_AUG = AugParams(0.207, (331, 186), (-7, 31, 345, 159), True, 4.3)


def _project_nuscenes(points_ego: np.ndarray, T_cam_to_ego: np.ndarray, K: np.ndarray):
    """3 x P ego points -> (u, v) raw pixels and depth, using nuScenes view_points."""
    R, t = T_cam_to_ego[:3, :3], T_cam_to_ego[:3, 3:4]
    p_cam = R.T @ (points_ego - t)
    uv = view_points(p_cam, K, normalize=True)[:2]
    return uv, p_cam[2]


def test_frustum_layout() -> None:
    cfg = LSSConfig()
    fr = create_frustum(cfg.grid, cfg.image, cfg.downsample)
    assert fr.shape == (41, 8, 22, 3)
    assert fr.dtype == torch.float32
    # u along W from 0 to 351, v along H from 0 to 127, depth 4..44 m
    assert fr[0, 0, 0].tolist() == [0.0, 0.0, 4.0]
    assert fr[-1, -1, -1].tolist() == pytest.approx([351.0, 127.0, 44.0])
    assert torch.allclose(fr[:, 3, 5, 2], torch.arange(4.0, 45.0))
    assert torch.allclose(fr[7, :, 4, 0], torch.full((8,), 4 * 351 / 21))


@pytest.mark.parametrize("aug", [EVAL_AUG, TRAIN_AUG], ids=["eval", "train_flip_rot"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_unproject_matches_view_points(aug: AugParams, dtype: torch.dtype) -> None:
    """Known ego points -> view_points pixel -> augmentation -> frustum_to_ego == same points."""
    T = cam_front_extrinsic()
    rng = np.random.default_rng(1)
    n = 200
    fwd = rng.uniform(6.0, 46.0, n)
    pts = np.stack([fwd, rng.uniform(-0.6, 0.6, n) * fwd, rng.uniform(-2.0, 3.0, n)])
    uv, depth = _project_nuscenes(pts, T, CAM_FRONT_K)
    assert (depth > 4).all()
    post_rot, post_tran = augmentation_matrices(aug.resize, aug.crop, aug.flip, aug.rotate)
    uv_aug = post_rot[:2, :2].double().numpy() @ uv + post_tran[:2, None].double().numpy()
    frustum = torch.from_numpy(np.stack([uv_aug[0], uv_aug[1], depth], -1)).to(dtype)
    ego = frustum_to_ego(
        frustum.view(n, 1, 1, 3),
        torch.from_numpy(T[:3, :3]).view(1, 1, 3, 3),
        torch.from_numpy(T[:3, 3]).view(1, 1, 3),
        torch.from_numpy(CAM_FRONT_K).view(1, 1, 3, 3),
        post_rot.view(1, 1, 3, 3),
        post_tran.view(1, 1, 3),
    )
    assert ego.shape == (1, 1, n, 1, 1, 3)
    err = np.abs(ego.view(n, 3).double().numpy() - pts.T).max()
    assert err < (1e-6 if dtype == torch.float64 else 0.01)  # metres


@pytest.mark.parametrize("aug", [EVAL_AUG, TRAIN_AUG], ids=["eval", "train_flip_rot"])
def test_frustum_points_project_back_to_their_pixels(aug: AugParams) -> None:
    """Every frustum point of every rig camera, lifted to ego and projected with view_points,
    lands on the raw pixel the augmentation maps onto its final-image pixel (sub-pixel)."""
    cfg = LSSConfig()
    fr = create_frustum(cfg.grid, cfg.image, cfg.downsample).double()
    K, T = nuscenes_like_rig()
    N = K.shape[0]
    post_rot, post_tran = augmentation_matrices(aug.resize, aug.crop, aug.flip, aug.rotate)
    geom = frustum_to_ego(
        fr,
        T[None, :, :3, :3],
        T[None, :, :3, 3],
        K[None],
        post_rot.double().expand(1, N, 3, 3),
        post_tran.double().expand(1, N, 3),
    )
    assert geom.shape == (1, N, 41, 8, 22, 3)
    A = post_rot[:2, :2].double().numpy()
    b = post_tran[:2].double().numpy()
    uv_final = fr[..., :2].reshape(-1, 2).numpy()
    uv_raw_expected = np.linalg.solve(A, (uv_final - b).T)  # 2 x P
    for n in range(N):
        uv, depth = _project_nuscenes(
            geom[0, n].reshape(-1, 3).numpy().T, T[n].numpy(), K[n].numpy()
        )
        assert np.abs(uv - uv_raw_expected).max() < 1e-6  # px
        assert np.allclose(depth, fr[..., 2].reshape(-1).numpy(), atol=1e-9)


def test_cam_front_points_are_in_front_of_the_car() -> None:
    """Sanity of frames: CAM_FRONT's centre column at 20 m lies ~20 m ahead of the camera."""
    T = torch.from_numpy(cam_front_extrinsic())
    K = torch.from_numpy(CAM_FRONT_K)
    frustum = torch.tensor([[[[816.267, 491.507, 20.0]]]], dtype=torch.float64)
    ego = frustum_to_ego(
        frustum,
        T[None, None, :3, :3],
        T[None, None, :3, 3],
        K[None, None],
        torch.eye(3, dtype=torch.float64)[None, None],
        torch.zeros(1, 1, 3, dtype=torch.float64),
    )
    x, y, z = ego.view(3).tolist()
    assert x == pytest.approx(1.70 + 20.0, abs=0.2)
    assert y == pytest.approx(0.0, abs=0.2)
    assert z == pytest.approx(1.51, abs=0.2)


def test_fast_geometry_equals_reference_formula() -> None:
    g = torch.Generator().manual_seed(3)
    cfg = LSSConfig()
    fr = create_frustum(cfg.grid, cfg.image, cfg.downsample)
    B, N = 2, 3
    rots = torch.linalg.qr(torch.randn(B, N, 3, 3, generator=g))[0]
    trans = torch.randn(B, N, 3, generator=g)
    intrins = torch.tensor([[1200.0, 0, 800], [0, 1200.0, 450], [0, 0, 1]]).expand(B, N, 3, 3)
    post_rots = torch.eye(3).repeat(B, N, 1, 1)
    post_rots[..., :2, :2] = 0.2 * torch.eye(2) + 0.02 * torch.randn(B, N, 2, 2, generator=g)
    post_trans = torch.zeros(B, N, 3)
    post_trans[..., :2] = 10 * torch.randn(B, N, 2, generator=g)
    a = frustum_to_ego(fr, rots, trans, intrins, post_rots, post_trans)
    b = frustum_to_ego_reference(fr, rots, trans, intrins, post_rots, post_trans)
    assert a.shape == b.shape == (B, N, 41, 8, 22, 3)
    assert torch.allclose(a, b, atol=2e-3)  # float32, points up to ~200 m away


def test_ego_to_image_inverts_frustum_to_ego() -> None:
    K, T = nuscenes_like_rig(2)
    pr, pt = augmentation_matrices(
        TRAIN_AUG.resize, TRAIN_AUG.crop, TRAIN_AUG.flip, TRAIN_AUG.rotate
    )
    fr = create_frustum(GridConfig(), ImageConfig(), 16).double()
    geom = frustum_to_ego(
        fr,
        T[None, :, :3, :3],
        T[None, :, :3, 3],
        K[None],
        pr.double().expand(1, 2, 3, 3),
        pt.double().expand(1, 2, 3),
    )
    for n in range(2):
        uvd = ego_to_image(
            geom[0, n].reshape(-1, 3), T[n, :3, :3], T[n, :3, 3], K[n], pr.double(), pt.double()
        )
        assert torch.allclose(uvd, fr.reshape(-1, 3), atol=1e-6)


def test_rig_headings() -> None:
    """Cameras look where their names say: optical axis in ego x-y plane at the heading."""
    _, T = nuscenes_like_rig()
    headings = [math.degrees(math.atan2(T[n, 1, 2], T[n, 0, 2])) for n in range(6)]
    assert headings == pytest.approx([55.0, 0.0, -55.0, 110.0, 180.0, -110.0], abs=1e-6)
