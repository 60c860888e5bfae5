"""BEV colouring and camera tiling with overlays (numpy + OpenCV, no ROS).

Used by bev_node (coloured ``/bev/image``), the dashboard (MJPEG ``/cam`` and ``/bev``) and the
bag tools. All images are ``H x W x 3`` uint8 **RGB**.

BEV display convention: the BEV arrays are indexed ``[ix, iy]`` (ix along base_link x / forward,
iy along y / left, docs/ARCHITECTURE.md). The picture shows the ego vehicle driving *up*: image row
``r = X - 1 - ix`` and column ``c = Y - 1 - iy`` (left of the vehicle is left in the image).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from lss_bev_ros.calibration import NUSCENES_CAMERAS

# Colours (RGB) of the BEV picture
UNSEEN_RGB = (40, 40, 40)  # no present camera sees the cell (OccupancyGrid -1)
FREE_RGB = (8, 16, 48)  # seen, probability 0
TP_RGB = (40, 220, 60)  # predicted and in the reference
FP_RGB = (230, 50, 40)  # predicted, not in the reference
FN_RGB = (60, 120, 255)  # in the reference, not predicted
EGO_RGB = (255, 255, 255)

CATEGORY_RGBA: tuple[tuple[str, tuple[float, float, float, float]], ...] = (
    ("vehicle.car", (0.1, 0.35, 0.8, 0.6)),
    ("vehicle", (0.95, 0.5, 0.1, 0.6)),
    ("human", (0.8, 0.1, 0.6, 0.6)),
)
"""The one ground-truth marker colour table (RGBA 0..1) by nuScenes category prefix, first
match wins; used by ``lss-bev-bag convert`` and frame_player_node alike."""


def category_rgba(category: str) -> tuple[float, float, float, float]:
    """Marker colour of a nuScenes category (grey for categories not in the table)."""
    for prefix, rgba in CATEGORY_RGBA:
        if category.startswith(prefix):
            return rgba
    return (0.6, 0.6, 0.6, 0.5)

# Standard nuScenes 2 x 3 layout: front row left -> right, back row as seen from behind the car
NUSCENES_LAYOUT: tuple[tuple[str, ...], ...] = (NUSCENES_CAMERAS[:3], NUSCENES_CAMERAS[3:])


def _lut() -> np.ndarray:
    """256 x 3 uint8 colour map: dark blue (p = 0) -> magenta -> orange -> yellow (p = 1)."""
    stops = np.array([0.0, 0.35, 0.7, 1.0])
    cols = np.array([FREE_RGB, (150, 30, 140), (250, 130, 30), (255, 240, 80)], dtype=np.float64)
    t = np.linspace(0.0, 1.0, 256)
    return np.stack([np.interp(t, stops, cols[:, k]) for k in range(3)], 1).round().astype(np.uint8)


_PROB_LUT = _lut()


def bev_to_display(arr_xy: np.ndarray) -> np.ndarray:
    """``X x Y`` array indexed [ix, iy] -> display layout (forward up, left on the left)."""
    return np.asarray(arr_xy)[::-1, ::-1]


def colorize_bev(
    prob: np.ndarray,
    visible: np.ndarray | None,
    reference: np.ndarray | None = None,
    *,
    threshold: float = 0.5,
    scale: int = 1,
    ego_size_m: tuple[float, float] = (4.5, 1.9),
    resolution: float = 0.5,
    grid_origin: tuple[float, float] = (-50.0, -50.0),
) -> np.ndarray:
    """BEV probabilities -> ``(X * scale) x (Y * scale) x 3`` uint8 RGB picture.

    Args:
        prob: ``X x Y`` float probabilities 0..1 indexed [ix, iy] (NaN counts as 0).
        visible: ``X x Y`` bool, cells seen by a present camera (None: all seen). Unseen cells
            are drawn grey.
        reference: optional ``X x Y`` bool reference occupancy. When given, cells are drawn by
            outcome at ``threshold``: true positive green, false positive red, false negative
            blue; other seen cells keep the probability colour (dimmed).
        threshold: probability above which a cell counts as occupied (with ``reference``).
        scale: integer up-scaling (nearest neighbour) for display.
        ego_size_m, resolution, grid_origin: draw the ego footprint (length, width in metres)
            centred on base_link, for orientation.
    """
    p = np.nan_to_num(np.asarray(prob, dtype=np.float32), nan=0.0)
    if p.ndim != 2:
        raise ValueError(f"prob must be X x Y, got shape {p.shape}")
    idx = (np.clip(p, 0.0, 1.0) * 255.0).astype(np.uint8)
    img = _PROB_LUT[idx]  # X x Y x 3
    if reference is not None:
        ref = np.asarray(reference, dtype=bool)
        if ref.shape != p.shape:
            raise ValueError(f"reference shape {ref.shape} != prob shape {p.shape}")
        pred = p > threshold  # as eval.metrics.Confusion.from_scores
        img = (img.astype(np.uint16) * 6 // 10).astype(np.uint8)  # dim the background
        img[pred & ref] = TP_RGB
        img[pred & ~ref] = FP_RGB
        img[~pred & ref] = FN_RGB
    if visible is not None:
        vis = np.asarray(visible, dtype=bool)
        if vis.shape != p.shape:
            raise ValueError(f"visible shape {vis.shape} != prob shape {p.shape}")
        img[~vis] = UNSEEN_RGB
    img = np.ascontiguousarray(bev_to_display(img))
    if ego_size_m is not None and resolution > 0:
        X, Y = p.shape
        # ego centre (x = 0, y = 0) in display pixels; base_link is the rear axle in nuScenes,
        # drawn centred for simplicity
        cx_cell = (0.0 - grid_origin[0]) / resolution  # along ix
        cy_cell = (0.0 - grid_origin[1]) / resolution  # along iy
        half_l = ego_size_m[0] / 2.0 / resolution
        half_w = ego_size_m[1] / 2.0 / resolution
        r0, r1 = X - (cx_cell + half_l), X - (cx_cell - half_l)
        c0, c1 = Y - (cy_cell + half_w), Y - (cy_cell - half_w)
        r0, r1 = int(np.clip(np.floor(r0), 0, X - 1)), int(np.clip(np.ceil(r1) - 1, 0, X - 1))
        c0, c1 = int(np.clip(np.floor(c0), 0, Y - 1)), int(np.clip(np.ceil(c1) - 1, 0, Y - 1))
        img[r0 : r1 + 1, c0 : c1 + 1] = EGO_RGB
        img[r0, c0 : c1 + 1] = (255, 60, 60)  # front edge in red
    if scale > 1:
        img = np.repeat(np.repeat(img, int(scale), axis=0), int(scale), axis=1)
    return img


@dataclass(frozen=True)
class BoxOverlay:
    """One box to draw on a camera image, in *original* image pixels (x right, y down)."""

    x1: float
    y1: float
    x2: float
    y2: float
    label: str = ""
    color: tuple[int, int, int] | None = None  # RGB; None: derived from track_id / label
    track_id: int = -1


def _color_for(key: int | str) -> tuple[int, int, int]:
    """Stable bright RGB colour for an id or label."""
    h = key if isinstance(key, int) else sum((i + 1) * ord(c) for i, c in enumerate(key))
    hsv = np.uint8([[[(h * 37) % 180, 200, 255]]])
    r, g, b = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0]
    return int(r), int(g), int(b)


def _as_overlay(o) -> BoxOverlay:
    """Accept BoxOverlay, (x1, y1, x2, y2[, label]) tuples, dicts or Detection2D-like objects."""
    if isinstance(o, BoxOverlay):
        return o
    if isinstance(o, Mapping):
        return BoxOverlay(
            float(o["x1"]), float(o["y1"]), float(o["x2"]), float(o["y2"]),
            str(o.get("label", "")), o.get("color"), int(o.get("track_id", -1)),
        )
    if hasattr(o, "center_x") and hasattr(o, "size_x"):  # lss_bev_ros/Detection2D
        cx, cy, sx, sy = float(o.center_x), float(o.center_y), float(o.size_x), float(o.size_y)
        tid = int(getattr(o, "track_id", -1))
        label = str(getattr(o, "label", ""))
        score = getattr(o, "score", None)
        text = label + (f" #{tid}" if tid >= 0 else "") + (f" {score:.2f}" if score else "")
        return BoxOverlay(cx - sx / 2, cy - sy / 2, cx + sx / 2, cy + sy / 2, text, None, tid)
    seq = list(o)
    if len(seq) < 4:
        raise ValueError(f"overlay needs x1, y1, x2, y2; got {o!r}")
    label = str(seq[4]) if len(seq) > 4 else ""
    return BoxOverlay(float(seq[0]), float(seq[1]), float(seq[2]), float(seq[3]), label)


def draw_boxes(img: np.ndarray, boxes: Sequence, sx: float = 1.0, sy: float = 1.0) -> np.ndarray:
    """Draw ``boxes`` (see :class:`BoxOverlay`) on RGB ``img`` in place, coordinates scaled."""
    thick = max(1, round(min(img.shape[:2]) / 200))
    for raw in boxes:
        b = _as_overlay(raw)
        color = b.color or _color_for(b.track_id if b.track_id >= 0 else (b.label or "box"))
        p1 = (round(b.x1 * sx), round(b.y1 * sy))
        p2 = (round(b.x2 * sx), round(b.y2 * sy))
        cv2.rectangle(img, p1, p2, color, thick)
        if b.label:
            fs = max(0.35, min(img.shape[:2]) / 600)
            (tw, th), _ = cv2.getTextSize(b.label, cv2.FONT_HERSHEY_SIMPLEX, fs, 1)
            y = max(th + 2, p1[1])
            cv2.rectangle(img, (p1[0], y - th - 3), (p1[0] + tw + 2, y), color, -1)
            cv2.putText(img, b.label, (p1[0] + 1, y - 2), cv2.FONT_HERSHEY_SIMPLEX, fs,
                        (0, 0, 0), 1, cv2.LINE_AA)
    return img


def _caption(img: np.ndarray, text: str) -> None:
    fs = max(0.4, img.shape[0] / 400)
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, fs, 1)
    cv2.rectangle(img, (0, 0), (tw + 6, th + 8), (0, 0, 0), -1)
    cv2.putText(img, text, (3, th + 4), cv2.FONT_HERSHEY_SIMPLEX, fs, (255, 255, 255), 1,
                cv2.LINE_AA)


def tile_cameras(
    images: Mapping[str, np.ndarray | None],
    overlays: Mapping[str, Sequence] | None = None,
    *,
    layout: Sequence[Sequence[str]] | None = None,
    tile_size: tuple[int, int] = (180, 320),
    labels: bool = True,
    status: Mapping[str, str] | None = None,
) -> np.ndarray:
    """Arrange camera images in a grid, with optional boxes and captions.

    Args:
        images: camera name -> ``H x W x 3`` uint8 RGB (None or absent: grey "no image" tile).
        overlays: camera name -> boxes in that camera's original pixels (:class:`BoxOverlay`,
            ``(x1, y1, x2, y2[, label])``, dicts, or ``Detection2D``-like objects).
        layout: rows of camera names; default the nuScenes 2 x 3 layout when all names are
            nuScenes cameras, else rows of 3 in the given order.
        tile_size: (height, width) of every tile in pixels.
        labels: caption each tile with the camera name (plus ``status[name]`` when given).

    Returns:
        ``(rows * h) x (cols * w) x 3`` uint8 RGB.
    """
    th, tw = int(tile_size[0]), int(tile_size[1])
    if th <= 0 or tw <= 0:
        raise ValueError(f"tile_size must be positive, got {tile_size}")
    if layout is None:
        names = list(images)
        if names and set(names) <= set(NUSCENES_CAMERAS):
            layout = NUSCENES_LAYOUT
        else:
            layout = [names[i : i + 3] for i in range(0, max(len(names), 1), 3)] or [[]]
    rows = [list(r) for r in layout]
    ncols = max([1, *(len(r) for r in rows)])
    out = np.zeros((th * len(rows), tw * ncols, 3), np.uint8)
    for ri, row in enumerate(rows):
        for ci, name in enumerate(row):
            tile = out[ri * th : (ri + 1) * th, ci * tw : (ci + 1) * tw]
            img = images.get(name)
            if img is None:
                tile[:] = UNSEEN_RGB
                cv2.putText(tile, "no image", (tw // 2 - 40, th // 2), cv2.FONT_HERSHEY_SIMPLEX,
                            0.6, (200, 200, 200), 1, cv2.LINE_AA)
            else:
                img = np.asarray(img)
                if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
                    raise ValueError(
                        f"{name}: expected H x W x 3 uint8, got {img.shape} {img.dtype}"
                    )
                h, w = img.shape[:2]
                tile[:] = cv2.resize(img, (tw, th), interpolation=cv2.INTER_AREA)
                if overlays and overlays.get(name):
                    draw_boxes(tile, overlays[name], tw / w, th / h)
            if labels:
                text = name + (f"  {status[name]}" if status and status.get(name) else "")
                _caption(tile, text)
    return out


def hstack_padded(images: Sequence[np.ndarray], height: int | None = None) -> np.ndarray:
    """Scale RGB images to a common ``height`` (default the first one's) and join side by side."""
    if not images:
        raise ValueError("no images")
    h = int(height or images[0].shape[0])
    parts = [
        im if im.shape[0] == h
        else cv2.resize(im, (max(1, round(im.shape[1] * h / im.shape[0])), h))
        for im in images
    ]
    return np.concatenate(parts, axis=1)


def draw_bev_objects(img: np.ndarray, objects: Sequence[Mapping], *, scale: int = 1,
                     resolution: float = 0.5, grid_origin: tuple[float, float] = (-50.0, -50.0),
                     grid_cells: tuple[int, int] = (200, 200)) -> np.ndarray:
    """Draw base_link objects on a :func:`colorize_bev` picture (in place; returned).

    ``objects``: mappings with ``x``, ``y`` (m), ``yaw`` (rad), ``length``, ``width`` (m),
    ``label`` and ``id`` (``-1``: untracked), e.g. from
    :func:`lss_bev_ros.conversions.objects.object_from_tracked_msg`. Each is an outline in its
    class colour with a brighter front edge and ``#id`` next to it; the grid is ``grid_cells``
    (X, Y) cells of ``resolution`` m from ``grid_origin``, drawn ``scale`` pixels per cell.
    """
    from lss_bev_ros.conversions.objects import CLASS_COLORS

    nx, ny = grid_cells
    fs = max(0.35, min(img.shape[:2]) / 900)

    def px(x: np.ndarray, y: np.ndarray) -> np.ndarray:  # base_link m -> display (col, row)
        row = (nx - (x - grid_origin[0]) / resolution) * scale
        col = (ny - (y - grid_origin[1]) / resolution) * scale
        return np.stack([col, row], axis=-1)

    for o in objects:
        c, s = np.cos(o["yaw"]), np.sin(o["yaw"])
        hl, hw = o["length"] / 2, o["width"] / 2
        lx = np.array([hl, hl, -hl, -hl])
        ly = np.array([hw, -hw, -hw, hw])
        pts = px(o["x"] + c * lx - s * ly, o["y"] + s * lx + c * ly)
        if not np.all(np.isfinite(pts)):
            continue
        poly = np.round(pts).astype(np.int32)
        rgb = tuple(int(255 * v) for v in CLASS_COLORS.get(str(o.get("label", "")),
                                                           (0.7, 0.7, 0.7)))
        cv2.polylines(img, [poly.reshape(-1, 1, 2)], True, rgb, 1 + (scale > 2), cv2.LINE_AA)
        cv2.line(img, tuple(poly[0]), tuple(poly[1]), (255, 255, 255), 1 + (scale > 2),
                 cv2.LINE_AA)  # front edge
        if int(o.get("id", -1)) >= 0:
            x0, y0 = int(poly[:, 0].max()) + 2, int(poly[:, 1].min()) + 4
            cv2.putText(img, f"#{int(o['id'])}", (x0, y0), cv2.FONT_HERSHEY_SIMPLEX, fs, rgb, 1,
                        cv2.LINE_AA)
    return img
