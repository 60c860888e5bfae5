"""Ground-plane multi-object tracker: constant-velocity Kalman filter per track (filterpy),
Mahalanobis-gated assignment (scipy linear_sum_assignment), birth / confirmation / deletion,
and removal of a track that overlaps a stronger one (shapely footprint IoU): one object tracked
twice, e.g. when a second detection of it did not pass the gate of its track and was born
beside it.

State per track: [x, y, vx, vy] (m, m/s) in the tracking frame (map or base_link). Measurements
are object positions (x, y) with their 2 x 2 covariance. One id per physical object: the input
objects are already merged across cameras, so a car moving from one camera into the next keeps
its track.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace

import numpy as np
from filterpy.common import Q_discrete_white_noise
from filterpy.kalman import KalmanFilter
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist
from shapely.geometry import Polygon

from lss_bev_ros.objects.config import ObjectsConfig
from lss_bev_ros.objects.types import Object3D

VEHICLE_LABELS = frozenset({"car", "truck", "bus", "trailer", "construction_vehicle"})
"""nuScenes vehicle names: labels the detector confuses with one another."""


def _compatible(a: str, b: str) -> bool:
    """Labels that may belong to one physical object (the detector confuses vehicle classes)."""
    return a == b or (a in VEHICLE_LABELS and b in VEHICLE_LABELS)


def nearest_branch(yaw: float, reference: float) -> float:
    """``yaw`` or ``yaw + pi`` (rad, wrapped), whichever is nearer ``reference``: the branch of
    a heading known only up to its direction (a blob's major axis)."""
    if abs(wrap_angle(yaw + np.pi - reference)) < abs(wrap_angle(yaw - reference)):
        return wrap_angle(yaw + np.pi)
    return wrap_angle(yaw)


def wrap_angle(a: float) -> float:
    """Angle wrapped to (-pi, pi]."""
    return float(np.arctan2(np.sin(a), np.cos(a)))


@dataclass
class Track:
    """One track: filterpy Kalman filter plus bookkeeping."""

    track_id: int
    kf: KalmanFilter
    born: float  # s
    last_update: float  # s
    hits: int = 1
    confirmed: bool = False
    existence: float = 0.5
    score_ema: float = 0.5
    score_sum: float = 0.0
    labels: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    size: np.ndarray = field(default_factory=lambda: np.zeros(3))  # l, w, h m (running mean)
    z: float = 0.0
    yaw: float = 0.0
    yaw_observed: bool = False
    label_probability: float = 0.0
    cameras: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return max(self.labels.items(), key=lambda kv: kv[1])[0]

    @property
    def position(self) -> np.ndarray:
        return self.kf.x[:2, 0].copy()

    @property
    def velocity(self) -> np.ndarray:
        return self.kf.x[2:, 0].copy()


def footprint(t: Track) -> Polygon:
    """Ground footprint of a track: its length x width rectangle at its position and yaw (m)."""
    c, s = np.cos(t.yaw), np.sin(t.yaw)
    half = 0.5 * np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]], dtype=float) * t.size[:2]
    return Polygon(half @ np.array([[c, s], [-s, c]]) + t.position)


def footprint_iou(a: Track, b: Track) -> float:
    """IoU of two tracks' footprints (0 for disjoint ones)."""
    pa, pb = footprint(a), footprint(b)
    union = pa.union(pb).area
    return float(pa.intersection(pb).area / union) if union > 1e-9 else 0.0


class GroundTracker:
    """Tracks objects on the ground plane; see the module docstring."""

    def __init__(self, config: ObjectsConfig | None = None) -> None:
        self.config = config or ObjectsConfig()
        self.tracks: list[Track] = []
        self._next_id = 1
        self._stamp: float | None = None

    def reset(self) -> None:
        """Drop all tracks (ids keep counting up: unique per tracker lifetime)."""
        self.tracks = []
        self._stamp = None

    @property
    def stamp(self) -> float | None:
        return self._stamp

    def _new_track(self, ob: Object3D, stamp: float) -> Track:
        cfg = self.config
        kf = KalmanFilter(dim_x=4, dim_z=2)
        kf.x = np.array([[ob.x], [ob.y], [0.0], [0.0]])
        kf.P = np.diag([1.0, 1.0, cfg.init_velocity_sigma**2, cfg.init_velocity_sigma**2])
        kf.P[:2, :2] = ob.position_covariance
        kf.H = np.array([[1.0, 0, 0, 0], [0, 1.0, 0, 0]])
        t = Track(self._next_id, kf, stamp, stamp)
        self._next_id += 1
        t.labels[ob.label] += ob.label_probability
        t.size = np.array([ob.length, ob.width, ob.height])
        t.z = ob.z
        t.yaw, t.yaw_observed = ob.yaw, ob.yaw_observed
        t.label_probability = ob.label_probability
        t.score_ema = ob.existence_probability
        t.existence = 0.75 * ob.existence_probability
        t.score_sum = ob.existence_probability
        t.cameras = ob.cameras
        t.confirmed = cfg.confirm_hits <= 1 or ob.existence_probability >= cfg.confirm_score
        return t

    def _predict(self, dt: float) -> None:
        cfg = self.config
        F = np.array([[1.0, 0, dt, 0], [0, 1.0, 0, dt], [0, 0, 1.0, 0], [0, 0, 0, 1.0]])
        Q = Q_discrete_white_noise(dim=2, dt=max(dt, 1e-3), var=cfg.accel_sigma**2,
                                   block_size=2, order_by_dim=False)
        for t in self.tracks:
            t.kf.predict(F=F, Q=Q)

    def _cost(self, objs: list[Object3D], dt: float) -> np.ndarray:
        """T x M Mahalanobis^2 (inf outside the gate or for incompatible labels)."""
        cfg = self.config
        cap = cfg.gate_max_m + cfg.max_speed_mps * dt
        tp = np.array([t.position for t in self.tracks])  # T x 2
        tc = np.array([t.kf.P[:2, :2] for t in self.tracks])  # T x 2 x 2
        op = np.array([o.position for o in objs])  # M x 2
        oc = np.array([o.position_covariance for o in objs])  # M x 2 x 2
        d = op[None, :, :] - tp[:, None, :]  # T x M x 2
        s = tc[:, None] + oc[None, :]  # T x M x 2 x 2
        det = s[..., 0, 0] * s[..., 1, 1] - s[..., 0, 1] * s[..., 1, 0]
        m2 = (s[..., 1, 1] * d[..., 0] ** 2 - (s[..., 0, 1] + s[..., 1, 0]) * d[..., 0]
              * d[..., 1] + s[..., 0, 0] * d[..., 1] ** 2) / np.maximum(det, 1e-12)
        ok = (m2 <= cfg.gate_chi2) & (np.hypot(d[..., 0], d[..., 1]) <= cap)
        tl = [t.label for t in self.tracks]
        ol = [o.label for o in objs]
        compat = np.array([[_compatible(a, b) for b in ol] for a in tl], dtype=bool)
        return np.where(ok & compat, m2, np.inf)

    def _update(self, t: Track, ob: Object3D, stamp: float) -> None:
        cfg = self.config
        t.kf.update(ob.position.reshape(2, 1), R=ob.position_covariance)
        t.hits += 1
        t.last_update = stamp
        t.labels[ob.label] += ob.label_probability
        t.label_probability = t.labels[t.label] / max(sum(t.labels.values()), 1e-9)
        a = 0.3
        t.size = (1 - a) * t.size + a * np.array([ob.length, ob.width, ob.height])
        t.z = (1 - a) * t.z + a * ob.z
        # existence: running mean of the supporting detections' scores, raised with the number
        # of hits (one hit: 0.75 of it, many: -> 1), decayed while coasting (see step)
        t.score_ema = 0.6 * t.score_ema + 0.4 * ob.existence_probability
        t.existence = t.score_ema * (1.0 - 0.25 * 0.5 ** (t.hits - 1))
        t.score_sum += ob.existence_probability
        t.cameras = ob.cameras
        if self.is_moving(t):
            t.yaw = float(np.arctan2(t.velocity[1], t.velocity[0]))
            t.yaw_observed = True
        elif ob.yaw_observed:
            # a blob heading is ambiguous by pi: keep the branch nearest the track's yaw
            y = nearest_branch(ob.yaw, t.yaw)
            t.yaw = wrap_angle(t.yaw + 0.3 * wrap_angle(y - t.yaw)) if t.yaw_observed else y
            t.yaw_observed = True
        if not t.confirmed and (t.hits >= cfg.confirm_hits
                                or ob.existence_probability >= cfg.confirm_score):
            t.confirmed = True

    def is_moving(self, t: Track) -> bool:
        """Speed above ``moving_speed_mps`` and 2.5 sigma of its estimate (heading usable)."""
        speed = float(np.hypot(*t.velocity))
        sigma = float(np.sqrt(max(np.trace(t.kf.P[2:, 2:]) / 2, 0.0)))
        return speed >= max(self.config.moving_speed_mps, 2.5 * sigma)

    def step(self, stamp: float, objects: list[Object3D]) -> list[int]:
        """Predict to ``stamp`` (s), associate ``objects`` (tracking frame), update, birth,
        delete. Returns per input object the index into ``self.tracks`` it updated or created."""
        cfg = self.config
        if self._stamp is not None and stamp < self._stamp - cfg.time_jump_s:
            self.reset()
        dt = 0.0 if self._stamp is None else max(stamp - self._stamp, 0.0)
        self._stamp = stamp if self._stamp is None else max(stamp, self._stamp)
        if dt > 0:
            self._predict(dt)
        assigned = [-1] * len(objects)
        if self.tracks and objects:
            cost = self._cost(objects, dt)
            finite = np.where(np.isfinite(cost), cost, 1e6)
            rows, cols = linear_sum_assignment(finite)
            for r, c in zip(rows, cols, strict=True):
                if np.isfinite(cost[r, c]):
                    self._update(self.tracks[r], objects[c], stamp)
                    assigned[c] = int(r)
        updated = {a for a in assigned if a >= 0}
        for i, t in enumerate(self.tracks):
            if i not in updated and dt > 0:
                t.existence *= float(np.exp(-dt / cfg.max_coast_s))
        for j, ob in enumerate(objects):
            if assigned[j] < 0:
                self.tracks.append(self._new_track(ob, stamp))
                assigned[j] = len(self.tracks) - 1
        owner = self._overlap_owners()
        assigned = [owner[a] for a in assigned]
        keep = []
        for i, t in enumerate(self.tracks):
            coast = stamp - t.last_update
            limit = cfg.max_coast_s if t.confirmed else cfg.tentative_coast_s
            keep.append(owner[i] == i and coast <= limit)
        remap = np.cumsum(keep) - 1
        assigned = [int(remap[a]) if keep[a] else -1 for a in assigned]
        self.tracks = [t for t, k in zip(self.tracks, keep, strict=True) if k]
        return assigned

    def _overlap_owners(self) -> list[int]:
        """Per track the index of the track it is kept as: itself, or the stronger track its
        footprint overlaps with IoU above ``overlap_iou`` (label-compatible; stronger: more
        updates, then older). A duplicate is removed with its objects handed to the owner."""
        cfg = self.config
        owner = list(range(len(self.tracks)))
        if cfg.overlap_iou >= 1.0 or len(self.tracks) < 2:
            return owner
        xy = np.array([t.position for t in self.tracks])  # T x 2, m
        reach = 0.5 * np.array([np.hypot(t.size[0], t.size[1]) for t in self.tracks])  # T, m
        near = cdist(xy, xy) <= reach[:, None] + reach[None, :]  # T x T: can touch (else IoU 0)
        order = sorted(owner, key=lambda i: (-self.tracks[i].hits, self.tracks[i].track_id))
        kept: list[int] = []
        for i in order:
            ti = self.tracks[i]
            for k in kept:
                if near[i, k] and _compatible(ti.label, self.tracks[k].label) and footprint_iou(
                        ti, self.tracks[k]) > cfg.overlap_iou:
                    owner[i] = k
                    break
            else:
                kept.append(i)
        return owner

    def outputs(self, stamp: float) -> list[Object3D]:
        """Confirmed tracks updated within ``output_coast_s``, as objects in the tracking frame."""
        cfg = self.config
        out = []
        for t in self.tracks:
            if not t.confirmed or stamp - t.last_update > cfg.output_coast_s:
                continue
            out.append(self.as_object(t, stamp))
        return out

    def as_object(self, t: Track, stamp: float) -> Object3D:
        """Object3D of one track at ``stamp`` (s)."""
        x = t.kf.x[:, 0]
        return Object3D(
            float(x[0]), float(x[1]), float(t.z), float(t.size[0]), float(t.size[1]),
            float(t.size[2]), float(t.yaw), bool(t.yaw_observed), t.label,
            float(t.label_probability), float(t.existence), t.kf.P[:2, :2].copy(),
            float(x[2]), float(x[3]), t.kf.P[2:, 2:].copy(), t.track_id,
            float(stamp - t.born), t.cameras, source="track",
        )

    def with_track_velocity(self, ob: Object3D, t: Track, rot_to_obj: np.ndarray) -> Object3D:
        """``ob`` with the velocity of track ``t`` rotated by ``rot_to_obj`` (2 x 2) into the
        object's frame (track id stays -1: detections are untracked)."""
        v = rot_to_obj @ t.velocity
        vc = rot_to_obj @ t.kf.P[2:, 2:] @ rot_to_obj.T
        return replace(ob, vx=float(v[0]), vy=float(v[1]), velocity_covariance=vc)
