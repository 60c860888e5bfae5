"""Camera frustum and frustum -> ego ("lift") geometry, pure torch.

Conventions (same as the reference and nuScenes):

* ``intrins``: B x N x 3 x 3 pinhole K of the *raw* image (pixels);
* ``rots``, ``trans``: B x N x 3 x 3 / B x N x 3, camera (optical frame: z forward, x right,
  y down) -> ego (``base_link``) rotation and translation in metres, i.e. nuScenes
  ``calibrated_sensor`` (``p_ego = rots @ p_cam + trans``);
* ``post_rots``, ``post_trans``: B x N x 3 x 3 / B x N x 3, the image augmentation (resize, crop,
  flip, rotate) as a map from raw pixel coordinates to final pixel coordinates:
  ``p_final = post_rots @ p_raw + post_trans`` (only the 2 x 2 / first two entries are non-trivial);
* frustum points are (u, v, d): pixel column, pixel row in the *final* image, depth along the
  optical axis in metres.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .config import GridConfig, ImageConfig


def create_frustum(grid: GridConfig, image: ImageConfig, downsample: int) -> Tensor:
    """Return the frustum ``D x fH x fW x 3`` of (u px, v px, depth m) points (float32).

    ``u`` spans ``linspace(0, W - 1, fW)`` and ``v`` ``linspace(0, H - 1, fH)`` of the final
    ``H x W`` image, depth ``arange(*grid.dbound)``, exactly as the reference.
    """
    ogfH, ogfW = image.final_dim
    fH, fW = ogfH // downsample, ogfW // downsample
    ds = torch.arange(*grid.dbound, dtype=torch.float32)
    if ds.numel() != grid.num_depth_bins:  # pragma: no cover - guarded by GridConfig
        raise ValueError("dbound gives an unexpected number of depth bins")
    D = ds.numel()
    ds = ds.view(D, 1, 1).expand(D, fH, fW)
    xs = torch.linspace(0, ogfW - 1, fW, dtype=torch.float32).view(1, 1, fW).expand(D, fH, fW)
    ys = torch.linspace(0, ogfH - 1, fH, dtype=torch.float32).view(1, fH, 1).expand(D, fH, fW)
    return torch.stack((xs, ys, ds), -1)  # D x fH x fW x 3


def frustum_to_ego(
    frustum: Tensor,
    rots: Tensor,
    trans: Tensor,
    intrins: Tensor,
    post_rots: Tensor,
    post_trans: Tensor,
) -> Tensor:
    """Lift frustum points into the ego frame.

    Args:
        frustum: ``D x fH x fW x 3`` (u px, v px, d m) in the final (augmented) image.
        rots, trans: ``B x N x 3 x 3``, ``B x N x 3`` camera -> ego.
        intrins: ``B x N x 3 x 3`` raw-image K.
        post_rots, post_trans: ``B x N x 3 x 3``, ``B x N x 3`` raw -> final pixel map.

    Returns:
        ``B x N x D x fH x fW x 3`` ego points in metres.

    Steps as in the reference ``get_geometry``: undo the augmentation
    (``inv(post_rots) @ (p - post_trans)``), un-normalise to ``(u d, v d, d)``, apply
    ``rots @ inv(intrins)`` and add ``trans``. Implemented as two batched ``P x 3 @ 3 x 3``
    matmuls instead of ``P`` tiny 3 x 3 products (same maths, much faster).
    """
    B, N = trans.shape[:2]
    D, fH, fW, _ = frustum.shape
    dtype = frustum.dtype
    pts = frustum.reshape(1, 1, D * fH * fW, 3).to(dtype)
    # undo post-transformation (row-vector form: p @ M^T)
    inv_post = torch.linalg.inv(post_rots.to(dtype))  # B x N x 3 x 3
    pts = (pts - post_trans.to(dtype).view(B, N, 1, 3)) @ inv_post.transpose(-1, -2)
    # pixels -> camera rays scaled by depth
    pts = torch.cat((pts[..., :2] * pts[..., 2:3], pts[..., 2:3]), -1)
    combine = rots.to(dtype) @ torch.linalg.inv(intrins.to(dtype))  # B x N x 3 x 3
    pts = pts @ combine.transpose(-1, -2) + trans.to(dtype).view(B, N, 1, 3)
    return pts.view(B, N, D, fH, fW, 3)


def frustum_to_ego_reference(
    frustum: Tensor,
    rots: Tensor,
    trans: Tensor,
    intrins: Tensor,
    post_rots: Tensor,
    post_trans: Tensor,
) -> Tensor:
    """Literal port of the reference ``get_geometry`` (broadcast 3 x 3 products); for tests."""
    B, N, _ = trans.shape
    points = frustum - post_trans.view(B, N, 1, 1, 1, 3)
    points = torch.inverse(post_rots).view(B, N, 1, 1, 1, 3, 3).matmul(points.unsqueeze(-1))
    points = torch.cat((points[..., :2, :] * points[..., 2:3, :], points[..., 2:3, :]), -2)
    combine = rots.matmul(torch.inverse(intrins))
    points = combine.view(B, N, 1, 1, 1, 3, 3).matmul(points).squeeze(-1)
    return points + trans.view(B, N, 1, 1, 1, 3)


def ego_to_image(
    points: Tensor,
    rots: Tensor,
    trans: Tensor,
    intrins: Tensor,
    post_rots: Tensor | None = None,
    post_trans: Tensor | None = None,
) -> Tensor:
    """Project ego points ``... x P x 3`` (m) of one camera into (u px, v px, depth m).

    ``rots``/``trans``/``intrins`` (and optional ``post_*``) are ``3 x 3``/``3`` for that camera
    (or broadcastable batches). Inverse of :func:`frustum_to_ego`; depth is the optical z.
    """
    cam = (points - trans.unsqueeze(-2)) @ rots  # p_cam = R^T (p - t), as rows: (p - t) @ R
    uvw = cam @ intrins.transpose(-1, -2)
    uvd = torch.cat((uvw[..., :2] / uvw[..., 2:3], uvw[..., 2:3]), -1)
    if post_rots is not None:
        uvd = uvd @ post_rots.transpose(-1, -2)
    if post_trans is not None:
        uvd = uvd + post_trans.unsqueeze(-2)
    return uvd


# nuScenes-like reference rig ------------------------------------------------------------------
#: (yaw deg, translation m, fx px) per camera of a nuScenes-like car, in NUSCENES_CAMS order.
_NUSCENES_LIKE_RIG: tuple[tuple[float, tuple[float, float, float], float], ...] = (
    (55.0, (1.52, 0.49, 1.51), 1272.6),  # CAM_FRONT_LEFT
    (0.0, (1.70, 0.02, 1.51), 1266.4),  # CAM_FRONT
    (-55.0, (1.55, -0.49, 1.50), 1260.8),  # CAM_FRONT_RIGHT
    (110.0, (1.04, 0.48, 1.59), 1256.7),  # CAM_BACK_LEFT
    (180.0, (0.03, 0.00, 1.58), 809.2),  # CAM_BACK (wider lens)
    (-110.0, (1.01, -0.48, 1.56), 1259.5),  # CAM_BACK_RIGHT
)


def optical_to_ego_rotation(yaw: float, pitch: float = 0.0) -> Tensor:
    """3 x 3 rotation of an optical frame (z forward, x right, y down) into ego (x fwd, y left,
    z up) for a camera looking at heading ``yaw`` (rad, CCW from x) tilted down by ``pitch``."""
    cy, sy, cp, sp = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch)
    z_opt = (cy * cp, sy * cp, -sp)  # viewing direction
    x_opt = (sy, -cy, 0.0)  # image right
    y_opt = (-cy * sp, -sy * sp, -cp)  # image down = z_opt x x_opt
    return torch.tensor([x_opt, y_opt, z_opt], dtype=torch.float64).T


def nuscenes_like_rig(ncams: int = 6) -> tuple[Tensor, Tensor]:
    """Intrinsics ``N x 3 x 3`` and camera->ego ``N x 4 x 4`` (float64) of a nuScenes-like rig.

    Cameras in :data:`~.config.NUSCENES_CAMS` order for 1600 x 900 px images: principal point
    (816.3, 491.5), focal lengths and mounting positions rounded from nuScenes
    ``calibrated_sensor`` records, level cameras at headings 0, +-55, +-110 and 180 degrees
    (CAM_FRONT matches the real record to < 0.5 degree). For tests, benchmarks, synthetic data.
    """
    if not 1 <= ncams <= len(_NUSCENES_LIKE_RIG):
        raise ValueError(f"ncams must be in 1..{len(_NUSCENES_LIKE_RIG)}")
    Ks, Ts = [], []
    for yaw_deg, t, f in _NUSCENES_LIKE_RIG[:ncams]:
        K = torch.tensor([[f, 0.0, 816.3], [0.0, f, 491.5], [0.0, 0.0, 1.0]], dtype=torch.float64)
        T = torch.eye(4, dtype=torch.float64)
        T[:3, :3] = optical_to_ego_rotation(math.radians(yaw_deg))
        T[:3, 3] = torch.tensor(t, dtype=torch.float64)
        Ks.append(K)
        Ts.append(T)
    return torch.stack(Ks), torch.stack(Ts)
