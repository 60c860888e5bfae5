"""What the live view draws: the camera mosaic (``/cam``) and the BEV picture (``/bev``).

ROS-free (messages are duck-typed; the dashboard node and offline tools feed these classes).
Producers only *store* the newest inputs (cheap, any thread); :meth:`render` does the work, at
the rate and only when someone watches, so the live view never costs the pipeline much:

* compressed camera images are decoded at reduced size straight from the JPEG (libjpeg DCT
  scaling, ``cv2.IMREAD_REDUCED_COLOR_k``), only the image shown, only at render time;
* detections are drawn on the image whose stamp they belong to when it is still held, otherwise
  on the newest image if they are not older than ``overlay_max_age_s``;
* the BEV reference (LiDAR / GT boxes, :mod:`lss_bev_ros.eval.reference`) is rasterised only for
  the grid that is drawn, from the inputs nearest to its stamp; for ``lidar_visibility`` the
  ray cast (what LiDAR observed, ~0.2 s for a 30k-point cloud) runs once per drawn grid and
  the cells LiDAR did not observe are shaded as "not scored".

The same :class:`BevView` (``reference="none"``) draws the fused grid (``/fused``).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lss_bev_ros.conversions.grid import GridSpec
from lss_bev_ros.conversions.image import (
    MAX_COMPRESSED_PIXELS,
    ImageConversionError,
    check_compressed_size,
    decode_compressed,
    image_to_rgb,
)
from lss_bev_ros.eval.reference import (
    VEHICLE_PREFIXES,
    Box,
    LidarFilter,
    ReferenceKind,
    build_reference,
    lidar_visibility,
)
from lss_bev_ros.visualization import (
    BoxOverlay,
    bev_legend,
    colorize_bev,
    draw_bev_objects,
    draw_legend,
    draw_text_block,
    reference_label,
    tile_cameras,
)

#: Nuscenes LIDAR_TOP in base_link (m): the default sensor origin of the lidar_visibility ray
#: cast for clouds that arrive already in the grid frame (eval_node's ``lidar_origin``).
DEFAULT_LIDAR_ORIGIN = (0.943713, 0.0, 1.84023)


def decode_reduced(data: bytes | bytearray | memoryview, target_width: int,
                   full_width: int | None = None,
                   max_pixels: int = MAX_COMPRESSED_PIXELS) -> np.ndarray:
    """JPEG/PNG bytes -> H x W x 3 uint8 RGB, decoded at the largest 1/k (k in 1, 2, 4, 8) scale
    that keeps the width >= ``target_width`` (``full_width``: the image's width; default: the
    width its header declares). Images declaring more than ``max_pixels`` are not decoded."""
    if len(memoryview(data).cast("B")) == 0:
        raise ImageConversionError("compressed image has no data")
    if not full_width:
        _h, full_width = check_compressed_size(data, max_pixels)
    k = 1
    for cand in (8, 4, 2):
        if full_width / cand >= target_width:
            k = cand
            break
    return decode_compressed(data, k, max_pixels)


def detection_overlays(detections: Sequence[Any], sx: float, sy: float) -> list[BoxOverlay]:
    """Detection2D-like objects (original pixels) -> boxes in an image scaled by (sx, sy),
    labelled ``label #track score``."""
    out = []
    for d in detections:
        cx, cy = float(d.center_x) * sx, float(d.center_y) * sy
        w, h = float(d.size_x) * sx, float(d.size_y) * sy
        tid = int(getattr(d, "track_id", -1))
        label = str(getattr(d, "label", "")) or str(getattr(d, "class_id", ""))
        text = label + (f" #{tid}" if tid >= 0 else "") + f" {float(d.score):.2f}"
        out.append(BoxOverlay(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, text, None, tid))
    return out


@dataclass
class _Dets:
    stamp: float
    detections: list
    width: int
    height: int


class CameraMosaic:
    """Newest images (+ detections) per camera -> one tiled RGB picture with overlays."""

    def __init__(self, cameras: Sequence[str], history: int = 3,
                 overlay_max_age_s: float = 0.5, stale_after_s: float = 2.0) -> None:
        if history < 1:
            raise ValueError("history must be >= 1")
        self.cameras = list(cameras)
        self.history = int(history)
        self.overlay_max_age_s = float(overlay_max_age_s)
        self.stale_after_s = float(stale_after_s)
        self._lock = threading.Lock()
        self._images: dict[str, deque] = {c: deque(maxlen=self.history) for c in self.cameras}
        self._arrival: dict[str, float] = {}
        self._dets: dict[str, _Dets] = {}
        self.version = 0  # bumps on every input; render skips when nothing changed
        self.received = dict.fromkeys(self.cameras, 0)
        self.decode_errors = 0
        self.last_error = ""

    def add_image(self, camera: str, stamp: float, msg: Any, compressed: bool) -> None:
        """Store a (Compressed)Image-like message; no decoding here."""
        if camera not in self._images:
            raise KeyError(f"unknown camera {camera!r}")
        with self._lock:
            self._images[camera].append((float(stamp), msg, compressed))
            self._arrival[camera] = time.monotonic()
            self.received[camera] += 1
            self.version += 1

    def add_detections(self, camera: str, stamp: float, detections: Sequence[Any], width: int,
                       height: int) -> None:
        """Store the newest detections of ``camera`` (boxes in ``width`` x ``height`` pixels)."""
        if camera not in self._images:
            raise KeyError(f"unknown camera {camera!r}")
        with self._lock:
            self._dets[camera] = _Dets(float(stamp), list(detections), int(width), int(height))
            self.version += 1

    def detection_counts(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {c: {"detections": len(d.detections),
                        "tracks": len({int(getattr(x, "track_id", -1)) for x in d.detections
                                       if int(getattr(x, "track_id", -1)) >= 0})}
                    for c, d in self._dets.items()}

    def _pick(self, camera: str) -> tuple[tuple | None, _Dets | None]:
        imgs = list(self._images[camera])
        dets = self._dets.get(camera)
        if not imgs:
            return None, None
        if dets is not None:
            for item in reversed(imgs):  # the image the detections were computed on
                if abs(item[0] - dets.stamp) < 1e-3:
                    return item, dets
            newest = imgs[-1]
            if abs(newest[0] - dets.stamp) <= self.overlay_max_age_s:
                return newest, dets
        return imgs[-1], None

    def render(self, tile_size: tuple[int, int] = (180, 320)) -> np.ndarray:
        """Tiled H x W x 3 RGB of all cameras (grey tiles for cameras without images)."""
        th, tw = int(tile_size[0]), int(tile_size[1])
        now = time.monotonic()
        with self._lock:
            picks = {c: self._pick(c) for c in self.cameras}
            arrival = dict(self._arrival)
        images: dict[str, np.ndarray | None] = {}
        overlays: dict[str, list[BoxOverlay]] = {}
        status: dict[str, str] = {}
        for cam, (item, dets) in picks.items():
            if item is None:
                images[cam] = None
                continue
            _stamp, msg, compressed = item
            try:
                if compressed:
                    rgb = decode_reduced(msg.data, tw)  # full width from the header
                else:
                    rgb = image_to_rgb(msg)
            except ImageConversionError as exc:
                self.decode_errors += 1
                self.last_error = f"{cam}: {exc}"
                images[cam] = None
                status[cam] = "decode error"
                continue
            images[cam] = rgb
            if dets is not None and dets.width > 0 and dets.height > 0:
                overlays[cam] = detection_overlays(
                    dets.detections, rgb.shape[1] / dets.width, rgb.shape[0] / dets.height)
                status[cam] = f"{len(dets.detections)} det"
            if now - arrival.get(cam, now) > self.stale_after_s:
                status[cam] = (status.get(cam, "") + f" stale {now - arrival[cam]:.0f}s").strip()
        return tile_cameras(images, overlays, layout=_layout(self.cameras), tile_size=(th, tw),
                            status=status)


def _layout(cameras: Sequence[str]) -> list[list[str]] | None:
    from lss_bev_ros.calibration import NUSCENES_CAMERAS

    if set(cameras) <= set(NUSCENES_CAMERAS):
        rows = [[c for c in NUSCENES_CAMERAS[:3] if c in cameras],
                [c for c in NUSCENES_CAMERAS[3:] if c in cameras]]
        return [r for r in rows if r] or None
    return [list(cameras[i : i + 3]) for i in range(0, len(cameras), 3)] or None


def _nearest(items: deque, stamp: float, tol: float) -> Any | None:
    best, best_dt = None, tol
    for s, v in items:
        dt = abs(s - stamp)
        if dt <= best_dt:
            best, best_dt = v, dt
    return best


class BevView:
    """Newest BEV grid (+ reference inputs) -> coloured picture with ego, reference and caption.

    ``reference``: ``none`` or a :class:`ReferenceKind` name (``lidar``, ``gt_boxes``,
    ``lidar_in_boxes``, ``lidar_visibility``); with a reference, cells are drawn as true
    positive (green), false positive (red) and false negative (blue) at ``threshold``; with
    ``lidar_visibility`` only on the cells LiDAR observed, the others shaded light grey (not
    scored). Cells no camera sees (OccupancyGrid -1) are dark grey. ``title``: first caption
    line (e.g. ``fused``); ``unknown_label``: legend text of the unknown grey.
    """

    def __init__(self, reference: str = "none", threshold: float = 0.5,
                 tolerance_s: float = 0.1, lidar_filter: LidarFilter | None = None,
                 prefixes: Sequence[str] | None = VEHICLE_PREFIXES, keep: int = 8,
                 title: str = "", unknown_label: str = "no camera") -> None:
        self.kind = None if reference == "none" else ReferenceKind.parse(reference)
        self.threshold = float(threshold)
        self.tolerance_s = float(tolerance_s)
        self.filt = lidar_filter or LidarFilter()
        self.prefixes = list(prefixes) if prefixes is not None else None
        self.title = title
        self.unknown_label = unknown_label
        self._lock = threading.Lock()
        self._grid: tuple[float, np.ndarray, np.ndarray | None, GridSpec] | None = None
        self._points: deque = deque(maxlen=keep)  # (stamp, (P x 3 points, origin (x, y, z)))
        self._boxes: deque = deque(maxlen=keep)
        self._objects: deque = deque(maxlen=keep)  # (stamp, [object dicts in the grid frame])
        # (grid stamp, (occupied X x Y, observed X x Y or None) or None)
        self._ref_cache: tuple[float, tuple[np.ndarray, np.ndarray | None] | None] | None = None
        self.caption: dict[str, str] = {}
        self.version = 0
        self.grids = 0

    @property
    def needs_lidar(self) -> bool:
        return self.kind is not None and self.kind.needs_lidar

    @property
    def needs_boxes(self) -> bool:
        return self.kind is not None and self.kind.needs_boxes

    @property
    def grid(self) -> GridSpec | None:
        """Geometry of the newest grid (None before the first)."""
        with self._lock:
            return None if self._grid is None else self._grid[3]

    def add_grid(self, stamp: float, prob: np.ndarray, known: np.ndarray | None,
                 grid: GridSpec) -> None:
        """``prob``/``known``: nx x ny indexed [ix, iy] (see GridSpec); stamp in s."""
        with self._lock:
            self._grid = (float(stamp), prob, known, grid)
            self.version += 1
            self.grids += 1

    def add_points(self, stamp: float, points_base: np.ndarray,
                   origin: Sequence[float] = DEFAULT_LIDAR_ORIGIN) -> None:
        """LiDAR points already in the grid frame (P x 3+, metres); ``origin`` (x, y, z) of the
        sensor in that frame (m), the ray-cast start for ``lidar_visibility``."""
        with self._lock:
            self._points.append((float(stamp), (points_base, tuple(float(v) for v in origin))))
            self.version += 1

    def add_boxes(self, stamp: float, boxes: Sequence[Box]) -> None:
        with self._lock:
            self._boxes.append((float(stamp), list(boxes)))
            self.version += 1

    def add_objects(self, stamp: float, objects: Sequence[dict]) -> None:
        """Tracked objects in the grid frame (dicts with x, y, yaw, length, width, label, id;
        :func:`lss_bev_ros.conversions.objects.object_from_tracked_msg`), drawn on the grid
        nearest in stamp."""
        with self._lock:
            self._objects.append((float(stamp), list(objects)))
            self.version += 1

    def reference_for(self, stamp: float, grid: GridSpec
                      ) -> tuple[np.ndarray, np.ndarray | None] | None:
        """(reference X x Y bool, observed X x Y bool or None: all cells scored) for the grid
        at ``stamp`` (s); None when no reference is configured or its inputs are missing."""
        if self.kind is None:
            return None
        with self._lock:
            if self._ref_cache is not None and self._ref_cache[0] == stamp:
                return self._ref_cache[1]
            lidar = _nearest(self._points, stamp, self.tolerance_s) if self.needs_lidar else None
            boxes = _nearest(self._boxes, stamp, self.tolerance_s) if self.needs_boxes else None
        if (self.needs_lidar and lidar is None) or (self.needs_boxes and boxes is None):
            return None  # not cached: the inputs may still arrive
        pts, origin = lidar if lidar is not None else (None, None)
        out: tuple[np.ndarray, np.ndarray | None]
        if self.kind == ReferenceKind.LIDAR_VISIBILITY:
            out = lidar_visibility(pts, grid, origin, self.filt)
        else:
            out = (build_reference(self.kind, grid, points_base=pts, boxes=boxes,
                                   filt=self.filt, prefixes=self.prefixes), None)
        with self._lock:
            self._ref_cache = (stamp, out)
        return out

    def render(self, scale: int = 2) -> np.ndarray | None:
        """H x W x 3 RGB of the newest grid (forward up), or None before the first grid."""
        with self._lock:
            g = self._grid
        if g is None:
            return None
        stamp, prob, known, grid = g
        refs = self.reference_for(stamp, grid)
        ref, observed = refs if refs is not None else (None, None)
        img = colorize_bev(prob, known, ref, observed=observed, threshold=self.threshold,
                           scale=int(scale), resolution=grid.resolution,
                           grid_origin=(grid.xmin, grid.ymin))
        with self._lock:
            objs = _nearest(self._objects, stamp, self.tolerance_s)
        if objs:
            draw_bev_objects(img, objs, scale=int(scale), resolution=grid.resolution,
                             grid_origin=(grid.xmin, grid.ymin), grid_cells=(grid.nx, grid.ny))
        lines = [f"{self.title} t={stamp:.2f}s".strip()]
        lines += [f"{k} {v}" for k, v in list(self.caption.items()) if v]
        if objs is not None:
            lines.append(f"objects {len(objs)}")
        if self.kind is not None:
            name = reference_label(self.kind.name.lower())
            if ref is None:
                lines.append(f"ref {name} (waiting)")
            elif observed is not None:
                lines.append(f"ref {name}: {100.0 * observed.mean():.0f} % observed")
            else:
                lines.append(f"ref {name}")
        draw_text_block(img, lines, (4, 4))
        draw_legend(img, bev_legend(reference=ref is not None, observed=observed is not None,
                                    unknown=self.unknown_label))
        return img
