"""2D ground truth from nuScenes 3D annotation boxes, projected into each camera.

For one camera image (``sample_data`` token) every annotated 3D box is taken in the camera
frame (``NuScenes.get_sample_data``), clipped against the near plane (the parts behind the
camera are cut off, not just their corners dropped), projected with the devkit's
``view_points``, and its silhouette (convex hull of the projected, clipped cuboid) intersected
with the image. A box is dropped when

* its category is not one of :data:`CLASS_NAMES`,
* nothing of it is in front of the camera or inside the image,
* it is mostly occluded: nuScenes ``visibility`` below ``min_visibility`` (levels 1..4 =
  0-40/40-60/60-80/80-100 % visible over all cameras) *and* no LiDAR/radar point hit it, or,
  per camera, more than ``max_occlusion`` of its silhouette is covered by nearer boxes,
* it is mostly outside the image (``min_in_image`` of its silhouette inside) or smaller than
  ``min_size_px`` in either direction.

The kept box is the axis-aligned bound of the visible-in-image silhouette part (amodal w.r.t.
occlusion, truncated at the image border), in original image pixels. Track ids for tracking
evaluation come from the nuScenes ``instance`` token.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

CLASS_NAMES: tuple[str, ...] = ("car", "truck", "bus", "pedestrian")
"""Detector classes, in YOLO class-index order."""

CATEGORY_PREFIXES: tuple[tuple[str, int], ...] = (
    ("vehicle.car", 0),
    ("vehicle.truck", 1),
    ("vehicle.bus", 2),
    ("human.pedestrian", 3),
)


def category_to_class(category: str) -> int | None:
    """nuScenes category name -> index into :data:`CLASS_NAMES` (None: not a detector class)."""
    for prefix, idx in CATEGORY_PREFIXES:
        if category == prefix or category.startswith(prefix + "."):
            return idx
    return None


@dataclass(frozen=True)
class GTConfig:
    """Filters of :func:`camera_gt` (pixels are original-image pixels)."""

    min_visibility: int = 2  # nuScenes visibility level 1..4; lower passes only with sensor hits
    max_occlusion: float = 0.8  # fraction of the silhouette hidden by nearer boxes in this image
    min_in_image: float = 0.25  # fraction of the silhouette inside the image
    min_size_px: float = 8.0  # minimum box width and height after clipping
    near_m: float = 0.1  # near clipping plane, metres in front of the camera


@dataclass
class GTFrame:
    """2D ground truth of one camera image.

    ``xyxy``: K x 4 float32 pixels; ``cls``: K int64; ``instance``: K instance tokens;
    ``depth``: K float32 distance camera -> box centre (m); ``occlusion``: K float32 0..1.
    """

    camera: str
    sample_data_token: str
    image_path: Path
    image_size: tuple[int, int]  # (height, width) pixels
    timestamp_us: int
    xyxy: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    cls: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    instance: list[str] = field(default_factory=list)
    depth: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    occlusion: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))

    def __len__(self) -> int:
        return len(self.xyxy)

    def yolo_labels(self) -> str:
        """YOLO label file text: ``cls cx cy w h`` per line, normalised to 0..1."""
        h, w = self.image_size
        lines = []
        for (x1, y1, x2, y2), c in zip(self.xyxy, self.cls, strict=True):
            cx, cy = (x1 + x2) / 2 / w, (y1 + y2) / 2 / h
            lines.append(f"{int(c)} {cx:.6f} {cy:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}")
        return "\n".join(lines) + ("\n" if lines else "")


def clip_to_near_plane(corners: np.ndarray, near: float = 0.1) -> np.ndarray:
    """3 x 8 cuboid corners (camera frame, z forward) -> 3 x M points of the part z >= near.

    The clipped solid is convex, so its projection's hull is spanned by the corners in front
    plus the near-plane crossings of all corner pairs with one corner on each side.
    """
    z = corners[2]
    front = z >= near
    pts = [corners[:, front]]
    fi, bi = np.nonzero(front)[0], np.nonzero(~front)[0]
    if len(fi) and len(bi):
        a = corners[:, fi][:, :, None]  # 3 x F x 1
        b = corners[:, bi][:, None, :]  # 3 x 1 x B
        t = (near - a[2]) / (b[2] - a[2])  # F x B, in [0, 1)
        pts.append((a + (b - a) * t).reshape(3, -1))
    return np.concatenate(pts, axis=1)


def project_silhouette(
    corners: np.ndarray, intrinsics: np.ndarray, image_size: tuple[int, int], near: float = 0.1
) -> tuple[np.ndarray, float] | None:
    """Visible-in-image silhouette of a cuboid: (polygon P x 2 pixels, fraction inside image).

    None when no part is in front of the camera or inside the image.
    """
    from nuscenes.utils.geometry_utils import view_points
    from shapely.geometry import MultiPoint, box

    pts = clip_to_near_plane(corners, near)
    if pts.shape[1] == 0:
        return None
    uv = view_points(pts, np.asarray(intrinsics), normalize=True)[:2].T  # M x 2
    hull = MultiPoint([tuple(p) for p in uv]).convex_hull
    if hull.area <= 0:
        return None
    h, w = image_size
    inside = hull.intersection(box(0, 0, w, h))
    if inside.is_empty or inside.area <= 0 or inside.geom_type != "Polygon":
        return None
    return np.asarray(inside.exterior.coords, dtype=np.float64), float(inside.area / hull.area)


def occlusion_fractions(
    polygons: list[np.ndarray], depths: np.ndarray, image_size: tuple[int, int], scale: float = 0.25
) -> np.ndarray:
    """Fraction of each polygon hidden by nearer ones (painter's test on a reduced raster)."""
    h, w = image_size
    hs, ws = max(1, round(h * scale)), max(1, round(w * scale))
    occupied = np.zeros((hs, ws), dtype=bool)
    out = np.zeros(len(polygons), dtype=np.float32)
    mask = np.zeros((hs, ws), dtype=np.uint8)
    for i in np.argsort(depths):
        mask[:] = 0
        cv2.fillConvexPoly(mask, np.round(polygons[i] * scale).astype(np.int32), 1)
        m = mask.astype(bool)
        total = int(m.sum())
        if total == 0:
            out[i] = 0.0  # sub-pixel at this scale: cannot tell, keep
            continue
        out[i] = float((m & occupied).sum()) / total
        occupied |= m
    return out


def camera_gt(nusc, sample_data_token: str, cfg: GTConfig | None = None) -> GTFrame:
    """2D GT of one camera ``sample_data`` (``nusc``: ``nuscenes.nuscenes.NuScenes``)."""
    from nuscenes.utils.geometry_utils import BoxVisibility

    cfg = cfg or GTConfig()
    sd = nusc.get("sample_data", sample_data_token)
    path, boxes, k = nusc.get_sample_data(sample_data_token, box_vis_level=BoxVisibility.NONE)
    size = (int(sd["height"]), int(sd["width"]))
    frame = GTFrame(
        camera=str(sd["channel"]),  # added to sample_data records by the devkit's index
        sample_data_token=sample_data_token,
        image_path=Path(path),
        image_size=size,
        timestamp_us=int(sd["timestamp"]),
    )
    cands = []
    for b in boxes:
        cls = category_to_class(b.name)
        if cls is None:
            continue
        ann = nusc.get("sample_annotation", b.token)
        vis_level = _visibility_level(ann.get("visibility_token", ""))
        hits = int(ann.get("num_lidar_pts", 0)) + int(ann.get("num_radar_pts", 0))
        if vis_level < cfg.min_visibility and hits == 0:
            continue
        sil = project_silhouette(b.corners(), k, size, cfg.near_m)
        if sil is None or sil[1] < cfg.min_in_image:
            continue
        poly = sil[0]
        x1, y1 = poly.min(axis=0)
        x2, y2 = poly.max(axis=0)
        if x2 - x1 < cfg.min_size_px or y2 - y1 < cfg.min_size_px:
            continue
        cands.append((poly, (x1, y1, x2, y2), cls, ann["instance_token"],
                      float(np.linalg.norm(b.center))))
    if not cands:
        return frame
    depth = np.array([c[4] for c in cands], dtype=np.float32)
    occ = occlusion_fractions([c[0] for c in cands], depth, size)
    keep = occ <= cfg.max_occlusion
    frame.xyxy = np.array([c[1] for c in cands], dtype=np.float32)[keep].reshape(-1, 4)
    frame.cls = np.array([c[2] for c in cands], dtype=np.int64)[keep]
    frame.instance = [c[3] for c, kp in zip(cands, keep, strict=True) if kp]
    frame.depth = depth[keep]
    frame.occlusion = occ[keep]
    return frame


def _visibility_level(token: str) -> int:
    """nuScenes visibility token '1'..'4' -> level 1..4 (0: unknown)."""
    return int(token) if str(token) in ("1", "2", "3", "4") else 0


def scene_camera_frames(
    nusc, scene_token: str, camera: str, cfg: GTConfig | None = None
) -> Iterator[GTFrame]:
    """GT of every key frame of ``camera`` in a scene, in time order."""
    scene = nusc.get("scene", scene_token)
    tok = scene["first_sample_token"]
    while tok:
        sample = nusc.get("sample", tok)
        if camera in sample["data"]:
            yield camera_gt(nusc, sample["data"][camera], cfg)
        tok = sample["next"]


def scenes_by_name(nusc) -> dict[str, str]:
    """Scene name -> scene token."""
    return {s["name"]: s["token"] for s in nusc.scene}
