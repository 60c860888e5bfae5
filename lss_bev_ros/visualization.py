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
UNSEEN_RGB = (72, 72, 72)  # unknown in the grid: no camera sees the cell (OccupancyGrid -1)
FREE_RGB = (8, 16, 48)  # seen, probability 0
TP_RGB = (40, 220, 60)  # predicted and in the reference
FP_RGB = (230, 50, 40)  # predicted, not in the reference
FN_RGB = (60, 120, 255)  # in the reference, not predicted
NOT_SCORED_RGB = (175, 175, 175)  # the reference does not know the cell (not scored)
NOT_SCORED_ALPHA = 0.6  # weight of NOT_SCORED_RGB over the prediction colour there
EGO_RGB = (255, 255, 255)

RGB = tuple[int, int, int]

REFERENCE_LABELS: dict[str, str] = {
    "lidar": "LiDAR returns",
    "gt_boxes": "GT boxes",
    "lidar_in_boxes": "LiDAR-in-GT-boxes",
    "lidar_visibility": "LiDAR-visibility",
}
"""Display names of the reference kinds (``ReferenceKind`` names, lower case) in captions,
legends, plot titles and the dashboard."""


def reference_label(kind: str | None) -> str:
    """``"lidar_visibility"`` -> ``"LiDAR-visibility"``; unknown names are returned as given,
    empty / None -> ``"reference"``."""
    if not kind:
        return "reference"
    return REFERENCE_LABELS.get(str(kind).lower(), str(kind))

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


def probability_rgb(p: float) -> RGB:
    """Colour of probability ``p`` (0..1) in the BEV pictures."""
    r, g, b = (int(v) for v in _PROB_LUT[int(np.clip(p, 0.0, 1.0) * 255.0)])
    return (r, g, b)


def bev_to_display(arr_xy: np.ndarray) -> np.ndarray:
    """``X x Y`` array indexed [ix, iy] -> display layout (forward up, left on the left)."""
    return np.asarray(arr_xy)[::-1, ::-1]


def _mask(a: np.ndarray | None, shape: tuple[int, ...], what: str) -> np.ndarray | None:
    if a is None:
        return None
    m = np.asarray(a, dtype=bool)
    if m.shape != shape:
        raise ValueError(f"{what} shape {m.shape} != prob shape {shape}")
    return m


def colorize_bev(
    prob: np.ndarray,
    visible: np.ndarray | None,
    reference: np.ndarray | None = None,
    *,
    observed: np.ndarray | None = None,
    threshold: float = 0.5,
    scale: int = 1,
    ego_size_m: tuple[float, float] | None = (4.5, 1.9),
    resolution: float = 0.5,
    grid_origin: tuple[float, float] = (-50.0, -50.0),
) -> np.ndarray:
    """BEV probabilities -> ``(X * scale) x (Y * scale) x 3`` uint8 RGB picture.

    Args:
        prob: ``X x Y`` float probabilities 0..1 indexed [ix, iy] (NaN counts as 0).
        visible: ``X x Y`` bool, cells seen by a present camera (None: all seen; the camera
            coverage). Unseen cells (OccupancyGrid -1) are drawn grey (:data:`UNSEEN_RGB`).
        reference: optional ``X x Y`` bool reference occupancy. When given, scored cells are
            drawn by outcome at ``threshold``: true positive green, false positive red, false
            negative blue (also outside the camera coverage: a missed reference cell counts);
            other seen cells keep the probability colour (dimmed).
        observed: ``X x Y`` bool, cells the reference knows and scores (None: all), e.g. the
            LiDAR-visibility mask; the others are shaded light grey over the prediction
            colour (:data:`NOT_SCORED_RGB`) and show no outcome.
        threshold: probability above which a cell counts as occupied (with ``reference``).
        scale: integer up-scaling (nearest neighbour) for display.
        ego_size_m, resolution, grid_origin: draw the ego footprint (length, width in metres)
            centred on base_link, for orientation (None: no footprint); resolution in m/cell,
            grid_origin (x, y) of cell (0, 0)'s corner in metres.
    """
    p = np.nan_to_num(np.asarray(prob, dtype=np.float32), nan=0.0)
    if p.ndim != 2:
        raise ValueError(f"prob must be X x Y, got shape {p.shape}")
    vis = _mask(visible, p.shape, "visible")
    ref = _mask(reference, p.shape, "reference")
    obs = _mask(observed, p.shape, "observed")
    idx = (np.clip(p, 0.0, 1.0) * 255.0).astype(np.uint8)
    img = _PROB_LUT[idx]  # X x Y x 3
    outcome = None
    if ref is not None:
        pred = p > threshold  # as eval.metrics.Confusion.from_scores
        img = (img.astype(np.uint16) * 6 // 10).astype(np.uint8)  # dim the background
        scored = np.ones_like(pred) if obs is None else obs
        img[pred & ref & scored] = TP_RGB
        img[pred & ~ref & scored] = FP_RGB
        img[~pred & ref & scored] = FN_RGB
        outcome = (pred | ref) & scored
    if obs is not None:
        grey = np.array(NOT_SCORED_RGB, np.float32) * NOT_SCORED_ALPHA
        shade = ~obs
        img[shade] = (img[shade] * (1.0 - NOT_SCORED_ALPHA) + grey).round().astype(np.uint8)
    if vis is not None:
        img[~vis if outcome is None else ~vis & ~outcome] = UNSEEN_RGB
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


# ---- legends and captions of the BEV pictures ---------------------------------------------------
LegendEntry = tuple[str, RGB | None]
"""One legend item: label and swatch colour (None: the probability colour ramp)."""

def _not_scored_swatch() -> RGB:
    r, g, b = (round(c * 6 // 10 * (1.0 - NOT_SCORED_ALPHA) + n * NOT_SCORED_ALPHA)
               for c, n in zip(FREE_RGB, NOT_SCORED_RGB, strict=True))
    return (r, g, b)


NOT_SCORED_SWATCH: RGB = _not_scored_swatch()
"""Colour of an unscored, predicted-free cell in a picture with a reference (legend swatch;
the dimmed :data:`FREE_RGB` under :data:`NOT_SCORED_RGB`, as :func:`colorize_bev` draws it)."""


def bev_legend(reference: bool = False, observed: bool = False,
               unknown: str = "no camera") -> list[LegendEntry]:
    """Legend items of a :func:`colorize_bev` picture: the probability ramp (no reference) or
    the outcome colours (``reference``: TP predicted and in the reference, FP predicted only,
    FN in the reference only), the not-scored shade (``observed``: the reference knows only
    some cells) and the unknown grey (``unknown``: its label, e.g. outside the camera
    coverage)."""
    entries: list[LegendEntry] = []
    if reference:
        entries += [("TP pred+ref", TP_RGB), ("FP pred only", FP_RGB), ("FN ref only", FN_RGB)]
    else:
        entries.append(("occupancy p 0..1", None))
    if observed:
        entries.append(("not scored (ref unknown)", NOT_SCORED_SWATCH))
    entries.append((unknown, UNSEEN_RGB))
    return entries


def _font_scale(img: np.ndarray) -> float:
    return max(0.4, min(img.shape[:2]) / 800)


def draw_text_block(img: np.ndarray, lines: Sequence[str], origin: tuple[int, int] = (4, 4),
                    font_scale: float | None = None) -> np.ndarray:
    """White text lines on black boxes, top-left corner at ``origin`` (x, y pixels); in place."""
    fs = font_scale or _font_scale(img)
    x, y = origin
    for line in lines:
        (tw, th), _ = cv2.getTextSize(line, cv2.FONT_HERSHEY_SIMPLEX, fs, 1)
        cv2.rectangle(img, (x, y), (x + tw + 6, y + th + 8), (0, 0, 0), -1)
        cv2.putText(img, line, (x + 3, y + th + 3), cv2.FONT_HERSHEY_SIMPLEX, fs,
                    (255, 255, 255), 1, cv2.LINE_AA)
        y += th + 8
    return img


def draw_legend(img: np.ndarray, entries: Sequence[LegendEntry],
                font_scale: float | None = None) -> np.ndarray:
    """Swatch + label items in rows along the bottom edge of RGB ``img`` (left to right,
    wrapping at the image width, last row at the bottom), on black boxes; in place.

    A swatch is a solid ``th x th`` pixel square of the entry's colour (``th``: text height),
    or for ``None`` a ``3 th`` wide ramp of the probability colours 0 -> 1.
    """
    fs = font_scale or max(0.35, 0.8 * _font_scale(img))
    h, w = img.shape[:2]
    items = []
    for label, rgb in entries:
        (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, fs, 1)
        sw = th * 3 if rgb is None else th
        items.append((label, rgb, tw, th, sw, sw + tw + 12))
    rows: list[list] = [[]]
    x = 4
    for it in items:
        if rows[-1] and x + it[5] > w - 4:
            rows.append([])
            x = 4
        rows[-1].append(it)
        x += it[5] + 2
    row_h = max((it[3] for it in items), default=8) + 8
    y_bottom = h - 4
    for row in reversed(rows):
        x = 4
        y0 = y_bottom - row_h
        for label, rgb, _tw, th, sw, width in row:
            cv2.rectangle(img, (x, y0), (x + width, y_bottom), (0, 0, 0), -1)
            sx0, sy0 = x + 4, y0 + (row_h - th) // 2
            # swatch clipped to the picture (a tiny grid gives a tiny picture)
            r0, r1 = max(sy0, 0), min(sy0 + th, h)
            c0, c1 = max(sx0, 0), min(sx0 + sw, w)
            if r1 > r0 and c1 > c0:
                if rgb is None:
                    ramp = _PROB_LUT[np.linspace(0, 255, sw).astype(np.uint8)]  # sw x 3
                    img[r0:r1, c0:c1] = ramp[None, c0 - sx0 : c1 - sx0, :]
                else:
                    img[r0:r1, c0:c1] = rgb
            cv2.putText(img, label, (sx0 + sw + 4, sy0 + th), cv2.FONT_HERSHEY_SIMPLEX, fs,
                        (255, 255, 255), 1, cv2.LINE_AA)
            x += width + 2
        y_bottom = y0 - 2
    return img
