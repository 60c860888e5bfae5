"""Online BEV evaluation: pair predicted grids with reference occupancies by stamp (ROS-free).

Used by ``eval_node`` and by ``lss-bev-bag eval`` so both give identical numbers. Feed it in any
order (callbacks arrive as they do):

    ev = BevEvaluator(GridSpec(), kind="lidar_in_boxes", threshold=0.5, tolerance=0.1)
    ev.add_points(stamp, points_base)       # P x 3+ LiDAR points already in base_link (m)
    #   (kind lidar_visibility also needs the sensor origin: sensor_origin= or origin=)
    ev.add_boxes(stamp, boxes)              # list[reference.Box] in base_link
    results = ev.add_grid(stamp, prob, known, latency_ms)   # -> list[FrameResult]
    results += ev.flush()                   # at the end: pending grids become unmatched

A grid is evaluated against the reference (built from the inputs its kind needs, themselves
paired within ``tolerance``) whose stamp is nearest to the grid's, if within ``tolerance``
seconds. A grid that cannot be matched any more (a newer reference exists beyond the tolerance,
or too many grids are pending) counts as *unmatched*. Stamps are seconds.

With ``kind="lidar_visibility"`` only the cells LiDAR observed (free or occupied, see
:func:`.reference.lidar_visibility`) are scored; ``FrameResult.observed_fraction`` is the share of
grid cells scored (1 for the other kinds with ``region="all"``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from lss_bev_ros.conversions.grid import GridSpec
from lss_bev_ros.eval.metrics import Confusion, LatencyStats, RunningMetrics
from lss_bev_ros.eval.reference import (
    VEHICLE_PREFIXES,
    Box,
    LidarFilter,
    ReferenceKind,
    box_occupancy,
    lidar_occupancy,
    lidar_visibility,
    reference_description,
)

REGIONS = ("all", "visible")


@dataclass(frozen=True)
class FrameResult:
    """Metrics of one evaluated grid (values 0..1, NaN where undefined)."""

    stamp: float  # grid stamp (s)
    reference_stamp: float  # stamp of the reference it was compared with (s)
    confusion: Confusion
    iou: float
    precision: float
    recall: float
    mean_iou: float
    mean_precision: float
    mean_recall: float
    frame_count: int
    unmatched_count: int
    latency_ms: float
    latency_p50_ms: float
    latency_p90_ms: float
    latency_p99_ms: float
    observed_fraction: float = 1.0  # share of the grid's cells scored in this frame, 0..1
    mean_observed_fraction: float = 1.0  # running mean of observed_fraction
    reference: np.ndarray | None = field(default=None, repr=False)  # X x Y bool, the reference
    observed: np.ndarray | None = field(default=None, repr=False)  # X x Y bool cells scored by
    # the reference (lidar_visibility), None: all (the grid's own unknown cells not removed)


@dataclass
class _Ref:
    stamp: float
    lidar: np.ndarray | None = None  # X x Y bool
    observed: np.ndarray | None = None  # X x Y bool, cells LiDAR observed (lidar_visibility)
    boxes: np.ndarray | None = None  # X x Y bool
    box_stamp: float | None = None


@dataclass
class _Grid:
    stamp: float
    prob: np.ndarray
    known: np.ndarray | None
    latency_ms: float


@dataclass
class EvaluatorStats:
    grids: int = 0
    references: int = 0
    unmatched: int = 0
    dropped_references: int = 0
    out_of_order: int = 0
    extra: dict = field(default_factory=dict)


class BevEvaluator:
    """Stamp-paired, running BEV evaluation.

    Args:
        grid: the BEV grid (must equal the evaluated OccupancyGrid's geometry).
        kind: reference kind (``lidar``, ``gt_boxes``, ``lidar_in_boxes`` or ReferenceKind).
        threshold: probability counted as occupied (strictly greater than).
        tolerance: max |grid stamp - reference stamp| (s) to pair them; also pairs LiDAR with
            boxes for ``lidar_in_boxes``.
        region: ``all`` cells, or only ``visible`` (known) cells of the grid.
        sensor_origin: LiDAR origin (x, y, z) in the grid frame (m), for ``lidar_visibility``
            (``add_points(origin=...)`` overrides it per cloud).
        lidar_filter, prefixes: see :mod:`.reference`.
        max_pending: grids kept while waiting for their reference.
        max_references: references (or halves of one) kept for grids still to come.
        latency_window: grids in the latency percentile window.
    """

    def __init__(
        self,
        grid: GridSpec | None = None,
        kind: str | int | ReferenceKind = ReferenceKind.LIDAR,
        threshold: float = 0.5,
        tolerance: float = 0.1,
        *,
        region: str = "all",
        lidar_filter: LidarFilter | None = None,
        prefixes: Sequence[str] | None = VEHICLE_PREFIXES,
        sensor_origin: Sequence[float] | None = None,
        max_pending: int = 16,
        max_references: int = 32,
        latency_window: int = 1000,
    ) -> None:
        if region not in REGIONS:
            raise ValueError(f"region must be one of {REGIONS}, got {region!r}")
        if not 0.0 <= threshold <= 1.0:
            raise ValueError("threshold must be in 0..1")
        if tolerance < 0 or max_pending < 1:
            raise ValueError("tolerance >= 0 and max_pending >= 1 required")
        self.grid = grid or GridSpec()
        self.kind = ReferenceKind.parse(kind)
        self.threshold = float(threshold)
        self.tolerance = float(tolerance)
        self.region = region
        self.filter = lidar_filter or LidarFilter()
        self.prefixes = None if prefixes is None else tuple(prefixes)
        self.sensor_origin = None if sensor_origin is None else tuple(
            float(v) for v in sensor_origin)
        if self.sensor_origin is not None and len(self.sensor_origin) != 3:
            raise ValueError(f"sensor_origin must be (x, y, z), got {sensor_origin!r}")
        self._observed_sum = 0.0
        self.max_pending = int(max_pending)
        self.max_references = max(1, int(max_references))
        self.running = RunningMetrics()
        self.latency = LatencyStats(latency_window)
        self.stats = EvaluatorStats()
        self._refs: list[_Ref] = []  # sorted by stamp
        self._grids: list[_Grid] = []  # sorted by stamp

    @property
    def description(self) -> str:
        """Text for ``BevMetrics.reference_description``."""
        return reference_description(self.kind, self.filter, self.prefixes) + (
            ", visible cells only" if self.region == "visible" else "")

    # -- inputs -----------------------------------------------------------------------------
    def add_points(self, stamp: float, points_base: np.ndarray,
                   origin: Sequence[float] | None = None) -> list[FrameResult]:
        """LiDAR points (P x 3+, base_link, m; non-finite rows are ignored) at ``stamp``;
        ``origin`` (x, y, z) of the sensor in base_link (m), default ``sensor_origin``."""
        if not self.kind.needs_lidar:
            return []
        observed = None
        if self.kind == ReferenceKind.LIDAR_VISIBILITY:
            o = origin if origin is not None else self.sensor_origin
            if o is None:
                raise ValueError("reference lidar_visibility needs the LiDAR origin in the grid "
                                 "frame (sensor_origin= or add_points(origin=...))")
            occ, observed = lidar_visibility(points_base, self.grid, o, self.filter)
        else:
            occ = lidar_occupancy(points_base, self.grid, self.filter)
        ref = self._ref_for(stamp, lidar=True)
        ref.lidar, ref.observed = occ, observed
        return self._match()

    def add_boxes(self, stamp: float, boxes: Iterable[Box]) -> list[FrameResult]:
        """Ground-truth boxes (base_link) at ``stamp``."""
        if not self.kind.needs_boxes:
            return []
        occ = box_occupancy(boxes, self.grid, self.prefixes)
        ref = self._ref_for(stamp, lidar=False)
        ref.boxes, ref.box_stamp = occ, float(stamp)
        return self._match()

    def add_reference(self, stamp: float, mask: np.ndarray,
                      observed: np.ndarray | None = None) -> list[FrameResult]:
        """A ready-made reference mask (X x Y bool) at ``stamp`` (any kind); ``observed``
        (X x Y bool, only cells scored) for ``lidar_visibility`` (None: all cells)."""
        m = np.asarray(mask, dtype=bool)
        self._check_shape(m, "reference")
        obs = None if observed is None else np.asarray(observed, dtype=bool)
        if obs is not None:
            self._check_shape(obs, "observed mask")
        ref = self._ref_for(stamp, lidar=self.kind.needs_lidar)
        ref.lidar = m if self.kind.needs_lidar else None
        ref.observed = obs
        ref.boxes = m if self.kind.needs_boxes else None
        if self.kind == ReferenceKind.LIDAR_IN_BOXES:
            ref.boxes = np.ones_like(m)
        return self._match()

    def add_grid(self, stamp: float, prob: np.ndarray, known: np.ndarray | None = None,
                 latency_ms: float = math.nan) -> list[FrameResult]:
        """A predicted grid: ``prob`` X x Y 0..1 indexed [ix, iy], ``known`` X x Y bool."""
        p = np.asarray(prob, dtype=np.float32)
        self._check_shape(p, "grid")
        k = None if known is None else np.asarray(known, dtype=bool)
        if k is not None:
            self._check_shape(k, "known mask")
        self.stats.grids += 1
        g = _Grid(float(stamp), p, k, float(latency_ms))
        if self._grids and g.stamp <= self._grids[-1].stamp:
            self.stats.out_of_order += 1
        self._grids.append(g)
        self._grids.sort(key=lambda x: x.stamp)
        return self._match()

    def flush(self) -> list[FrameResult]:
        """Match what can be matched; remaining grids count as unmatched."""
        out = self._match()
        self.stats.unmatched += len(self._grids)
        self._grids.clear()
        return out

    # -- evaluation -------------------------------------------------------------------------
    def evaluate(self, prob: np.ndarray, reference: np.ndarray,
                 known: np.ndarray | None = None,
                 observed: np.ndarray | None = None) -> Confusion:
        """Confusion of one grid against one reference (no pairing, no running update), over
        the cells ``observed`` by the reference (all when None) and, with region ``visible``,
        ``known`` in the grid."""
        valid = known if self.region == "visible" else None
        if observed is not None:
            valid = observed if valid is None else (np.asarray(valid, bool) & observed)
        return Confusion.from_scores(prob, reference, self.threshold, valid)

    def summary(self) -> dict[str, float]:
        """Running metrics, latency percentiles and pairing counters."""
        return {
            **self.running.summary(),
            "unmatched_count": self.stats.unmatched,
            "latency_p50_ms": self.latency.p50,
            "latency_p90_ms": self.latency.p90,
            "latency_p99_ms": self.latency.p99,
            "reference_kind": int(self.kind),
            "mean_observed_fraction": self.mean_observed_fraction,
        }

    @property
    def mean_observed_fraction(self) -> float:
        """Mean share of grid cells scored per evaluated frame (NaN before any)."""
        n = self.running.frame_count
        return self._observed_sum / n if n else math.nan

    # -- internals --------------------------------------------------------------------------
    def _check_shape(self, a: np.ndarray, what: str) -> None:
        if a.shape != (self.grid.nx, self.grid.ny):
            raise ValueError(f"{what} shape {a.shape} != grid {(self.grid.nx, self.grid.ny)}")

    def _ref_for(self, stamp: float, lidar: bool) -> _Ref:
        """Reference slot for an input at ``stamp``: the LiDAR stamp defines a reference; boxes
        join the nearest LiDAR slot within tolerance (or define one for ``gt_boxes``)."""
        s = float(stamp)
        if self.kind == ReferenceKind.LIDAR_IN_BOXES:
            best = None
            for r in self._refs:
                partner = r.boxes is not None and r.lidar is None if lidar else (
                    r.lidar is not None and r.boxes is None)
                if partner and abs(r.stamp - s) <= self.tolerance and (
                        best is None or abs(r.stamp - s) < abs(best.stamp - s)):
                    best = r
            if best is not None:
                if lidar:
                    best.stamp = s  # the LiDAR stamp is the reference stamp
                    self._refs.sort(key=lambda x: x.stamp)
                return best
        for r in self._refs:
            if r.stamp == s:
                return r
        r = _Ref(s)
        self._refs.append(r)
        self._refs.sort(key=lambda x: x.stamp)
        self.stats.references += 1
        while len(self._refs) > self.max_references:
            self._refs.pop(0)
            self.stats.dropped_references += 1
        return r

    def _complete(self, r: _Ref) -> np.ndarray | None:
        if self.kind in (ReferenceKind.LIDAR, ReferenceKind.LIDAR_VISIBILITY):
            return r.lidar
        if self.kind == ReferenceKind.GT_BOXES:
            return r.boxes
        if r.lidar is None or r.boxes is None:
            return None
        return r.lidar & r.boxes

    def _match(self) -> list[FrameResult]:
        out: list[FrameResult] = []
        ready = [(r, m) for r in self._refs if (m := self._complete(r)) is not None]
        newest_ref = max((r.stamp for r, _ in ready), default=-math.inf)
        keep: list[_Grid] = []
        for g in self._grids:
            best = None
            for r, m in ready:
                d = abs(r.stamp - g.stamp)
                if d <= self.tolerance and (best is None or d < abs(best[0].stamp - g.stamp)):
                    best = (r, m)
            if best is not None:
                out.append(self._score(g, best[0].stamp, best[1], best[0].observed))
            elif newest_ref > g.stamp + self.tolerance:
                self.stats.unmatched += 1  # a later reference exists: this grid's never comes
            else:
                keep.append(g)
        while len(keep) > self.max_pending:
            keep.pop(0)
            self.stats.unmatched += 1
        self._grids = keep
        return out

    def _score(self, g: _Grid, ref_stamp: float, ref: np.ndarray,
               observed: np.ndarray | None = None) -> FrameResult:
        c = self.running.update(self.evaluate(g.prob, ref, g.known, observed))
        self.latency.add(g.latency_ms)
        observed_fraction = c.total / float(self.grid.nx * self.grid.ny)
        self._observed_sum += observed_fraction
        return FrameResult(
            stamp=g.stamp,
            reference_stamp=ref_stamp,
            confusion=c,
            iou=c.iou,
            precision=c.precision,
            recall=c.recall,
            mean_iou=self.running.mean_iou,
            mean_precision=self.running.mean_precision,
            mean_recall=self.running.mean_recall,
            frame_count=self.running.frame_count,
            unmatched_count=self.stats.unmatched,
            latency_ms=g.latency_ms,
            latency_p50_ms=self.latency.p50,
            latency_p90_ms=self.latency.p90,
            latency_p99_ms=self.latency.p99,
            observed_fraction=observed_fraction,
            mean_observed_fraction=self.mean_observed_fraction,
            reference=ref,
            observed=observed,
        )
