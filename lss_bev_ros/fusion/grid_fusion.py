"""Ego-motion-compensated temporal fusion of BEV occupancy grids (ROS-free).

Inputs per frame: the single-frame LSS grid (``X x Y`` probabilities indexed ``[ix, iy]``, x
forward, y left, in ``base_link``; ``X x Y`` bool ``known`` = seen by a camera), its stamp (s)
and the ego pose ``map -> base_link`` at that stamp (:class:`Pose2D`: x, y in metres, yaw in
radians, e.g. from ``/odom`` or ``/tf``).

State: log-odds ``L`` (``log(p / (1 - p))``, 0 = unknown) in a **map-aligned rolling window**
around the ego, cell size = the input's. The window moves by whole cells only (no resampling
of the state, so repeated frames do not blur it; only the history inside a moving track's box
is resampled, by its sub-cell displacement); each input is resampled once into the
window and the state once back into the output grid (bilinear, ``scipy.ndimage``).

Output frame: the input's ``base_link`` grid (same size, resolution, origin and frame id as
``/bev/occupancy``), re-sampled from the state at every frame, so a planner that reads the raw
grid reads the fused one unchanged; cells that no camera saw for ``unknown_after_s`` are
unknown (-1 in the OccupancyGrid). Probability in the output: ``sigmoid(L)`` on known cells, 0
on unknown cells (the :func:`occupancy_to_probability` convention). :meth:`GridFusion.map_window`
gives the state itself instead (:class:`MapWindow`, in the fixed frame of the poses, cells fixed
in the world): for planners that integrate in ``map`` / ``odom``.

Update rule per frame (``dt`` = time since the previous fused frame, s):

* every cell: ``L *= exp(-dt / decay_time_s)`` (memory fades toward unknown);
* cells a camera sees now, with ``m = clip(logit(p), -max_step_logodds, +max_step_logodds)``:
  ``L = clip(L + m, m - history_band_logodds, m + history_band_logodds)``, then
  ``L = clip(L, -max_logodds, +max_logodds)``. Bounded evidence both ways: one frame moves a
  cell by at most ``max_step_logodds``, a cell is never more certain than ``max_logodds``, and
  the history shifts the current frame's evidence by at most ``history_band_logodds`` — it
  steadies uncertain cells (the flicker) but cannot overrule a confident frame, so a car that
  drives away is erased (and one that arrives appears) after ``FusionConfig.frames_to_flip(p)``
  frames (1 for a confident frame) instead of leaving a trail;
* hysteresis (``flip_margin_logodds`` = ``h`` > 0): a cell whose state (occupied ``L > 0`` /
  free ``L < 0``) the frame would flip, but to ``|L| < h`` only, keeps its state at the weakest
  log-odds of that state, ``+-HOLD_LOGODDS`` (p 0.525 / 0.475, 52 / 48 in the OccupancyGrid):
  evidence that just crosses 0.5 does not toggle the occupied / free decision every frame,
  a frame beyond the margin flips it at once (a Schmitt trigger on the fused log-odds; the
  cell stays near 0.5, so a planner with its own thresholds sees it as uncertain);
* cells not seen for more than ``unknown_after_s`` are reported unknown (an obstacle that left
  while no camera looked is gone from the output after that time at most);
* optional object motion: with the tracked objects (``objects`` of :meth:`GridFusion.update`,
  :class:`~lss_bev_ros.fusion.object_motion.ObjectMotion` in ``map``), before the frame is
  integrated the history inside each box moving at ``>= object_min_speed_mps`` (and
  ``object_min_speed_sigmas`` standard deviations of its speed) moves with the
  box from the previous fused stamp to this one, and the cells it left lose their occupied
  evidence (:func:`~lss_bev_ros.fusion.object_motion.transport_history`): the smoothing then
  holds for moving cars too, without the trail behind and the lag ahead of them;
* static history band (``static_history_band_logodds`` = ``b_s`` > 0, only when a track set is
  given, even an empty one): cells outside every moving box (enlarged by ``object_margin_m``)
  use the band ``b_s`` instead of ``history_band_logodds``: the tracker says nothing moves there,
  so the history may steady the cell more; inside the moving boxes, and without a track set
  (``objects`` None: no tracker, or its newest set is too old), the narrow band keeps moving
  cars from leaving trails;
* static hysteresis (``static_flip_margin_logodds`` = ``h_s`` > 0, the same condition): those
  cells outside every moving box flip only to ``|L| >= h_s`` instead of ``flip_margin_logodds``
  (for the same reason; inside the moving boxes and without a track set the smaller margin keeps
  cars from lagging).

Rules for bad input (each counted in :class:`FusionStats`, reported in ``FusedGrid.status``):

* stamp older than the last fused one by at most ``max_reorder_s`` (or equal): out of order,
  the frame is **skipped** (``FusedGrid`` is None for it) -> ``skipped_out_of_order``;
* stamp older by more than ``max_reorder_s`` (a looped bag) or newer by more than
  ``max_gap_s``: the state is **reset** and the frame starts a new history -> ``reset_time``;
* no pose: **single-frame** output (the input, unchanged), the state is kept (it lives in the
  map frame and re-aligns with the next pose) -> ``no_pose``;
* non-finite pose: **reset**, single-frame output -> ``bad_pose``;
* pose that moved more than ``max_jump_m`` or turned more than ``max_jump_rad`` since the last
  fused frame: **reset**, the frame starts a new history -> ``reset_pose_jump``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

import numpy as np
from scipy import ndimage

from lss_bev_ros.conversions.grid import GridSpec
from lss_bev_ros.fusion.object_motion import (
    ObjectMotion,
    moving_box_mask,
    moving_objects,
    transport_history,
)

_NEVER = -1.0e18  # last-seen stamp of a cell never observed (s)
HOLD_LOGODDS = 0.1  # log-odds a cell held by the hysteresis keeps (p 0.525 / 0.475)


class FusionStatus(StrEnum):
    """What :meth:`GridFusion.update` did with one frame."""

    FUSED = "fused"  # integrated into the history
    FIRST = "first"  # first frame of a new history (start, or after a reset)
    RESET_TIME = "reset_time"  # time jumped backwards / too far forwards: history restarted
    RESET_POSE_JUMP = "reset_pose_jump"  # pose jumped: history restarted
    NO_POSE = "no_pose"  # no pose: single-frame output, history kept
    BAD_POSE = "bad_pose"  # non-finite pose: single-frame output, history reset
    SKIPPED_OUT_OF_ORDER = "skipped_out_of_order"  # older than the last frame: skipped

    @property
    def single_frame(self) -> bool:
        """Whether the output is the unfused input."""
        return self in (FusionStatus.NO_POSE, FusionStatus.BAD_POSE)


class PoseLike(Protocol):
    """Any planar pose with ``x``, ``y`` (m) and ``yaw`` (rad) in ``map`` (e.g. :class:`Pose2D`,
    ``lss_bev_ros.objects.types.Pose2D``)."""

    @property
    def x(self) -> float: ...
    @property
    def y(self) -> float: ...
    @property
    def yaw(self) -> float: ...


def pose_is_finite(pose: PoseLike) -> bool:
    """All of x, y, yaw are finite numbers."""
    return all(math.isfinite(float(v)) for v in (pose.x, pose.y, pose.yaw))


@dataclass(frozen=True)
class Pose2D:
    """Planar ego pose ``map -> base_link``: position (m) and heading (rad) in ``map``."""

    x: float
    y: float
    yaw: float

    @property
    def finite(self) -> bool:
        """All three components are finite numbers."""
        return pose_is_finite(self)

    @classmethod
    def from_quaternion(cls, x: float, y: float, qx: float, qy: float, qz: float,
                        qw: float) -> Pose2D:
        """From a position (m) and an orientation quaternion (yaw about z is kept)."""
        yaw = math.atan2(2.0 * (qw * qz + qx * qy), 1.0 - 2.0 * (qy * qy + qz * qz))
        return cls(float(x), float(y), yaw)

    @classmethod
    def from_matrix(cls, T: np.ndarray) -> Pose2D:
        """From a 4 x 4 (or 3 x 3 planar) ``base_link -> map`` homogeneous transform."""
        M = np.asarray(T, dtype=np.float64)
        t = M[:2, -1]
        return cls(float(t[0]), float(t[1]), math.atan2(float(M[1, 0]), float(M[0, 0])))


def angle_diff(a: float, b: float) -> float:
    """``a - b`` wrapped to [-pi, pi) (rad)."""
    return (a - b + math.pi) % (2.0 * math.pi) - math.pi


@dataclass(frozen=True)
class FusionConfig:
    """Fusion parameters (validated on construction; ``ValueError`` names the bad field).

    Attributes:
        grid: the input / output grid (``base_link``, square cells).
        max_logodds: bound of the fused log-odds (2.0: p in [0.12, 0.88]).
        max_step_logodds: bound of one frame's contribution.
        history_band_logodds: how far the history may move the current frame's log-odds.
        flip_margin_logodds: hysteresis: a cell changes between occupied and free only to
            ``|L| >= `` this (0: off; 0.4 chosen on bench seed 777; see the module docstring).
        decay_time_s: time constant of the fade toward unknown (s).
        unknown_after_s: a cell unseen for longer is reported unknown (s).
        max_gap_s: a stamp this much newer than the last resets the history (s).
        max_reorder_s: a stamp older than the last by up to this is skipped, by more resets (s).
        max_jump_m: ego translation between two fused frames that counts as a jump (m).
        max_jump_rad: ego rotation between two fused frames that counts as a jump (rad).
        prob_eps: probabilities are clipped to [eps, 1 - eps] before the logit.
        object_min_speed_mps: tracked objects at least this fast move their history and get
            the narrow band (m/s; 3.0: tracks of parked cars jitter at a median 0.6-1.2 m/s,
            10 % / 25 % of them above 3 m/s at 2 / 10 Hz, 9 of 10 tracks of moving cars are
            faster: ``bench/bev_fusion.py --seed 777`` prints it).
        object_min_speed_sigmas: ... and at least this many standard deviations of their
            speed (``ObjectMotion.speed_sigma``; 2.5 as the tracker's ``is_moving``; 0: off).
        object_margin_m: their boxes are enlarged by this on every side (m).
        static_history_band_logodds: history band of the cells outside every moving box when
            a track set is given (0: ``history_band_logodds`` everywhere; 1.2 chosen on bench
            seed 777; module docstring).
        static_flip_margin_logodds: hysteresis margin of those cells (0: ``flip_margin_logodds``
            everywhere; 0.7 chosen on bench seed 777; module docstring).
    """

    grid: GridSpec = field(default_factory=GridSpec)
    max_logodds: float = 2.0
    max_step_logodds: float = 2.5
    history_band_logodds: float = 0.7
    flip_margin_logodds: float = 0.4
    decay_time_s: float = 2.0
    unknown_after_s: float = 2.0
    max_gap_s: float = 3.0
    max_reorder_s: float = 1.0
    max_jump_m: float = 10.0
    max_jump_rad: float = 0.8
    prob_eps: float = 1e-3
    object_min_speed_mps: float = 3.0
    object_min_speed_sigmas: float = 2.5
    object_margin_m: float = 0.5
    static_history_band_logodds: float = 1.2
    static_flip_margin_logodds: float = 0.7

    def __post_init__(self) -> None:
        positive = ("max_logodds", "max_step_logodds", "history_band_logodds", "decay_time_s",
                    "unknown_after_s", "max_gap_s", "max_jump_m", "max_jump_rad",
                    "object_min_speed_mps")
        for name in positive:
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
                raise ValueError(f"FusionConfig.{name} must be a finite number > 0, got {v!r}")
        for name in ("flip_margin_logodds", "static_flip_margin_logodds"):
            v = getattr(self, name)
            if not (math.isfinite(v) and 0.0 <= v <= self.max_logodds):
                raise ValueError(f"FusionConfig.{name} must be <= max_logodds "
                                 f"({self.max_logodds}) and >= 0, got {v}")
        if not (math.isfinite(self.max_reorder_s) and self.max_reorder_s >= 0):
            raise ValueError(f"FusionConfig.max_reorder_s must be >= 0, got {self.max_reorder_s}")
        if not (math.isfinite(self.object_min_speed_sigmas)
                and 0.0 <= self.object_min_speed_sigmas <= 100.0):
            raise ValueError("FusionConfig.object_min_speed_sigmas must be in [0, 100], got "
                             f"{self.object_min_speed_sigmas!r}")
        if not (math.isfinite(self.object_margin_m) and 0.0 <= self.object_margin_m <= 10.0):
            raise ValueError("FusionConfig.object_margin_m must be in [0, 10] m, got "
                             f"{self.object_margin_m}")
        if not (math.isfinite(self.static_history_band_logodds)
                and self.static_history_band_logodds >= 0.0):
            raise ValueError("FusionConfig.static_history_band_logodds must be a finite number "
                             f">= 0, got {self.static_history_band_logodds!r}")
        if not 0.0 < self.prob_eps < 0.5:
            raise ValueError(f"FusionConfig.prob_eps must be in (0, 0.5), got {self.prob_eps}")
        if self.max_jump_rad > math.pi:
            raise ValueError(f"FusionConfig.max_jump_rad must be <= pi, got {self.max_jump_rad}")
        g = self.grid
        if g.nx < 1 or g.ny < 1 or not (math.isfinite(g.resolution) and g.resolution > 0):
            raise ValueError(f"FusionConfig.grid must have cells of positive size, got {g}")

    def frames_to_flip(self, p: float) -> int:
        """Frames of a steady measurement ``p`` (!= 0.5) needed to flip a saturated cell of the
        opposite state past 0.5, and past the hysteresis margin (the decay only shortens it):
        the trail a moving object can leave, in frames. One frame when its evidence exceeds the
        history band and the margin."""
        step = min(abs(float(_logit(p, self.prob_eps))), self.max_step_logodds)
        if step == 0.0:
            raise ValueError("p = 0.5 carries no evidence: it never flips a cell")
        L = np.array([self.max_logodds], np.float32)
        m = np.array([-step], np.float32)
        for n in range(1, 10_000):  # the update rule itself, on one saturated cell
            L = update_logodds(L, m, self)
            if L[0] < 0.0:
                return n
        raise ValueError(f"p = {p} is inside the hysteresis margin: it never flips a cell")


def update_logodds(old: np.ndarray, m: np.ndarray, cfg: FusionConfig,
                   band: np.ndarray | None = None,
                   margin: np.ndarray | None = None) -> np.ndarray:
    """One frame's update of the seen cells (N each, log-odds): the history ``old`` plus the
    clipped evidence ``m``, kept within the history band (``band``, N per-cell bands, or
    ``history_band_logodds``) and ``max_logodds``, then the hysteresis (``margin``, N per-cell
    margins, or ``flip_margin_logodds``; module docstring).
    Decay and object motion come before it."""
    b: float | np.ndarray = cfg.history_band_logodds if band is None else band
    upd = np.clip(old + m, m - b, m + b)  # the history moves this frame's evidence by <= b
    upd = np.clip(upd, -cfg.max_logodds, cfg.max_logodds)
    h: float | np.ndarray = cfg.flip_margin_logodds if margin is None else margin
    if np.any(np.asarray(h) > 0.0):
        held = (old * upd <= 0.0) & (old != 0.0) & (np.abs(upd) < h)
        upd = np.where(held, np.sign(old) * np.float32(HOLD_LOGODDS), upd)
    return upd.astype(np.float32)


def _logit(p: float | np.ndarray, eps: float) -> np.ndarray:
    q = np.clip(p, eps, 1.0 - eps)
    return np.log(q / (1.0 - q))


@dataclass
class FusionStats:
    """Frame counts by outcome since construction (``resets`` = all reasons together)."""

    frames: int = 0
    fused: int = 0
    first: int = 0
    no_pose: int = 0
    bad_pose: int = 0
    pose_jumps: int = 0
    time_resets: int = 0
    out_of_order: int = 0
    resets: int = 0
    objects_moved: int = 0  # object boxes whose history moved with them (all frames)

    def as_dict(self) -> dict[str, int]:
        """Counter name -> value."""
        return dict(self.__dict__)


@dataclass(frozen=True)
class FusedGrid:
    """One fused output grid.

    Attributes:
        probability: X x Y float32 in [0, 1], indexed [ix, iy] (0 where unknown).
        known: X x Y bool, cells seen within ``unknown_after_s``.
        stamp: the input's stamp (s).
        frame_id: the grid's frame (the input grid's, ``base_link``).
        status: what happened to this frame (:class:`FusionStatus`).
    """

    probability: np.ndarray
    known: np.ndarray
    stamp: float
    frame_id: str
    status: FusionStatus


@dataclass(frozen=True)
class MapWindow:
    """The fused state itself, in the fixed frame of the poses (``map`` / ``odom``): no
    resampling after integration, cells fixed in the world.

    The window is axis-aligned with the fixed frame and moves with the ego by whole cells, so
    a cell's world position never changes between frames (a planner integrating in ``odom``
    reads it without re-quantising cell edges, which a ``base_link`` grid cannot avoid).

    Attributes:
        probability: W x W float32 in [0, 1], indexed [i, j] along map x, y (0 where unknown).
        known: W x W bool, cells seen within ``unknown_after_s``.
        origin_xy: map position of cell (0, 0)'s lower corner (m; whole multiples of
            ``resolution``).
        resolution: cell size (m).
        stamp: the newest input's stamp (s).
    """

    probability: np.ndarray
    known: np.ndarray
    origin_xy: tuple[float, float]
    resolution: float
    stamp: float

    def grid_spec(self, frame_id: str) -> GridSpec:
        """The window as a :class:`GridSpec` in ``frame_id`` (for ``OccupancyGrid`` output)."""
        n, m = self.probability.shape
        return GridSpec(self.origin_xy[0], self.origin_xy[1], self.resolution, n, m, frame_id)


class GridFusion:
    """Stateful fusion facade: feed frames in stamp order with :meth:`update`.

    Not thread-safe (a node calls it from one callback group / under a lock).
    """

    def __init__(self, config: FusionConfig | None = None) -> None:
        self.config = config or FusionConfig()
        g = self.config.grid
        # window half size (cells): covers the output grid at any yaw around the ego
        corners = [(x, y) for x in (g.xmin, g.xmin + g.nx * g.resolution)
                   for y in (g.ymin, g.ymin + g.ny * g.resolution)]
        radius = max(math.hypot(x, y) for x, y in corners)
        self._half = math.ceil(radius / g.resolution) + 2
        self.window_cells = 2 * self._half
        self.stats = FusionStats()
        self._logodds = np.zeros((self.window_cells,) * 2, np.float32)  # W x W, [map x, map y]
        self._seen = np.full((self.window_cells,) * 2, _NEVER)  # last-seen stamp (s)
        self._origin: tuple[int, int] | None = None  # window cell (0, 0) in map cells
        self._last_stamp: float | None = None
        self._last_pose: PoseLike | None = None

    # -- public -----------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget the history (the next frame starts a new one)."""
        self._logodds.fill(0.0)
        self._seen.fill(_NEVER)
        self._origin = None
        self._last_stamp = None
        self._last_pose = None

    @property
    def has_history(self) -> bool:
        """Whether a fused history exists (at least one frame since the last reset)."""
        return self._last_stamp is not None

    def update(self, stamp: float, probability: np.ndarray, known: np.ndarray,
               pose: PoseLike | None,
               objects: Sequence[ObjectMotion] | None = None) -> FusedGrid | None:
        """Fuse one single-frame grid; returns the fused grid, or None when skipped.

        Args:
            stamp: the grid's stamp (s).
            probability: X x Y occupancy probabilities (0..1) indexed [ix, iy].
            known: X x Y bool, cells a camera sees in this frame.
            pose: ``map -> base_link`` at ``stamp`` (None: not available).
            objects: tracked objects in ``map`` (e.g. the newest tracks older than ``stamp``,
                extrapolated by their velocity): their history moves with them, and the
                cells outside their boxes use ``static_history_band_logodds`` and
                ``static_flip_margin_logodds``. None: no track
                set (ego motion only); empty: the tracker sees nothing moving. Non-finite
                objects are ignored.

        Raises:
            ValueError: wrong shapes or a non-finite stamp (bad input, nothing changes).
        """
        g = self.config.grid
        prob = np.asarray(probability, dtype=np.float32)
        vis = np.asarray(known, dtype=bool)
        if prob.shape != (g.nx, g.ny) or vis.shape != (g.nx, g.ny):
            raise ValueError(f"grid shapes {prob.shape} / {vis.shape}, expected ({g.nx}, {g.ny})")
        if not math.isfinite(stamp):
            raise ValueError(f"non-finite stamp {stamp!r}")
        self.stats.frames += 1
        status = FusionStatus.FUSED
        last = self._last_stamp
        if last is not None and stamp <= last:
            if last - stamp <= self.config.max_reorder_s:
                self.stats.out_of_order += 1
                return None
            status = FusionStatus.RESET_TIME
        elif last is not None and stamp - last > self.config.max_gap_s:
            status = FusionStatus.RESET_TIME
        if pose is None:
            self.stats.no_pose += 1
            if status is FusionStatus.RESET_TIME:
                self._count_reset(status)
            return self._single(stamp, prob, vis, FusionStatus.NO_POSE)
        if not pose_is_finite(pose):
            self.stats.bad_pose += 1
            self._count_reset(FusionStatus.BAD_POSE)
            return self._single(stamp, prob, vis, FusionStatus.BAD_POSE)
        lp = self._last_pose
        if (status is FusionStatus.FUSED and lp is not None
                and (math.hypot(pose.x - lp.x, pose.y - lp.y) > self.config.max_jump_m
                     or abs(angle_diff(pose.yaw, lp.yaw)) > self.config.max_jump_rad)):
            status = FusionStatus.RESET_POSE_JUMP
        if status is not FusionStatus.FUSED:
            self._count_reset(status)
        if not self.has_history:
            status = FusionStatus.FIRST if status is FusionStatus.FUSED else status
            if status is FusionStatus.FIRST:
                self.stats.first += 1
        else:
            self.stats.fused += 1
        self._integrate(stamp, prob, vis, pose, objects)
        return self._output(stamp, pose, status)

    def map_window(self) -> MapWindow | None:
        """The fused state after the last fused frame, in the fixed frame (None: no history).

        ``W x W`` cells with ``W = window_cells`` (it covers the output grid at any yaw), cell
        edges at whole multiples of the resolution in ``map``."""
        if self._origin is None or self._last_stamp is None:
            return None
        res = self.config.grid.resolution
        p, known = self._probability(self._logodds, self._seen, self._last_stamp)
        return MapWindow(p, known, (self._origin[0] * res, self._origin[1] * res), res,
                         self._last_stamp)

    def _probability(self, logodds: np.ndarray, seen: np.ndarray, stamp: float
                     ) -> tuple[np.ndarray, np.ndarray]:
        """(``sigmoid(L)`` on known cells, 0 elsewhere; known = seen within
        ``unknown_after_s`` of ``stamp``)."""
        known = (stamp - seen) <= self.config.unknown_after_s
        return np.where(known, 1.0 / (1.0 + np.exp(-logodds)), 0.0).astype(np.float32), known

    # -- internals --------------------------------------------------------------------------
    def _count_reset(self, status: FusionStatus) -> None:
        if status is FusionStatus.RESET_TIME:
            self.stats.time_resets += 1
        elif status is FusionStatus.RESET_POSE_JUMP:
            self.stats.pose_jumps += 1
        if self.has_history:
            self.stats.resets += 1
        self.reset()

    def _single(self, stamp: float, prob: np.ndarray, vis: np.ndarray,
                status: FusionStatus) -> FusedGrid:
        return FusedGrid(np.where(vis, prob, 0.0).astype(np.float32), vis.copy(), float(stamp),
                         self.config.grid.frame_id, status)

    def _recentre(self, pose: PoseLike) -> tuple[int, int]:
        """Move the window (whole cells) so the ego is in its centre; returns the origin."""
        res = self.config.grid.resolution
        new = (math.floor(pose.x / res) - self._half, math.floor(pose.y / res) - self._half)
        old = self._origin
        if old is not None and old != new:
            di, dj = new[0] - old[0], new[1] - old[1]
            self._logodds = shift_cells(self._logodds, di, dj, 0.0)
            self._seen = shift_cells(self._seen, di, dj, _NEVER)
        self._origin = new
        return new

    def _window_to_base(self, origin: tuple[int, int], pose: PoseLike
                        ) -> tuple[np.ndarray, np.ndarray]:
        """Affine map (matrix 2 x 2, offset 2) from window cell index to input cell index."""
        g = self.config.grid
        c, s = math.cos(pose.yaw), math.sin(pose.yaw)
        rt = np.array([[c, s], [-s, c]])  # R^T: map -> base_link
        o = np.array([origin[0] + 0.5 - pose.x / g.resolution,
                      origin[1] + 0.5 - pose.y / g.resolution])
        offset = rt @ o - np.array([g.xmin / g.resolution + 0.5, g.ymin / g.resolution + 0.5])
        return rt, offset

    def _integrate(self, stamp: float, prob: np.ndarray, vis: np.ndarray, pose: PoseLike,
                   objects: Sequence[ObjectMotion] | None = None) -> None:
        cfg = self.config
        origin = self._recentre(pose)
        moving = moving_objects(objects or (), cfg.object_min_speed_mps,
                                cfg.object_min_speed_sigmas)
        if self._last_stamp is not None:
            self._logodds *= np.float32(math.exp(-(stamp - self._last_stamp) / cfg.decay_time_s))
            if moving:
                self.stats.objects_moved += transport_history(
                    self._logodds, origin, cfg.grid.resolution, moving, self._last_stamp,
                    stamp, cfg.object_margin_m)
        matrix, offset = self._window_to_base(origin, pose)
        meas = np.where(vis, np.clip(_logit(prob, cfg.prob_eps), -cfg.max_step_logodds,
                                     cfg.max_step_logodds), 0.0).astype(np.float32)
        shape = self._logodds.shape
        meas_w = ndimage.affine_transform(meas, matrix, offset, output_shape=shape, order=1,
                                          mode="constant", cval=0.0)
        seen_w = ndimage.affine_transform(vis.astype(np.float32), matrix, offset,
                                          output_shape=shape, order=1, mode="constant",
                                          cval=0.0) >= 0.5
        band = margin = None
        if objects is not None and (cfg.static_history_band_logodds > 0.0
                                    or cfg.static_flip_margin_logodds > 0.0):
            near = moving_box_mask((self.window_cells, self.window_cells), origin,
                                   cfg.grid.resolution, moving, stamp,
                                   cfg.object_margin_m)[seen_w]
            if cfg.static_history_band_logodds > 0.0:
                band = np.where(near, np.float32(cfg.history_band_logodds),
                                np.float32(cfg.static_history_band_logodds))
            if cfg.static_flip_margin_logodds > 0.0:
                margin = np.where(near, np.float32(cfg.flip_margin_logodds),
                                  np.float32(cfg.static_flip_margin_logodds))
        self._logodds[seen_w] = update_logodds(self._logodds[seen_w], meas_w[seen_w], cfg, band,
                                               margin)
        self._seen[seen_w] = stamp
        self._last_stamp = float(stamp)
        self._last_pose = pose

    def _output(self, stamp: float, pose: PoseLike, status: FusionStatus) -> FusedGrid:
        g = self.config.grid
        assert self._origin is not None
        rt, offset = self._window_to_base(self._origin, pose)
        matrix = rt.T  # inverse rotation: base index -> window index
        inv_offset = -matrix @ offset
        shape = (g.nx, g.ny)
        lo = ndimage.affine_transform(self._logodds, matrix, inv_offset, output_shape=shape,
                                      order=1, mode="constant", cval=0.0)
        seen = ndimage.affine_transform(self._seen, matrix, inv_offset, output_shape=shape,
                                        order=0, mode="constant", cval=_NEVER)
        p, known = self._probability(lo, seen, stamp)
        return FusedGrid(p, known, float(stamp), g.frame_id, status)


def warp_grid(values: np.ndarray, src_pose: PoseLike, dst_pose: PoseLike, grid: GridSpec,
              order: int = 0, cval: float = 0.0) -> np.ndarray:
    """Resample an X x Y grid (indexed [ix, iy]) given in ``base_link`` at ``src_pose`` into
    ``base_link`` at ``dst_pose`` (both ``map -> base_link``); ``cval`` outside. ``order`` 0:
    nearest (masks, classes), 1: bilinear."""
    c0, s0 = math.cos(src_pose.yaw), math.sin(src_pose.yaw)
    c1, s1 = math.cos(dst_pose.yaw), math.sin(dst_pose.yaw)
    r0t = np.array([[c0, s0], [-s0, c0]])
    r1 = np.array([[c1, -s1], [s1, c1]])
    res = grid.resolution
    lo = np.array([grid.xmin / res + 0.5, grid.ymin / res + 0.5])  # cell centre (0,0) / res
    d = np.array([dst_pose.x - src_pose.x, dst_pose.y - src_pose.y]) / res
    matrix = r0t @ r1  # dst index -> src index: R0^T (R1 (i + lo) + d) - lo
    offset = r0t @ (r1 @ lo + d) - lo
    src = np.asarray(values)
    out_dtype = np.float32 if src.dtype == bool else src.dtype
    return ndimage.affine_transform(src.astype(out_dtype), matrix, offset, output_shape=src.shape,
                                    order=order, mode="constant", cval=cval)


def shift_cells(a: np.ndarray, di: int, dj: int, fill: float) -> np.ndarray:
    """``out[i, j] = a[i + di, j + dj]`` (``fill`` outside): a map-aligned window whose origin
    moved by (di, dj) whole cells (e.g. the previous :class:`MapWindow` into the current one)."""
    out = np.full_like(a, fill)
    n, m = a.shape
    if abs(di) >= n or abs(dj) >= m:
        return out
    src_i = slice(max(di, 0), n + min(di, 0))
    dst_i = slice(max(-di, 0), n + min(-di, 0))
    src_j = slice(max(dj, 0), m + min(dj, 0))
    dst_j = slice(max(-dj, 0), m + min(-dj, 0))
    out[dst_i, dst_j] = a[src_i, src_j]
    return out
