"""Object-motion compensation of the fused history (ROS-free).

Ego-motion compensation keeps map-fixed things in place; a car that drives through the grid is
not map-fixed, so its history is in the wrong cells one frame later: behind it (a trail the
measurement must erase) and missing ahead of it (a lag the measurement must fill). With the
tracked objects' motion the history moves with the object instead:

* for every tracked object moving at ``>= min_speed_mps``, its box (enlarged by ``margin_m`` on
  every side) is placed at the previous fused stamp ``t0`` and at the current stamp ``t1``, both
  extrapolated from the track with its velocity (``p(t) = p + v (t - stamp)``, the tracker's
  constant-velocity model);
* the history cells of the box at ``t1`` take the values at the points of the box at ``t0``
  they came from (translation only, bilinear between the four nearest cells: a shift by whole
  cells would drop the sub-cell part of the motion every frame, e.g. a car at 3 m/s fused at
  10 Hz moves 0.6 cell a frame and its history would move 1; bilinear keeps the motion exact at
  the cost of some blur of the moving history, which each frame's measurement sharpens again);
* history cells the box left (``t0`` box minus ``t1`` box) lose their occupied evidence (log-odds
  ``min(L, 0)``): the car's occupancy went with it, the current frame alone decides whether
  something else is there; free evidence (the box's margin, a box larger than the car) is kept,
  so the cells around a moving car keep their steady free history.

Objects are given in ``map`` (the frame the fusion state lives in): ``x``, ``y`` (m), ``yaw``
(rad), ``length`` / ``width`` (m), ``vx`` / ``vy`` (m/s), ``stamp`` (s, when the track had this
state), ``speed_sigma`` (m/s, the velocity's standard deviation, 0 when unknown) and ``label``
(its class name; carried for tools, the fusion does not use it): an object
counts as moving when its speed is at least ``min_speed_mps`` and ``min_sigmas`` times its
``speed_sigma`` (:func:`moving_objects`; the tracker's own rule for a usable heading), so a
parked car whose filter has not settled does not move its history. The fusion core calls
:func:`transport_history` once per frame, before it integrates the frame.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class ObjectMotion:
    """A tracked object's box and velocity on the ground plane of ``map`` at ``stamp``.

    Metres, radians, m/s, seconds (see the module docstring)."""

    x: float
    y: float
    yaw: float
    length: float
    width: float
    vx: float
    vy: float
    stamp: float
    speed_sigma: float = 0.0
    label: str = ""

    @property
    def speed(self) -> float:
        """|v| (m/s)."""
        return math.hypot(self.vx, self.vy)

    @property
    def finite(self) -> bool:
        """Every field is a finite number and the extent is positive."""
        vals = (self.x, self.y, self.yaw, self.length, self.width, self.vx, self.vy, self.stamp,
                self.speed_sigma)
        return (all(math.isfinite(float(v)) for v in vals) and self.length > 0
                and self.width > 0 and self.speed_sigma >= 0)

    def centre_at(self, t: float) -> tuple[float, float]:
        """Box centre (m, map) at time ``t`` (s), constant-velocity extrapolation."""
        dt = t - self.stamp
        return self.x + self.vx * dt, self.y + self.vy * dt

    @classmethod
    def from_object(cls, obj: Any, stamp: float) -> ObjectMotion:
        """From anything with ``x, y, yaw, length, width, vx, vy`` in ``map`` and an optional
        2 x 2 ``velocity_covariance`` and ``label`` (e.g. ``lss_bev_ros.objects.Object3D`` of a
        tracker run with poses) at ``stamp`` (s)."""
        return cls(float(obj.x), float(obj.y), float(obj.yaw), float(obj.length),
                   float(obj.width), float(obj.vx), float(obj.vy), float(stamp),
                   speed_sigma(getattr(obj, "velocity_covariance", None)),
                   str(getattr(obj, "label", "") or ""))


def speed_sigma(velocity_covariance: Any) -> float:
    """Standard deviation (m/s) of one velocity component, ``sqrt(trace / 2)`` of a 2 x 2
    velocity covariance (any rotation of it); 0 when it is None, not finite or negative (the
    ``-1`` of an unknown covariance)."""
    if velocity_covariance is None:
        return 0.0
    c = np.asarray(velocity_covariance, dtype=np.float64)
    tr = float(c[0, 0] + c[1, 1]) if c.shape == (2, 2) else math.nan
    return math.sqrt(tr / 2.0) if math.isfinite(tr) and tr >= 0 and c[0, 0] >= 0 else 0.0


TrackSet = tuple[float, list[ObjectMotion]]  # (stamp s, objects in map)


def track_set_for(sets: Iterable[TrackSet], stamp: float, max_age_s: float) -> TrackSet | None:
    """The track set for a grid at ``stamp`` (s): the newest of ``sets`` stamped strictly
    before it and at most ``max_age_s`` older, or None. The objects stage publishes the tracks
    of a grid only after reading it, so this is the set the tracker had one frame earlier,
    whatever the arrival order: live (fusion_node) and offline (``lss-bev-bag eval``) alike."""
    best: TrackSet | None = None
    for s_stamp, objs in sets:
        if s_stamp < stamp and stamp - s_stamp <= max_age_s and (
                best is None or s_stamp > best[0]):
            best = (s_stamp, objs)
    return best


class TrackSetBuffer:
    """The newest track sets, as fusion_node and ``lss-bev-bag eval`` keep them (one place for
    the rule): :meth:`add` per objects frame, :meth:`for_stamp` per grid (:func:`track_set_for`).
    A set older than the newest by more than ``reorder_s`` (a looped bag) clears the buffer."""

    def __init__(self, max_age_s: float = 1.0, reorder_s: float = 1.0, capacity: int = 8) -> None:
        self.max_age_s = float(max_age_s)  # s
        self.reorder_s = float(reorder_s)  # s
        self._sets: deque[TrackSet] = deque(maxlen=capacity)

    def __len__(self) -> int:
        return len(self._sets)

    def clear(self) -> None:
        self._sets.clear()

    def add(self, stamp: float, objects: Iterable[ObjectMotion]) -> None:
        """Keep one set (its finite objects) stamped ``stamp`` (s)."""
        if self._sets and stamp < self._sets[-1][0] - self.reorder_s:
            self._sets.clear()  # looped bag: forget the old timeline
        self._sets.append((float(stamp), [o for o in objects if o.finite]))

    def for_stamp(self, stamp: float) -> TrackSet | None:
        """:func:`track_set_for` over the kept sets with ``max_age_s``."""
        return track_set_for(self._sets, stamp, self.max_age_s)


def moving_objects(objects: Iterable[ObjectMotion], min_speed_mps: float,
                   min_sigmas: float = 0.0) -> list[ObjectMotion]:
    """The finite objects moving at ``>= min_speed_mps`` (m/s) and ``>= min_sigmas`` times
    their ``speed_sigma``."""
    return [o for o in objects
            if o.finite and o.speed >= max(min_speed_mps, min_sigmas * o.speed_sigma)]


def _box_cells(cx: float, cy: float, yaw: float, half_l: float, half_w: float,
               origin: tuple[int, int], res: float, shape: tuple[int, int]
               ) -> tuple[np.ndarray, np.ndarray]:
    """Window cell indices (``i``, ``j``: N each) whose centres lie in the box (map metres;
    window cell (0, 0) is map cell ``origin``)."""
    r = math.hypot(half_l, half_w)
    i0 = max(math.floor((cx - r) / res) - origin[0], 0)
    i1 = min(math.ceil((cx + r) / res) - origin[0] + 1, shape[0])
    j0 = max(math.floor((cy - r) / res) - origin[1], 0)
    j1 = min(math.ceil((cy + r) / res) - origin[1] + 1, shape[1])
    if i0 >= i1 or j0 >= j1:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    ii, jj = np.meshgrid(np.arange(i0, i1), np.arange(j0, j1), indexing="ij")
    dx = (ii + origin[0] + 0.5) * res - cx
    dy = (jj + origin[1] + 0.5) * res - cy
    c, s = math.cos(yaw), math.sin(yaw)
    along, across = c * dx + s * dy, -s * dx + c * dy
    inside = (np.abs(along) <= half_l) & (np.abs(across) <= half_w)
    return ii[inside], jj[inside]


def _enlarged_box_cells(o: ObjectMotion, t: float, margin_m: float, origin: tuple[int, int],
                        res: float, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_box_cells` of ``o``'s box at ``t`` (s), enlarged by ``margin_m`` on every side."""
    cx, cy = o.centre_at(t)
    return _box_cells(cx, cy, o.yaw, 0.5 * o.length + margin_m, 0.5 * o.width + margin_m,
                      origin, res, shape)


def transport_history(logodds: np.ndarray, origin: tuple[int, int], res: float,
                      objects: Sequence[ObjectMotion], t0: float, t1: float,
                      margin_m: float) -> int:
    """Move the history of each object from its box at ``t0`` to its box at ``t1`` (in place).

    Args:
        logodds: W x W fused log-odds window indexed [map x, map y] (modified).
        origin: map cell index of window cell (0, 0).
        res: cell size (m).
        objects: moving objects in ``map`` (:func:`moving_objects`).
        t0, t1: previous fused stamp and current stamp (s).
        margin_m: the boxes are enlarged by this on every side (m).

    Returns:
        The number of objects whose boxes touched the window.
    """
    if not objects or t1 <= t0:
        return 0
    src = logodds.copy()  # every object reads the history before any was moved
    shape = (int(logodds.shape[0]), int(logodds.shape[1]))
    moved: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    touched = 0
    for o in objects:
        x0, y0 = o.centre_at(t0)
        x1, y1 = o.centre_at(t1)
        oi, oj = _enlarged_box_cells(o, t0, margin_m, origin, res, shape)
        ni, nj = _enlarged_box_cells(o, t1, margin_m, origin, res, shape)
        if oi.size == 0 and ni.size == 0:
            continue
        touched += 1
        # the box left these cells: its occupancy goes with it (unknown until measured again),
        # free evidence stays
        logodds[oi, oj] = np.minimum(logodds[oi, oj], 0.0)
        # where each cell of the new box came from (fractional window indices); 0 outside
        coords = np.stack([ni - (x1 - x0) / res, nj - (y1 - y0) / res])
        vals = ndimage.map_coordinates(src, coords, order=1, mode="constant",
                                       cval=0.0).astype(logodds.dtype)
        moved.append((ni, nj, vals))
    for ni, nj, vals in moved:  # after all clearing: overlapping boxes keep the moved values
        logodds[ni, nj] = vals
    return touched


def moving_box_mask(shape: tuple[int, int], origin: tuple[int, int], res: float,
                    objects: Sequence[ObjectMotion], t: float, margin_m: float) -> np.ndarray:
    """``W x W`` bool: window cells whose centres lie in a box of ``objects`` at ``t`` (s,
    constant-velocity extrapolation), each enlarged by ``margin_m`` (m) on every side."""
    mask = np.zeros(shape, dtype=bool)
    for o in objects:
        ii, jj = _enlarged_box_cells(o, t, margin_m, origin, res, shape)
        mask[ii, jj] = True
    return mask
