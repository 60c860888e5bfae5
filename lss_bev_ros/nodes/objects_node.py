"""objects_node: per-camera 2D detections + the BEV grid + the rig -> tracked 3D objects.

Subscribes to ``/detections/<cam>`` (``lss_bev_ros/Detection2DArray`` from detector_node), the
BEV grid (``nav_msgs/OccupancyGrid``), ``/cameras/<cam>/camera_info`` (live intrinsics) and the
ego pose (``nav_msgs/Odometry`` map -> base_link on ``/odom`` and/or ``tf2_msgs/TFMessage`` on
``/tf``). Detection arrays are grouped by stamp (:class:`~lss_bev_ros.sync.StampSynchronizer`,
clocked by the stamps); complete sets wait in a short queue (``max_pending``; when it overflows the
oldest is dropped and counted) until their grid and pose are there (or ``input_wait_s``); a worker
thread takes them oldest first, pairs each with the grid nearest in stamp (within
``grid_tolerance_s``; without one the frame is lifted from geometry alone and ``grid_missing``
counted), interpolates the pose at the stamp (none: tracks in base_link, ``no_map_transform``
counted) and calls the ROS-free :class:`~lss_bev_ros.objects.pipeline.ObjectPipeline`. Outputs, all
stamped with the input stamp (the set's newest detection stamp):

* ``<output_prefix>/detected``: ``lss_bev_ros/DetectedObjects`` in base_link,
* ``<output_prefix>/tracked``: ``lss_bev_ros/TrackedObjects`` in map (or base_link),
* ``<output_prefix>/tracked_base_link``: the same tracks in base_link (for vehicle-frame
  consumers and the dashboard's BEV view),
* ``<output_prefix>/markers``: ``visualization_msgs/MarkerArray`` (boxes, ids, velocity arrows),
* ``<output_prefix>/timing``: ``lss_bev_ros/PipelineTiming``.

Message building lives in :mod:`lss_bev_ros.conversions.objects`. Bad input (unknown camera, NaN /
negative / outside-image boxes, a missing or stale grid, no map pose, a time jump back: tracks and
synchronisation restart) is counted on ``/diagnostics``; the node keeps publishing.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
from nav_msgs.msg import OccupancyGrid, Odometry
from rclpy.callback_groups import ReentrantCallbackGroup
from sensor_msgs.msg import CameraInfo
from visualization_msgs.msg import MarkerArray

from lss_bev_ros.calibration import (
    NUSCENES_CAMERAS,
    CalibrationError,
    RigCalibration,
    frame_id_for,
    load_rig_yaml,
)
from lss_bev_ros.conversions import ConversionError, GridSpec
from lss_bev_ros.conversions.grid_msg import occupancy_grid_to_probability
from lss_bev_ros.conversions.objects import (
    detected_objects_msg,
    detections_from_msg,
    new_uuid_prefix,
    object_markers,
    objects_in_base,
    pose2d_from_pose,
    tracked_objects_msg,
)
from lss_bev_ros.detection.gt import CLASS_NAMES
from lss_bev_ros.detection.types import Detections
from lss_bev_ros.fusion.poses import PoseBuffer
from lss_bev_ros.msg import DetectedObjects, Detection2DArray, PipelineTiming, TrackedObjects
from lss_bev_ros.nodes.common import (
    ParamSpec,
    PerceptionNode,
    run_node,
    sensor_qos,
    stamp_to_sec,
)
from lss_bev_ros.nodes.eval_node import wait_for_file
from lss_bev_ros.objects import MODES, ObjectPipeline, ObjectsConfig, ObjectsFrame, Pose2D
from lss_bev_ros.sync import StampSynchronizer, SyncedSet

POSE_SOURCES = ("odom", "tf", "odom_and_tf", "none")
"""Where the map -> base_link pose comes from (``none``: always track in base_link)."""

#: core issue keys that are facts about the data rather than errors (counted, no WARN)
_INFO_ISSUES = {"image_size_mismatch", "no_grid", "no_range"}

#: node parameters that are ObjectsConfig fields of the same name
_CONFIG_PARAMS = ("mode", "min_score", "time_jump_s", "max_range_m", "accel_sigma",
                  "confirm_hits", "max_coast_s", "bev_threshold", "overlap_iou")


def _topic(v: str) -> str | None:
    return None if v.startswith("/") else "must be an absolute topic (start with /)"


def _template(v: str) -> str | None:
    if not v.startswith("/"):
        return "must be an absolute topic (start with /)"
    if "{camera}" not in v:
        return "must contain '{camera}' (replaced by the camera frame id, e.g. cam_front)"
    return None


def _names(v: list[str]) -> str | None:
    if not v or any(not str(c) for c in v):
        return "need at least one name"
    if len(set(v)) != len(v):
        return "names must be unique"
    return None


def _class_names(v: list[str]) -> str | None:
    from lss_bev_ros.objects.classes import nuscenes_name

    err = _names(v)
    if err:
        return err
    try:
        for c in v:
            nuscenes_name(c)
    except ValueError as exc:
        return str(exc)
    return None


@dataclass(frozen=True)
class _Grid:
    stamp: float
    probability: np.ndarray  # nx x ny [ix, iy], 0..1
    known: np.ndarray  # nx x ny bool


class ObjectsNode(PerceptionNode):
    """Lifecycle node: detections + BEV grid + pose -> DetectedObjects / TrackedObjects."""

    PARAMS: tuple[ParamSpec, ...] = (
        ParamSpec("cameras", list(NUSCENES_CAMERAS), "camera names (topics use the lower-case "
                  "frame id)", read_only=True, validator=_names),
        ParamSpec("detections_topic_template", "/detections/{camera}", "Detection2DArray per "
                  "camera; {camera} = frame id", read_only=True, validator=_template),
        ParamSpec("camera_info_topic_template", "/cameras/{camera}/camera_info", "CameraInfo per "
                  "camera: live intrinsics replace the rig file's", read_only=True,
                  validator=_template),
        ParamSpec("use_camera_info", True, "take intrinsics (and image size) from camera_info",
                  read_only=True),
        ParamSpec("grid_topic", "/bev/occupancy", "BEV grid (OccupancyGrid, base_link)",
                  read_only=True, validator=_topic),
        ParamSpec("odom_topic", "/odom", "ego odometry (nav_msgs/Odometry map -> base_link)",
                  read_only=True, validator=_topic),
        ParamSpec("tf_topic", "/tf", "tf2_msgs/TFMessage with map -> base_link transforms",
                  read_only=True, validator=_topic),
        ParamSpec("pose_source", "odom", "map -> base_link pose from odom, tf, both, or none "
                  "(none: track in base_link)", read_only=True, choices=POSE_SOURCES),
        ParamSpec("map_frame", "map", "world frame of the tracks", read_only=True),
        ParamSpec("base_frame", "base_link", "vehicle frame (grid and detected objects)",
                  read_only=True),
        ParamSpec("output_prefix", "/objects", "outputs: <prefix>/detected, <prefix>/tracked, "
                  "<prefix>/tracked_base_link, <prefix>/markers, <prefix>/timing",
                  read_only=True, validator=_topic),
        ParamSpec("rig_file", "", "rig calibration YAML (camera intrinsics + extrinsics); "
                  "required", read_only=True),
        ParamSpec("rig_wait_s", 10.0, "on configure, wait this long for rig_file to appear",
                  read_only=True, min=0.0, max=600.0),
        ParamSpec("class_names", list(CLASS_NAMES), "detector classes in class-index order "
                  "(Detection2D.label is matched by name first)", read_only=True,
                  validator=_class_names),
        ParamSpec("grid_resolution", 0.5, "expected grid cell size (m)", read_only=True,
                  min=0.01, max=10.0),
        ParamSpec("grid_size", 200, "expected grid cells along x and y", read_only=True, min=1,
                  max=10000),
        ParamSpec("grid_origin", [-50.0, -50.0], "expected grid origin (x, y) in metres",
                  read_only=True, validator=lambda v: None if len(v) == 2 else "needs [x, y]"),
        ParamSpec("mode", "fused", "evidence: " + "; ".join(f"{k}: {v}" for k, v in
                                                             MODES.items()), choices=tuple(MODES)),
        ParamSpec("min_score", ObjectsConfig.min_score, "detections below this score are "
                  "ignored", min=0.0, max=1.0),
        ParamSpec("max_range_m", ObjectsConfig.max_range_m, "objects farther from their camera "
                  "are dropped (m)", min=1.0, max=500.0),
        ParamSpec("bev_threshold", ObjectsConfig.bev_threshold, "BEV probability of blob cells",
                  min=0.01, max=0.99),
        ParamSpec("accel_sigma", ObjectsConfig.accel_sigma, "tracker: white-noise acceleration "
                  "std (m/s^2)", min=0.01, max=100.0),
        ParamSpec("confirm_hits", ObjectsConfig.confirm_hits, "tracker: updates before a track "
                  "is published", min=1, max=100),
        ParamSpec("max_coast_s", ObjectsConfig.max_coast_s, "tracker: a track survives this "
                  "long unseen (s)", min=0.01, max=60.0),
        ParamSpec("overlap_iou", ObjectsConfig.overlap_iou, "tracker: two tracks of one class "
                  "group whose footprints overlap with a larger IoU are one object; the one with "
                  "fewer updates is dropped (1: never)", min=0.0, max=1.0),
        ParamSpec("time_jump_s", 5.0, "a stamp this much older than the newest restarts "
                  "synchronisation and tracking (looped bag), s", min=0.01, max=1e6),
        ParamSpec("sync_tolerance_s", 0.05, "max stamp spread of one camera set (s)", min=0.0,
                  max=10.0),
        ParamSpec("missing_timeout_s", 1.0, "a camera is missing when the others' stamps moved "
                  "on this long without it (s, stamp time)", min=0.01, max=60.0),
        ParamSpec("grid_tolerance_s", 0.1, "max stamp difference detections <-> grid (s)",
                  min=0.0, max=5.0),
        ParamSpec("grid_stale_s", 1.0, "a grid stamped this much before the newest processed "
                  "frame arrives too late: dropped, counted as grid_stale (s)", min=0.01,
                  max=600.0),
        ParamSpec("input_wait_s", 0.5, "wait this long (wall time) for the grid and pose of a "
                  "frame before processing it without them (s)", min=0.0, max=60.0),
        ParamSpec("max_pending", 4, "complete detection sets kept waiting for their grid; "
                  "more drop the oldest (1: latest wins)", min=1, max=100),
        ParamSpec("pose_tolerance_s", 0.2, "a stamp at most this far outside the odometry "
                  "takes the nearest pose (s); between poses it is interpolated", min=0.0,
                  max=10.0),
        ParamSpec("stationary_speed_mps", 0.5, "tracks slower than this are is_stationary",
                  min=0.0, max=100.0),
        ParamSpec("publish_markers", True, "publish RViz markers"),
        ParamSpec("markers_show_detected", True, "markers also show this frame's detections"),
        ParamSpec("marker_lifetime_s", 1.0, "marker lifetime (s, 0 = forever)", min=0.0,
                  max=3600.0),
        ParamSpec("marker_arrow_horizon_s", 1.0, "velocity arrows show this many seconds of "
                  "motion", min=0.0, max=60.0),
        ParamSpec("qos_depth", 10, "input queue depth (keep-last)", min=1, max=100,
                  read_only=True),
        ParamSpec("qos_reliable", False, "reliable (instead of best-effort) detection "
                  "subscriptions", read_only=True),
    )

    def __init__(self, **kwargs) -> None:
        super().__init__("objects_node", self.PARAMS, **kwargs)
        self.cameras: tuple[str, ...] = tuple(self.p("cameras"))
        self._lock = threading.Lock()  # sync, grids, poses, rig
        self._inputs = threading.Condition(self._lock)  # notified on grid / pose arrival
        self._pipe_lock = threading.Lock()  # ObjectPipeline (not thread-safe)
        self.rig: RigCalibration | None = None
        self._rig_dirty = False
        self.pipeline: ObjectPipeline | None = None
        self.sync: StampSynchronizer | None = None
        # complete sets waiting for their grid / pose, oldest first: (set, monotonic arrival)
        self.pending: deque[tuple[SyncedSet, float]] = deque()
        self.frames_dropped = 0
        self.grids: deque[_Grid] = deque(maxlen=16)
        self.poses = PoseBuffer()
        self._pubs: dict[str, Any] = {}
        self._subs: list = []
        self._worker: threading.Thread | None = None
        self._stop = threading.Event()
        self._uuid_prefix = new_uuid_prefix()
        self._last_frame_stamp = -math.inf
        self._tracked_frame: str | None = None
        self._reset_pending = False
        self.frames_processed = 0
        self.last_frame: ObjectsFrame | None = None

    # -- configuration ------------------------------------------------------------------------
    def _config(self) -> ObjectsConfig:
        names = {f.name for f in fields(ObjectsConfig)}
        vals = {k: self.p(k) for k in _CONFIG_PARAMS if k in names}
        return replace(ObjectsConfig(), **vals)

    def _grid_spec(self) -> GridSpec:
        o = self.p("grid_origin")
        n = int(self.p("grid_size"))
        return GridSpec(float(o[0]), float(o[1]), float(self.p("grid_resolution")), n, n,
                        str(self.p("base_frame")))

    def _make_sync(self) -> StampSynchronizer:
        return StampSynchronizer(
            self.cameras, tolerance=float(self.p("sync_tolerance_s")),
            missing_timeout=float(self.p("missing_timeout_s")), allow_partial=True,
            time_jump=float(self.p("time_jump_s")))

    def on_configure_impl(self) -> None:
        rig_file = str(self.p("rig_file"))
        if not rig_file:
            raise RuntimeError("rig_file is required (camera intrinsics and extrinsics)")
        wait_for_file(rig_file, float(self.p("rig_wait_s")))
        try:
            rig = load_rig_yaml(rig_file)
            rig = rig.subset([c for c in self.cameras if c in rig.names])
        except CalibrationError as exc:
            raise RuntimeError(f"cannot load rig_file: {exc}") from exc
        absent = [c for c in self.cameras if c not in rig.names]
        if absent:
            raise RuntimeError(f"rig_file {rig_file} has no calibration for {absent}")
        self.rig = rig
        self.pipeline = ObjectPipeline(rig, self._grid_spec(), list(self.p("class_names")),
                                       self._config())
        prefix = str(self.p("output_prefix")).rstrip("/")
        self._pubs = {
            "detected": self.create_publisher(DetectedObjects, f"{prefix}/detected", 10),
            "tracked": self.create_publisher(TrackedObjects, f"{prefix}/tracked", 10),
            "tracked_base": self.create_publisher(TrackedObjects, f"{prefix}/tracked_base_link",
                                                  10),
            "markers": self.create_publisher(MarkerArray, f"{prefix}/markers", 10),
            "timing": self.create_publisher(PipelineTiming, f"{prefix}/timing", 10),
        }
        self.diag.set("mode", self.p("mode"))
        self.diag.set("pose_source", self.p("pose_source"))

    def on_activate_impl(self) -> None:
        group = ReentrantCallbackGroup()
        qos = sensor_qos(depth=int(self.p("qos_depth")), reliable=bool(self.p("qos_reliable")))
        tmpl = str(self.p("detections_topic_template"))
        info_tmpl = str(self.p("camera_info_topic_template"))
        for cam in self.cameras:
            self._subs.append(self.create_subscription(
                Detection2DArray, tmpl.format(camera=frame_id_for(cam)),
                lambda m, c=cam: self._on_detections(c, m), qos, callback_group=group))
            if self.p("use_camera_info"):
                self._subs.append(self.create_subscription(
                    CameraInfo, info_tmpl.format(camera=frame_id_for(cam)),
                    lambda m, c=cam: self._on_info(c, m), 10, callback_group=group))
        self._subs.append(self.create_subscription(
            OccupancyGrid, self.p("grid_topic"), self._on_grid, 10, callback_group=group))
        src = str(self.p("pose_source"))
        if src in ("odom", "odom_and_tf"):
            self._subs.append(self.create_subscription(
                Odometry, self.p("odom_topic"), self._on_odom, 50, callback_group=group))
        if src in ("tf", "odom_and_tf"):
            from tf2_msgs.msg import TFMessage

            self._subs.append(self.create_subscription(
                TFMessage, self.p("tf_topic"), self._on_tf, 50, callback_group=group))
        with self._lock:
            self.sync = self._make_sync()
            self.grids.clear()
            self.poses = PoseBuffer(tolerance_s=float(self.p("pose_tolerance_s")))
        self._stop.clear()
        self._worker = threading.Thread(target=self._work, name="objects_worker", daemon=True)
        self._worker.start()

    def on_deactivate_impl(self) -> None:
        self._stop.set()
        with self._inputs:
            self._inputs.notify_all()
        if self._worker is not None:
            self._worker.join(timeout=10.0)
            self._worker = None
        for s in self._subs:
            self.destroy_subscription(s)
        self._subs = []

    def on_cleanup_impl(self) -> None:
        for pub in self._pubs.values():
            self.destroy_publisher(pub)
        self._pubs = {}
        self.pipeline = None
        self.sync = None

    def on_params_applied(self, changed: dict[str, Any]) -> None:
        if self.pipeline is not None and changed.keys() & set(_CONFIG_PARAMS):
            cfg = replace(self._config(), **{k: v for k, v in changed.items()
                                             if k in _CONFIG_PARAMS})
            with self._pipe_lock:  # a new config restarts the tracks
                self.pipeline = ObjectPipeline(self.pipeline.rig, self._grid_spec(),
                                               list(self.p("class_names")), cfg)
                self._uuid_prefix = new_uuid_prefix()
            self.diag.set("mode", cfg.mode)
        if self.sync is not None and changed.keys() & {"sync_tolerance_s", "missing_timeout_s",
                                                       "time_jump_s"}:
            with self._lock:
                self.sync = self._make_sync()

    # -- input --------------------------------------------------------------------------------
    def _on_detections(self, cam: str, msg: Detection2DArray) -> None:
        if not self.active:
            return
        if msg.camera_name and msg.camera_name != cam:
            self.diag.error("unknown_camera", (
                f"Detection2DArray of camera {msg.camera_name!r} on the topic of {cam}; known "
                f"cameras {list(self.cameras)}: dropped"))
            return
        self.diag.count("detection_arrays")
        stamp = stamp_to_sec(msg.header.stamp)
        with self._lock:
            sync = self.sync
            if sync is None:
                return
            out = sync.add_stamped(cam, stamp, msg)
            events = sync.pop_events()
            if any(ev.kind == "time_jump" for ev in events):
                self._reset_pending = True  # the worker restarts the tracks
                self._last_frame_stamp = -math.inf
                jump = float(self.p("time_jump_s"))
                self.grids = deque((g for g in self.grids if g.stamp <= stamp + jump),
                                   maxlen=self.grids.maxlen)  # the old loop's grids go
                self.pending = deque(p for p in self.pending if p[0].stamp <= stamp + jump)
        for ev in events:
            if ev.kind == "camera_back":
                self.diag.count(ev.kind)
            else:  # time_jump, out_of_order, camera_late / offset / missing / restarted
                self.diag.error(ev.kind, ev.message + (
                    "; tracks restart" if ev.kind == "time_jump" else ""))
        if out is not None:
            if out.missing:
                self.diag.count("partial_sets")
                self.diag.set("missing_cameras", ",".join(out.missing))
            self._enqueue(out)

    def _on_info(self, cam: str, msg: CameraInfo) -> None:
        k = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
        if not np.all(np.isfinite(k)) or k[0, 0] <= 0 or k[1, 1] <= 0 or msg.width <= 0 \
                or msg.height <= 0:
            self.diag.error("bad_camera_info", f"{cam}: camera_info has no valid intrinsics")
            return
        with self._lock:
            if self.rig is None:
                return
            old = self.rig.camera(cam)
            if (old.width, old.height) == (msg.width, msg.height) and np.allclose(
                    old.intrinsics, k, rtol=1e-6, atol=1e-6):
                return
            try:
                self.rig = self.rig.replace_camera(old.with_intrinsics(k, msg.width, msg.height))
            except CalibrationError as exc:
                self.diag.error("bad_camera_info", f"{cam}: {exc}")
                return
            self._rig_dirty = True
        self.diag.count("intrinsics_updates")

    def _on_grid(self, msg: OccupancyGrid) -> None:
        if not self.active:
            return
        g = self._grid_spec()
        try:
            prob, known = occupancy_grid_to_probability(msg, g)
        except ConversionError as exc:
            self.diag.error("grid_mismatch", str(exc))
            return
        stamp = stamp_to_sec(msg.header.stamp)
        with self._inputs:
            behind = self._last_frame_stamp - stamp
            # further behind than a time jump: a looped replay whose detections have not
            # jumped yet; kept (pairing is by stamp tolerance), not stale
            stale = float(self.p("grid_stale_s")) < behind <= float(self.p("time_jump_s"))
            if not stale:
                self.grids.append(_Grid(stamp, prob, known))
                self._inputs.notify_all()
        if stale:
            self.diag.error("grid_stale", (
                f"grid stamped {stamp:.3f} arrived {behind:.2f} s behind the newest processed "
                f"frame (> grid_stale_s {self.p('grid_stale_s')}): dropped"))
            return
        self.diag.count("grids")

    def _add_pose(self, pose: Pose2D) -> None:
        with self._inputs:
            newest = self.poses.newest_stamp
            if newest is not None and pose.stamp < newest - float(self.p("time_jump_s")):
                self.poses.clear()  # looped replay
            self.poses.add(pose.stamp, pose)
            self._inputs.notify_all()

    def _on_odom(self, msg: Odometry) -> None:
        if not self.active:
            return
        mf, bf = str(self.p("map_frame")), str(self.p("base_frame"))
        if msg.header.frame_id != mf or msg.child_frame_id != bf:
            self.diag.error("odom_frame", f"odometry {msg.header.frame_id!r} -> "
                            f"{msg.child_frame_id!r}, expected {mf!r} -> {bf!r}: ignored")
            return
        p = msg.pose.pose
        pose = pose2d_from_pose(p.position, p.orientation, stamp_to_sec(msg.header.stamp))
        if pose is None:
            self.diag.error("bad_odom", "odometry pose is not finite / not a rotation")
            return
        self._add_pose(pose)
        self.diag.count("poses")

    def _on_tf(self, msg: Any) -> None:
        if not self.active:
            return
        mf, bf = str(self.p("map_frame")), str(self.p("base_frame"))
        for tr in msg.transforms:
            if tr.header.frame_id.lstrip("/") != mf or tr.child_frame_id.lstrip("/") != bf:
                continue
            t = tr.transform
            pose = pose2d_from_pose(t.translation, t.rotation, stamp_to_sec(tr.header.stamp))
            if pose is None:
                self.diag.error("bad_tf", f"{mf} -> {bf} transform is not finite")
                continue
            self._add_pose(pose)
            self.diag.count("poses")

    # -- worker -------------------------------------------------------------------------------
    def _enqueue(self, synced: SyncedSet) -> None:
        """A complete set waits (at most ``max_pending`` of them; the oldest goes first)."""
        dropped = 0
        with self._inputs:
            self.pending.append((synced, time.monotonic()))
            while len(self.pending) > int(self.p("max_pending")):
                self.pending.popleft()
                dropped += 1
            self.frames_dropped += dropped
            self._inputs.notify_all()
        if dropped:
            self.diag.count("frames_dropped", dropped)

    def _next_ready(self) -> tuple[SyncedSet, float] | None:
        """The oldest pending set once its grid and pose are here, can no longer come, or it
        waited ``input_wait_s`` (lock held)."""
        if not self.pending:
            return None
        synced, t_in = self.pending[0]
        if self._inputs_ready(synced.stamp) or \
                time.monotonic() >= t_in + float(self.p("input_wait_s")):
            return self.pending.popleft()
        return None

    def _work(self) -> None:
        while not self._stop.is_set():
            with self._inputs:
                item = self._next_ready()
                if item is None:
                    self._inputs.wait(0.05)
                    continue
            try:
                self._process(*item)
            except Exception as exc:  # keep the node alive whatever one frame does
                self.diag.error("processing", f"{type(exc).__name__}: {exc}")

    def _inputs_ready(self, stamp: float) -> bool:
        """Grid and pose for ``stamp`` are here, or can no longer come (caller holds lock)."""
        tol = float(self.p("grid_tolerance_s"))
        grid_done = any(abs(g.stamp - stamp) <= tol or g.stamp > stamp + tol
                        for g in self.grids)
        if self.p("pose_source") == "none":
            return grid_done
        # a pose within pose_tolerance_s is used as it is (odometry follows the LiDAR sweep, up
        # to ~50 ms off the cameras): waiting for the next one would add a frame period
        newest = self.poses.newest_stamp
        pose_done = newest is not None and newest >= stamp - float(self.p("pose_tolerance_s"))
        return grid_done and pose_done

    def _gather(self, stamp: float) -> tuple[_Grid | None, Pose2D | None, str]:
        """(grid, pose, why no grid) for ``stamp``."""
        with self._inputs:
            tol = float(self.p("grid_tolerance_s"))
            best = min(self.grids, key=lambda g: abs(g.stamp - stamp), default=None)
            why = ""
            if best is None:
                why = "no grid received yet"
            elif abs(best.stamp - stamp) > tol:
                why = (f"nearest grid is {best.stamp - stamp:+.3f} s from the frame "
                       f"(> grid_tolerance_s {tol})")
                best = None
            found = self.poses.lookup(stamp)
            pose = (None if self.p("pose_source") == "none" or found.pose is None
                    else Pose2D(found.pose.x, found.pose.y, found.pose.yaw, stamp))
            newest_pose = self.poses.newest_stamp
            self._last_frame_stamp = max(self._last_frame_stamp, stamp)
            rig = self.rig if self._rig_dirty else None
            self._rig_dirty = False
        if self.p("pose_source") != "none" and pose is None:
            self.diag.error("no_map_transform", (
                f"no {self.p('map_frame')} -> {self.p('base_frame')} pose at {stamp:.3f} "
                f"({found.reason}; newest {newest_pose}; tolerance "
                f"{self.p('pose_tolerance_s')} s): tracking in {self.p('base_frame')}"))
        if rig is not None and self.pipeline is not None:
            with self._pipe_lock:
                self.pipeline.set_rig(rig)
        return best, pose, why

    def _process(self, synced: SyncedSet, t_in: float) -> None:
        """One synchronised set of detection arrays (completed at monotonic ``t_in``)."""
        t0 = time.perf_counter()
        stamp = synced.stamp
        grid, pose, why = self._gather(stamp)
        if grid is None:
            self.diag.error("grid_missing", f"frame {stamp:.3f}: {why}; geometry only")
        t1 = time.perf_counter()
        names = list(self.p("class_names"))
        dets: dict[str, Detections] = {}
        ref_msg = None
        for cam, msg in synced.items.items():
            d, unknown = detections_from_msg(msg, names)
            if unknown:
                self.diag.error("unknown_class", f"{cam}: {unknown} detections of classes not "
                                f"in {names}: dropped")
            dets[cam] = d
            if ref_msg is None or stamp_to_sec(msg.header.stamp) > stamp_to_sec(
                    ref_msg.header.stamp):
                ref_msg = msg
        with self._pipe_lock:
            pipe = self.pipeline
            if pipe is None:
                return
            frame_name = str(self.p("map_frame")) if pose is not None else str(
                self.p("base_frame"))
            if self._reset_pending or (self._tracked_frame not in (None, frame_name)):
                if not self._reset_pending:
                    self.diag.error("tracking_frame_changed", (
                        f"tracking frame {self._tracked_frame} -> {frame_name}: tracks "
                        "restarted"))
                pipe.reset()
                self._uuid_prefix = new_uuid_prefix()
                self._reset_pending = False
            self._tracked_frame = frame_name
            t_step = time.perf_counter()
            frame = pipe.step(stamp, dets, grid.probability if grid else None,
                              grid.known if grid else None, pose)
            prefix = self._uuid_prefix
        t2 = time.perf_counter()
        for key, n in frame.issues.items():
            if key == "time_jump":  # the node restarted the tracks already (counted there)
                continue
            if key in _INFO_ISSUES:
                self.diag.count(key, n)
            else:
                self.diag.count(key, n - 1)
                self.diag.error(key, f"frame {stamp:.3f}: {n} rejected ({key})")
        self._publish(frame, ref_msg.header.stamp, prefix, pose)
        t3 = time.perf_counter()
        self.frames_processed += 1
        self.last_frame = frame
        # the wait for the grid / pose before this is in node_latency_ms, not in the stages
        stages = {"pair_inputs": (t1 - t0) * 1e3, "convert_in": (t_step - t1) * 1e3}
        stages.update({k: float(v) for k, v in frame.stage_ms.items() if k != "total"})
        stages["publish"] = (t3 - t2) * 1e3
        pub = self._pubs.get("timing")
        if pub is not None:
            pub.publish(self.timing_msg(
                ref_msg.header.stamp, stages, (t3 - t0) * 1e3, self.stamp_latency_ms(stamp),
                f"objects({self.p('mode')})", frame_id=frame.tracked_frame,
                processed=self.frames_processed, dropped=self.frames_dropped,
                node_latency_ms=(time.monotonic() - t_in) * 1e3))
        self.diag.count("frames_processed")
        self.diag.set("tracked_frame", frame.tracked_frame)
        self.diag.set("detected", len(frame.detected))
        self.diag.set("tracked", len(frame.tracked))
        self.diag.set("objects_ms", f"{frame.stage_ms.get('total', 0.0):.2f}")

    def _publish(self, frame: ObjectsFrame, stamp: Any, uuid_prefix: bytes,
                 pose: Pose2D | None) -> None:
        base = str(self.p("base_frame"))
        stat = float(self.p("stationary_speed_mps"))
        pubs = self._pubs
        if "detected" in pubs:
            pubs["detected"].publish(detected_objects_msg(frame.detected, stamp, base))
        if "tracked" in pubs:
            pubs["tracked"].publish(tracked_objects_msg(frame.tracked, stamp, frame.tracked_frame,
                                                        uuid_prefix, stat))
        if "tracked_base" in pubs:
            local = (objects_in_base(frame.tracked, pose) if pose is not None
                     and frame.tracked_frame != base else frame.tracked)
            pubs["tracked_base"].publish(tracked_objects_msg(local, stamp, base, uuid_prefix,
                                                             stat))
        if self.p("publish_markers") and "markers" in pubs:
            pubs["markers"].publish(object_markers(
                frame.tracked, frame.tracked_frame, frame.detected, base, stamp,
                show_detected=bool(self.p("markers_show_detected")),
                lifetime_s=float(self.p("marker_lifetime_s")),
                arrow_horizon_s=float(self.p("marker_arrow_horizon_s"))))


def main(args: list[str] | None = None) -> int:
    """``ros2 run lss_bev_ros objects_node``."""
    return run_node(ObjectsNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
