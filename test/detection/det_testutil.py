"""Shared helpers of the detection tests (not a test module)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[2]
COMMITTED_WEIGHTS = REPO / "models" / "yolo_synth" / "yolo11n_synth.onnx"  # no pickle
COMMITTED_PT = COMMITTED_WEIGHTS.with_suffix(".pt")  # training/export source (pickled)


def committed_weights() -> Path:
    """The small trained synthetic-data YOLO committed with the repository."""
    if not COMMITTED_WEIGHTS.is_file():
        raise FileNotFoundError(
            f"{COMMITTED_WEIGHTS} is missing; regenerate it as models/yolo_synth/README.md says"
        )
    return COMMITTED_WEIGHTS


def synthetic_camera_set(root: Path, sample_index: int = 0, scale: float = 0.5
                         ) -> dict[str, np.ndarray]:
    """Six RGB camera images (resized by ``scale``) of one sample of a synthetic nuScenes root."""
    from nuscenes.nuscenes import NuScenes

    from lss_bev_ros.calibration import NUSCENES_CAMERAS

    nusc = NuScenes(version="v1.0-mini", dataroot=str(root), verbose=False)
    sample = nusc.sample[sample_index]
    out = {}
    for cam in NUSCENES_CAMERAS:
        bgr = cv2.imread(nusc.get_sample_data_path(sample["data"][cam]))
        bgr = cv2.resize(bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        out[cam] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return out


def shifted(rgb: np.ndarray, dx: float, dy: float = 0.0) -> np.ndarray:
    """Image content moved by (dx, dy) pixels (a camera panning slowly), border replicated."""
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(rgb, m, (rgb.shape[1], rgb.shape[0]),
                          borderMode=cv2.BORDER_REPLICATE)
