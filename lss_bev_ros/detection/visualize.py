"""Annotated images and bearing rays for detections (ROS-free; the node wraps them in messages)."""

from __future__ import annotations

from collections.abc import Mapping

import cv2
import numpy as np

from lss_bev_ros.detection.types import TRACK_ID_NONE, Detections

_PALETTE = np.array(
    [
        (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
        (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
        (0, 128, 128), (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0),
        (170, 255, 195),
    ],
    dtype=np.uint8,
)


def color_for(track_id: int, class_id: int = 0) -> tuple[int, int, int]:
    """Stable RGB colour: by track id when tracked, else by class."""
    key = int(track_id) if track_id != TRACK_ID_NONE else int(class_id) * 7 + 3
    return tuple(int(v) for v in _PALETTE[key % len(_PALETTE)])


def label_text(dets: Detections, i: int, names: Mapping[int, str]) -> str:
    """``car #12 0.87`` (class, track id when tracked, score)."""
    name = names.get(int(dets.cls[i]), str(int(dets.cls[i])))
    tid = int(dets.track_id[i])
    return f"{name}{f' #{tid}' if tid != TRACK_ID_NONE else ''} {dets.conf[i]:.2f}"


def annotate(
    rgb: np.ndarray, dets: Detections, names: Mapping[int, str], scale: float = 1.0
) -> np.ndarray:
    """Copy of ``rgb`` (H x W x 3 uint8), optionally resized by ``scale``, with boxes and labels."""
    if scale != 1.0:
        h, w = rgb.shape[:2]
        out = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))),
                         interpolation=cv2.INTER_AREA)
    else:
        out = np.ascontiguousarray(rgb).copy()
    thick = max(1, round(out.shape[0] / 300))
    font = max(0.4, out.shape[0] / 900)
    for i in range(len(dets)):
        x1, y1, x2, y2 = (dets.xyxy[i] * scale).round().astype(int)
        col = color_for(int(dets.track_id[i]), int(dets.cls[i]))
        cv2.rectangle(out, (x1, y1), (x2, y2), col, thick)
        text = label_text(dets, i, names)
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font, thick)
        ty = max(th + base, y1)
        cv2.rectangle(out, (x1, ty - th - base), (x1 + tw, ty), col, -1)
        cv2.putText(out, text, (x1, ty - base), cv2.FONT_HERSHEY_SIMPLEX, font, (0, 0, 0), thick,
                    cv2.LINE_AA)
    return out


def bearing_rays(
    dets: Detections,
    intrinsics: np.ndarray,
    length_m: float = 20.0,
    rotation: np.ndarray | None = None,
    translation: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Rays through each box centre: (start 3, ends K x 3), metres.

    Without ``rotation``/``translation`` the rays are in the camera optical frame (start at the
    origin); with them (camera -> target, e.g. the rig's camera -> base_link) in the target frame.
    A monocular box has no depth: the ray shows the bearing, its length is arbitrary.
    """
    k = np.asarray(intrinsics, dtype=np.float64).reshape(3, 3)
    c = dets.xywh[:, :2].astype(np.float64)
    pix = np.concatenate([c, np.ones((len(c), 1))], axis=1)  # K x 3 homogeneous pixels
    d = (np.linalg.inv(k) @ pix.T).T  # K x 3 directions, optical frame
    d /= np.linalg.norm(d, axis=1, keepdims=True).clip(min=1e-12)
    ends = d * float(length_m)
    start = np.zeros(3)
    if rotation is not None:
        r = np.asarray(rotation, dtype=np.float64).reshape(3, 3)
        t = np.zeros(3) if translation is None else np.asarray(translation, float).reshape(3)
        ends = ends @ r.T + t
        start = t
    return start, ends
