"""Pure-PyTorch Lift-Splat-Shoot core (no ROS imports): config, geometry, pooling, model,
preprocessing, checkpoints and stage timing. See docs/ARCHITECTURE.md.

Heavy modules (torch models, cv2) are imported lazily: ``from lss_bev_ros.lss import
LiftSplatShoot`` works, but ``import lss_bev_ros.lss`` alone only loads the config.
"""

from __future__ import annotations

import importlib
from typing import Any

from .config import NUSCENES_CAMS, GridConfig, ImageConfig, LSSConfig

_LAZY = {
    "LiftSplatShoot": "model",
    "FixedRigLSS": "model",
    "CamEncode": "model",
    "BevEncode": "model",
    "create_frustum": "geometry",
    "frustum_to_ego": "geometry",
    "ego_to_image": "geometry",
    "nuscenes_like_rig": "geometry",
    "cumsum_pool": "pooling",
    "PrecomputedPooling": "pooling",
    "FixedPooling": "pooling",
    "LSSInputs": "preprocess",
    "prepare_inputs": "preprocess",
    "sample_augmentation": "preprocess",
    "img_transform": "preprocess",
    "normalize_image": "preprocess",
    "save_checkpoint": "checkpoint",
    "load_checkpoint": "checkpoint",
    "StageTimer": "timing",
    "run_staged": "timing",
    "STAGES": "timing",
}

__all__ = [
    "NUSCENES_CAMS",
    "STAGES",
    "BevEncode",
    "CamEncode",
    "FixedPooling",
    "FixedRigLSS",
    "GridConfig",
    "ImageConfig",
    "LSSConfig",
    "LSSInputs",
    "LiftSplatShoot",
    "PrecomputedPooling",
    "StageTimer",
    "create_frustum",
    "cumsum_pool",
    "ego_to_image",
    "frustum_to_ego",
    "img_transform",
    "load_checkpoint",
    "normalize_image",
    "nuscenes_like_rig",
    "prepare_inputs",
    "run_staged",
    "sample_augmentation",
    "save_checkpoint",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
