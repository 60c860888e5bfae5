"""Helpers for the LSS core tests: a nuScenes-like rig and calibration tensors."""

from __future__ import annotations

import numpy as np
import torch
from pyquaternion import Quaternion

from lss_bev_ros.lss.config import ImageConfig, LSSConfig
from lss_bev_ros.lss.geometry import nuscenes_like_rig
from lss_bev_ros.lss.preprocess import augmentation_matrices, sample_augmentation

# A real nuScenes CAM_FRONT calibrated_sensor record (scene-0061, car n015): optical -> ego.
CAM_FRONT_TRANSLATION = (1.70079118954, 0.0159456324149, 1.51095763913)
CAM_FRONT_ROTATION_WXYZ = (
    0.4998015430569128,
    -0.5030316162024876,
    0.4997798114386805,
    -0.49737083824542755,
)
CAM_FRONT_K = np.array(
    [
        [1266.417203046554, 0.0, 816.2670197447984],
        [0.0, 1266.417203046554, 491.50706579294757],
        [0.0, 0.0, 1.0],
    ]
)


def cam_front_extrinsic() -> np.ndarray:
    """4 x 4 optical CAM_FRONT -> ego of the real nuScenes record."""
    T = np.eye(4)
    T[:3, :3] = Quaternion(CAM_FRONT_ROTATION_WXYZ).rotation_matrix
    T[:3, 3] = CAM_FRONT_TRANSLATION
    return T


def rig_calibration(
    cfg: LSSConfig | None = None, ncams: int = 6, batch: int = 1
) -> tuple[torch.Tensor, ...]:
    """``(rots, trans, intrins, post_rots, post_trans)`` float32 with batch dim for the
    nuScenes-like rig and the deterministic eval augmentation of ``cfg``."""
    cfg = cfg if cfg is not None else LSSConfig()
    K, T = nuscenes_like_rig(ncams)
    aug = sample_augmentation(cfg.image, train=False)
    pr, pt = augmentation_matrices(aug.resize, aug.crop, aug.flip, aug.rotate)
    calib = (
        T[:, :3, :3].float(),
        T[:, :3, 3].float(),
        K.float(),
        pr.expand(ncams, 3, 3).clone(),
        pt.expand(ncams, 3).clone(),
    )
    return tuple(t.unsqueeze(0).repeat(batch, *([1] * t.dim())) for t in calib)


def small_image_cfg() -> ImageConfig:
    return ImageConfig(final_dim=(64, 176))
