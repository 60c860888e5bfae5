"""Reference occupancy in the BEV grid from LiDAR returns and/or ground-truth box footprints.

ROS-free: inputs are numpy arrays and plain box records; :func:`boxes_from_markers` reads a
duck-typed ``visualization_msgs/MarkerArray`` (any object with the message's attributes).

Masks are ``X x Y`` bool indexed ``[ix, iy]`` like the LSS output (ix along base_link x), see
:class:`lss_bev_ros.conversions.GridSpec`. Three kinds (values of ``BevMetrics.reference_kind``):

* ``LIDAR`` (0): cells hit by at least ``min_points`` non-ground LiDAR returns (ground and the
  ego vehicle's own body removed by height / footprint in ``base_link``);
* ``GT_BOXES`` (1): cells covered by ground-truth box footprints (selected categories), rasterised
  exactly as the Lift-Splat-Shoot training labels (``cv2.fillPoly`` on rounded corners);
* ``LIDAR_IN_BOXES`` (2): footprint cells that LiDAR also hit (objects actually observed);
* ``LIDAR_VISIBILITY`` (3): what LiDAR observed. Every return is cast from the sensor origin
  through the grid (:func:`lidar_visibility`): cells with obstacle returns are observed
  occupied, cells the beam crossed inside the obstacle height band before its return (and cells
  of ground returns) observed free, the rest (occluded, out of range) unknown and not scored.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum

import cv2
import numpy as np

from lss_bev_ros.conversions.grid import GridSpec

VEHICLE_PREFIXES: tuple[str, ...] = ("vehicle.",)
"""Category prefixes the LSS vehicle segmentation is trained on (nuScenes ``vehicle.*``)."""

MARKER_CUBE = 1  # visualization_msgs/Marker.CUBE
MARKER_DELETE = 2
MARKER_DELETEALL = 3


class ReferenceKind(IntEnum):
    """Same values as ``lss_bev_ros/BevMetrics.REFERENCE_*``."""

    LIDAR = 0
    GT_BOXES = 1
    LIDAR_IN_BOXES = 2
    LIDAR_VISIBILITY = 3

    @classmethod
    def parse(cls, name: str | int | ReferenceKind) -> ReferenceKind:
        """``"lidar" | "gt_boxes" | "lidar_in_boxes" | "lidar_visibility"`` (or the int value)."""
        if isinstance(name, ReferenceKind):
            return name
        if isinstance(name, int):
            return cls(name)
        key = str(name).strip().upper()
        try:
            return cls[key]
        except KeyError:
            raise ValueError(
                f"unknown reference kind {name!r} (use one of "
                f"{[k.name.lower() for k in cls]})"
            ) from None

    @property
    def needs_lidar(self) -> bool:
        return self in (
            ReferenceKind.LIDAR,
            ReferenceKind.LIDAR_IN_BOXES,
            ReferenceKind.LIDAR_VISIBILITY,
        )

    @property
    def scores_observed_only(self) -> bool:
        """True where the reference knows only some cells (the others are not scored)."""
        return self == ReferenceKind.LIDAR_VISIBILITY

    @property
    def needs_boxes(self) -> bool:
        return self in (ReferenceKind.GT_BOXES, ReferenceKind.LIDAR_IN_BOXES)


@dataclass(frozen=True)
class LidarFilter:
    """Which LiDAR returns (in ``base_link``, metres) count as obstacles.

    ``z_min``/``z_max``: height band above the ground (base_link z = 0 on the ground in nuScenes);
    ``ego_box``: (xmin, xmax, ymin, ymax) of the ego vehicle's own body, removed;
    ``min_points``: returns a cell needs to count as occupied;
    ``free_z_max``: for the ray-cast free space (:func:`lidar_visibility`), a beam proves a cell
    free only while it is at most this high (and above ``z_min``): higher, it may pass over a
    car's bonnet or roof without touching it (measured on the synthetic scenes: with the whole
    band up to ``z_max`` a third of the observed vehicle-footprint cells came out "free").
    """

    z_min: float = 0.3
    z_max: float = 3.0
    ego_box: tuple[float, float, float, float] = (-1.2, 4.2, -1.1, 1.1)
    min_points: int = 1
    free_z_max: float = 1.0

    def __post_init__(self) -> None:
        if not self.z_max > self.z_min:
            raise ValueError(f"z_max ({self.z_max}) must be > z_min ({self.z_min})")
        if self.min_points < 1:
            raise ValueError("min_points must be >= 1")


@dataclass(frozen=True)
class Box:
    """A ground-truth box in ``base_link``: centre (m), size (length along the box x, width, height
    in m), yaw (rad, about z), category (nuScenes name, e.g. ``vehicle.car``)."""

    x: float
    y: float
    z: float
    length: float
    width: float
    height: float
    yaw: float
    category: str = ""

    def footprint(self) -> np.ndarray:
        """4 x 2 bottom corners (x, y) in metres, counter-clockwise."""
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        hl, hw = self.length / 2.0, self.width / 2.0
        local = np.array([[hl, hw], [-hl, hw], [-hl, -hw], [hl, -hw]])
        rot = np.array([[c, -s], [s, c]])
        return local @ rot.T + np.array([self.x, self.y])


def transform_points(
    points: np.ndarray, rotation: np.ndarray, translation: np.ndarray
) -> np.ndarray:
    """P x 3 (or P x K, first three columns x, y, z) points: ``R @ p + t`` on x, y, z."""
    pts = np.asarray(points, dtype=np.float32)
    if pts.ndim != 2 or pts.shape[1] < 3:
        raise ValueError(f"points must be P x 3, got {pts.shape}")
    out = pts.copy()
    r = np.asarray(rotation, dtype=np.float32).reshape(3, 3)
    t = np.asarray(translation, dtype=np.float32).reshape(3)
    out[:, :3] = pts[:, :3] @ r.T + t
    return out


def obstacle_points(points_base: np.ndarray, filt: LidarFilter = LidarFilter()) -> np.ndarray:
    """Keep finite non-ground, non-ego returns: P x K -> Q x K (base_link)."""
    pts = np.asarray(points_base, dtype=np.float32)
    if pts.size == 0:
        return pts.reshape(0, max(3, pts.shape[-1] if pts.ndim == 2 else 3))
    x, y, z = pts[:, 0], pts[:, 1], pts[:, 2]
    ok = np.isfinite(pts[:, :3]).all(axis=1) & (z >= filt.z_min) & (z <= filt.z_max)
    ex0, ex1, ey0, ey1 = filt.ego_box
    ok &= ~((x >= ex0) & (x <= ex1) & (y >= ey0) & (y <= ey1))
    return pts[ok]


def lidar_occupancy(
    points_base: np.ndarray, grid: GridSpec, filt: LidarFilter = LidarFilter()
) -> np.ndarray:
    """X x Y bool: cells with at least ``filt.min_points`` obstacle returns."""
    pts = obstacle_points(points_base, filt)
    counts = np.zeros((grid.nx, grid.ny), np.int32)
    if len(pts):
        ix, iy, inside = grid.cell_of(pts[:, 0], pts[:, 1])
        np.add.at(counts, (ix[inside], iy[inside]), 1)
    return counts >= filt.min_points


#: Free-space ray casting: cells are sampled along each beam every ``resolution / 2`` m.
RAY_STEP_CELLS = 0.5
#: Rays sampled per chunk (bounds the memory of one chunk of samples to ~100 MB).
_RAY_SAMPLES_PER_CHUNK = 2_000_000


def lidar_visibility(
    points_base: np.ndarray,
    grid: GridSpec,
    origin: Sequence[float],
    filt: LidarFilter = LidarFilter(),
    step: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """What LiDAR observed: ``(occupied, observed)``, both X x Y bool indexed ``[ix, iy]``.

    ``points_base`` P x 3+ returns in ``base_link`` (m), ``origin`` (x, y, z) of the sensor in
    ``base_link`` (m). Each finite return off the ego body is a beam from ``origin``; sampled
    every ``step`` m (default half a cell), a sample marks its cell observed *free* when the
    beam is between ``filt.z_min`` and ``min(filt.free_z_max, filt.z_max)`` there (higher, it
    may pass over a car; lower, under one), up to the cell of the return. Cells with
    ``>= filt.min_points`` obstacle returns (band, like :func:`lidar_occupancy`) are observed
    *occupied* (this wins over free); cells of ground returns (below the band) are observed
    free. Everything else, e.g. behind the first obstacle, is unknown: ``observed`` is False.
    Beams ending in the same cell and 0.1 m height bin are cast once (the first of them).
    """
    pts = np.asarray(points_base, dtype=np.float64)
    if pts.ndim != 2 or (pts.size and pts.shape[1] < 3):
        raise ValueError(f"points must be P x 3, got {pts.shape}")
    o = np.asarray(origin, dtype=np.float64).reshape(-1)
    if o.shape != (3,) or not np.isfinite(o).all():
        raise ValueError(f"origin must be finite (x, y, z), got {origin!r}")
    occupied = lidar_occupancy(pts, grid, filt)
    free = np.zeros((grid.nx, grid.ny), bool)
    if pts.size == 0:
        return occupied, occupied.copy()
    pts = pts[np.isfinite(pts[:, :3]).all(axis=1), :3]
    ex0, ex1, ey0, ey1 = filt.ego_box
    x, y = pts[:, 0], pts[:, 1]
    pts = pts[~((x >= ex0) & (x <= ex1) & (y >= ey0) & (y <= ey1))]
    # ground returns: their cell is observed free (the beam reached the road there)
    ground = pts[pts[:, 2] < filt.z_min]
    gx, gy, gin = grid.cell_of(ground[:, 0], ground[:, 1])
    free[gx[gin], gy[gin]] = True
    # beams: free where a sample lies in the free band, before the return's cell
    free_top = min(filt.free_z_max, filt.z_max)
    step = float(step) if step is not None else grid.resolution * RAY_STEP_CELLS
    if not step > 0:
        raise ValueError(f"step must be > 0, got {step}")
    # no beam can mark a cell beyond the grid corner farthest from the origin
    corners = np.array(
        [[grid.xmin, grid.ymin], [grid.xmin + grid.nx * grid.resolution, grid.ymin],
         [grid.xmin, grid.ymin + grid.ny * grid.resolution],
         [grid.xmin + grid.nx * grid.resolution, grid.ymin + grid.ny * grid.resolution]]
    )
    reach = float(np.linalg.norm(corners - o[:2], axis=1).max())
    # beams ending in the same cell at the same height (0.1 m bins) cross the same cells up to
    # sub-cell differences: cast one of each (a dense cloud has many per near cell)
    ex, ey, _ = grid.cell_of(pts[:, 0], pts[:, 1])
    key = np.stack([ex, ey, np.floor(pts[:, 2] / 0.1).astype(np.int64)], axis=1)
    _, first_of = np.unique(key, axis=0, return_index=True)
    end, ex, ey = pts[first_of], ex[first_of], ey[first_of]
    d = end - o  # B x 3
    horiz = np.hypot(d[:, 0], d[:, 1])  # B, m
    keep = horiz > 1e-6
    d, horiz, ex, ey = d[keep], horiz[keep], ex[keep], ey[keep]
    n = np.ceil(np.minimum(horiz, reach) / step).astype(np.int64)  # samples per beam
    start = 0
    while start < len(n):
        # chunk of beams whose samples fit the chunk budget (at least one beam)
        csum = np.cumsum(n[start:])
        stop = start + max(1, int(np.searchsorted(csum, _RAY_SAMPLES_PER_CHUNK)))
        nb = n[start:stop]
        beam = np.repeat(np.arange(start, stop), nb)  # S
        first = np.repeat(np.cumsum(nb) - nb, nb)
        k = np.arange(len(beam)) - first  # sample index along its beam, 0..n-1
        t = (k * step) / horiz[beam]  # fraction of the beam, < 1 (0 = origin)
        sx = o[0] + t * d[beam, 0]
        sy = o[1] + t * d[beam, 1]
        sz = o[2] + t * d[beam, 2]
        ix, iy, inside = grid.cell_of(sx, sy)
        ok = inside & (sz >= filt.z_min) & (sz <= free_top)
        ok &= (ix != ex[beam]) | (iy != ey[beam])  # the return's own cell is not free space
        free[ix[ok], iy[ok]] = True
        start = stop
    observed = occupied | free
    return occupied, observed


def box_occupancy(
    boxes: Iterable[Box], grid: GridSpec, prefixes: Sequence[str] | None = VEHICLE_PREFIXES
) -> np.ndarray:
    """X x Y bool footprint mask of ``boxes`` whose category starts with one of ``prefixes``
    (None: all boxes). Rasterised like the LSS reference labels: corners mapped to
    ``round((p - lower) / resolution)`` and filled with ``cv2.fillPoly`` (row = ix, col = iy)."""
    img = np.zeros((grid.nx, grid.ny), np.uint8)
    lower = np.array([grid.xmin, grid.ymin])
    for b in boxes:
        if prefixes is not None and not any(b.category.startswith(p) for p in prefixes):
            continue
        pts = np.round((b.footprint() - lower) / grid.resolution).astype(np.int32)
        pts = pts[:, ::-1].copy()  # cv2 point = (col, row) = (iy, ix)
        cv2.fillPoly(img, [pts], 1)
    return img.astype(bool)


def boxes_from_markers(marker_array) -> tuple[list[Box], str]:
    """Duck-typed ``visualization_msgs/MarkerArray`` of CUBE markers -> (boxes, frame_id).

    ``ns`` is the category, ``scale`` the box size (x = length, y = width, z = height), the
    pose the centre with a yaw-only (or general; yaw is extracted) orientation. DELETE and
    non-CUBE markers are ignored. Raises ValueError on non-finite poses or mixed frames.
    """
    boxes: list[Box] = []
    frames: set[str] = set()
    for m in marker_array.markers:
        if int(m.action) in (MARKER_DELETE, MARKER_DELETEALL) or int(m.type) != MARKER_CUBE:
            continue
        p, q, s = m.pose.position, m.pose.orientation, m.scale
        vals = [p.x, p.y, p.z, q.x, q.y, q.z, q.w, s.x, s.y, s.z]
        if not all(np.isfinite(float(v)) for v in vals):
            raise ValueError(f"marker {m.ns}/{m.id} has a non-finite pose or scale")
        yaw = float(np.arctan2(2.0 * (q.w * q.z + q.x * q.y), 1.0 - 2.0 * (q.y * q.y + q.z * q.z)))
        boxes.append(Box(float(p.x), float(p.y), float(p.z), float(s.x), float(s.y), float(s.z),
                         yaw, str(m.ns)))
        frames.add(str(m.header.frame_id))
    if len(frames) > 1:
        raise ValueError(f"markers in several frames: {sorted(frames)}")
    return boxes, (frames.pop() if frames else "")


def reference_description(kind: ReferenceKind, filt: LidarFilter,
                          prefixes: Sequence[str] | None = VEHICLE_PREFIXES) -> str:
    """Human-readable description for ``BevMetrics.reference_description``."""
    cats = "all categories" if prefixes is None else "categories " + ",".join(
        f"{p}*" for p in prefixes)
    lid = (f"LiDAR returns {filt.z_min:g}..{filt.z_max:g} m above ground, ego body removed, "
           f">= {filt.min_points} per cell")
    if kind == ReferenceKind.LIDAR:
        return lid
    if kind == ReferenceKind.GT_BOXES:
        return f"ground-truth box footprints ({cats})"
    if kind == ReferenceKind.LIDAR_VISIBILITY:
        top = min(filt.free_z_max, filt.z_max)
        return (
            f"{lid}; scored only where LiDAR observed (cells its beams crossed "
            f"{filt.z_min:g}..{top:g} m high before the return: free; occluded: unknown)"
        )
    return f"ground-truth box footprints ({cats}) also hit by {lid}"


def build_reference(
    kind: ReferenceKind,
    grid: GridSpec,
    *,
    points_base: np.ndarray | None = None,
    boxes: Iterable[Box] | None = None,
    filt: LidarFilter = LidarFilter(),
    prefixes: Sequence[str] | None = VEHICLE_PREFIXES,
    origin: Sequence[float] | None = None,
) -> np.ndarray:
    """X x Y bool reference of ``kind`` (raises ValueError when a needed input is missing).

    For ``LIDAR_VISIBILITY`` this is the occupied mask only; use :func:`lidar_visibility`
    (needs the sensor ``origin``) for the observed mask that goes with it.
    """
    kind = ReferenceKind.parse(kind)
    if kind.needs_lidar and points_base is None:
        raise ValueError(f"reference {kind.name.lower()} needs LiDAR points")
    if kind.needs_boxes and boxes is None:
        raise ValueError(f"reference {kind.name.lower()} needs ground-truth boxes")
    if kind in (ReferenceKind.LIDAR, ReferenceKind.LIDAR_VISIBILITY):
        return lidar_occupancy(points_base, grid, filt)
    foot = box_occupancy(boxes, grid, prefixes)
    if kind == ReferenceKind.GT_BOXES:
        return foot
    return foot & lidar_occupancy(points_base, grid, filt)
