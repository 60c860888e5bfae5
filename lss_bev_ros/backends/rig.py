"""Calibration tensors for a rig without images (eval-mode preprocessing), for export / bench.

``calibration_tensors(cfg, rig)`` gives ``(rots, trans, intrins, post_rots, post_trans)`` with a
leading batch dim of 1, exactly what :func:`lss_bev_ros.lss.preprocess.prepare_inputs` produces
for images of the rig's sizes with ``train=False`` (resize + bottom-centred crop).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from lss_bev_ros.calibration import RigCalibration
from lss_bev_ros.lss.config import LSSConfig
from lss_bev_ros.lss.geometry import nuscenes_like_rig
from lss_bev_ros.lss.preprocess import augmentation_matrices, sample_augmentation


def calibration_tensors(
    cfg: LSSConfig, rig: RigCalibration | None = None
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Model calibration inputs for ``rig`` (None: the nuScenes-like default rig with
    ``cfg.image.ncams`` cameras of ``cfg.image.src_size``)."""
    if rig is None:
        K, T = nuscenes_like_rig(cfg.image.ncams)
        sizes = [tuple(cfg.image.src_size)] * K.shape[0]  # (H, W)
    else:
        Ks, Rs, ts = rig.stacked()
        K = torch.as_tensor(Ks)
        T = torch.eye(4, dtype=torch.float64).repeat(len(rig.cameras), 1, 1)
        T[:, :3, :3] = torch.as_tensor(Rs)
        T[:, :3, 3] = torch.as_tensor(ts)
        sizes = [(c.height, c.width) for c in rig.cameras]
    post_rots, post_trans = [], []
    for hw in sizes:
        aug = sample_augmentation(cfg.image, False, None, src_size=hw)
        pr, pt = augmentation_matrices(aug.resize, aug.crop, aug.flip, aug.rotate)
        post_rots.append(pr)
        post_trans.append(pt)
    f32 = torch.float32
    return (
        T[:, :3, :3].to(f32).unsqueeze(0).contiguous(),
        T[:, :3, 3].to(f32).unsqueeze(0).contiguous(),
        K.to(f32).unsqueeze(0),
        torch.stack(post_rots).to(f32).unsqueeze(0),
        torch.stack(post_trans).to(f32).unsqueeze(0),
    )


def random_images(cfg: LSSConfig, num_cams: int | None = None, seed: int = 0) -> Tensor:
    """``1 x N x 3 x H x W`` normalised-looking float32 images (for parity / timing)."""
    g = np.random.default_rng(seed)
    H, W = cfg.image.final_dim
    N = num_cams or cfg.image.ncams
    return torch.from_numpy(g.standard_normal((1, N, 3, H, W)).astype(np.float32))
