"""fusion_node: ego-motion-compensated temporal fusion of the BEV occupancy grid.

Subscribes to the single-frame ``nav_msgs/OccupancyGrid`` (``/bev/occupancy``) and the ego pose
(``nav_msgs/Odometry`` on ``/odom``, or ``map -> base_link`` on ``/tf``) and publishes two grids,
0..100, -1 unknown, stamp = the input grid's stamp (the newest input):

* ``/bev/occupancy_fused``: same geometry and frame as the input (``base_link``);
* ``/bev/occupancy_fused_map`` (``fused_map_topic``, empty: off): the fused state itself in
  ``map_frame``, a map-aligned window around the ego (288 x 288 cells for the 200 x 200 input)
  whose origin moves by whole cells, so its cells are fixed in the world and nothing is
  resampled after fusion (for planners that integrate in ``map`` / ``odom``; not published for
  single-frame fallbacks).

The logic, its update rule and the rules for bad input are
:mod:`lss_bev_ros.fusion.grid_fusion` (ROS-free); this node converts messages, looks the pose
up at the grid's stamp (:class:`~lss_bev_ros.fusion.PoseBuffer`, waiting up to ``pose_wait_s``
for a pose at or after the grid stamp, then taking the nearest within ``pose_tolerance_s``) and
counts everything in ``/diagnostics``: ``grids``, ``published``, ``published_map``, ``fused``,
``no_pose``, ``bad_pose``, ``pose_jumps``, ``time_resets``, ``out_of_order``, ``bad_grid``,
``grid_geometry_changed``, ``poses``, ``pose_time_jumps``, ``pose_frame_mismatch``,
``track_sets``, ``objects_frame_mismatch``, ``bad_objects``, ``stale_objects``,
``objects_moved``.

Object motion (``objects_topic``, default ``/objects/tracked``; empty: off): the fusion also
takes the objects node's ``lss_bev_ros/TrackedObjects`` in ``map_frame``. For a grid at stamp
``t`` it uses the newest track set stamped strictly before ``t`` (and not older than
``max_track_age_s``): the objects node publishes the tracks of grid ``t`` only after it has
read grid ``t``, so this is the set the tracker had one frame earlier, the same set the offline
evaluation passes, whatever the arrival order. Each track is extrapolated by its velocity to
the stamps the fusion needs (:mod:`lss_bev_ros.fusion.object_motion`). Without a usable set
(none received yet, or the newest too old) the grid is fused with ego motion only and the narrow
``history_band_logodds`` everywhere; with one, ``static_history_band_logodds`` and
``static_flip_margin_logodds`` apply outside the moving track boxes
(:class:`~lss_bev_ros.fusion.FusionConfig`).
"""

from __future__ import annotations

import array
import math
import threading
import time
from types import SimpleNamespace
from typing import Any

from nav_msgs.msg import OccupancyGrid, Odometry

from lss_bev_ros.conversions import GridSpec, occupancy_to_probability, probability_to_occupancy
from lss_bev_ros.conversions.grid_msg import fill_occupancy_grid
from lss_bev_ros.conversions.objects import object_from_tracked_msg
from lss_bev_ros.fusion import (
    FusionConfig,
    FusionStatus,
    GridFusion,
    MapWindow,
    ObjectMotion,
    Pose2D,
    PoseBuffer,
    TrackSetBuffer,
)
from lss_bev_ros.msg import TrackedObjects
from lss_bev_ros.nodes.common import ParamSpec, PerceptionNode, run_node, stamp_to_sec

try:  # /tf needs tf2_msgs (not on PyPI; built by tools/bootstrap.sh)
    from tf2_msgs.msg import TFMessage  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - depends on the install
    TFMessage = None

POSE_SOURCES = ("odom", "tf")

#: fusion parameters: node parameter name == FusionConfig field name
_FUSION_FIELDS = ("max_logodds", "max_step_logodds", "history_band_logodds",
                  "flip_margin_logodds", "decay_time_s", "unknown_after_s", "max_gap_s",
                  "max_reorder_s", "max_jump_m", "max_jump_rad",
                  "object_min_speed_mps", "object_min_speed_sigmas", "object_margin_m",
                  "static_history_band_logodds", "static_flip_margin_logodds")

#: FusionStatus -> diagnostics counter (errors are logged and turn the status WARN)
_STATUS_KEYS = {
    FusionStatus.FUSED: ("fused", False),
    FusionStatus.FIRST: ("first", False),
    FusionStatus.RESET_TIME: ("time_resets", False),
    FusionStatus.RESET_POSE_JUMP: ("pose_jumps", True),
    FusionStatus.NO_POSE: ("no_pose", True),
    FusionStatus.BAD_POSE: ("bad_pose", True),
}


def _topic(v: str) -> str | None:
    return None if v.startswith("/") else "must be an absolute topic (start with /)"


def _optional_topic(v: str) -> str | None:
    return None if v == "" else _topic(v)


class FusionNode(PerceptionNode):
    """Lifecycle node: ``/bev/occupancy`` + ego pose -> ``/bev/occupancy_fused``."""

    PARAMS: tuple[ParamSpec, ...] = (
        ParamSpec("grid_topic", "/bev/occupancy", "single-frame BEV grid (OccupancyGrid)",
                  read_only=True, validator=_topic),
        ParamSpec("fused_topic", "/bev/occupancy_fused", "fused grid output (OccupancyGrid)",
                  read_only=True, validator=_topic),
        ParamSpec("fused_map_topic", "/bev/occupancy_fused_map", "the fused state itself "
                  "in map_frame (OccupancyGrid): a map-aligned rolling window around the ego "
                  "that moves by whole cells, nothing resampled after fusion, for planners "
                  "that integrate in map / odom (empty: off)", read_only=True,
                  validator=_optional_topic),
        ParamSpec("pose_source", "odom", "ego pose map -> base_link from Odometry on "
                  "odom_topic, or from the map_frame -> base_frame edge on /tf",
                  read_only=True, choices=POSE_SOURCES),
        ParamSpec("odom_topic", "/odom", "ego Odometry (pose of child_frame_id in "
                  "header.frame_id)", read_only=True, validator=_topic),
        ParamSpec("map_frame", "map", "fixed frame of the poses (Odometry header.frame_id)",
                  read_only=True),
        ParamSpec("base_frame", "base_link", "ego frame (Odometry child_frame_id)",
                  read_only=True),
        ParamSpec("pose_tolerance_s", 0.1, "a grid stamp up to this far from the nearest pose "
                  "takes that pose (no extrapolation beyond) (s)", min=0.0, max=5.0),
        ParamSpec("pose_wait_s", 0.5, "wait this long (wall time) for a pose newer than a "
                  "grid before falling back to the single-frame grid (s)", min=0.0, max=10.0),
        ParamSpec("max_logodds", 2.0, "bound of the fused log-odds (2: p in 0.12..0.88)",
                  min=0.1, max=20.0),
        ParamSpec("max_step_logodds", 2.5, "bound of one frame's log-odds contribution",
                  min=0.05, max=20.0),
        ParamSpec("history_band_logodds", 0.7, "the history moves a frame's log-odds by at "
                  "most this: steadies uncertain cells, never overrules a confident frame",
                  min=0.01, max=20.0),
        ParamSpec("flip_margin_logodds", FusionConfig.flip_margin_logodds, "hysteresis: a "
                  "cell switches between occupied and free only to |log-odds| >= this, else it "
                  "keeps its state at p 0.525 / 0.475 (0: off; <= max_logodds)",
                  min=0.0, max=20.0),
        ParamSpec("decay_time_s", 2.0, "time constant of the fade toward unknown (s)",
                  min=0.01, max=600.0),
        ParamSpec("unknown_after_s", 2.0, "a cell no camera saw for longer is unknown (s)",
                  min=0.01, max=600.0),
        ParamSpec("max_gap_s", 3.0, "a grid this much newer than the last resets the "
                  "history (s)", min=0.01, max=3600.0),
        ParamSpec("max_reorder_s", 1.0, "a grid older than the last by up to this is skipped, "
                  "by more (looped bag) resets (s)", min=0.0, max=3600.0),
        ParamSpec("max_jump_m", 10.0, "ego translation between two fused grids that counts "
                  "as a pose jump (reset) (m)", min=0.01, max=1000.0),
        ParamSpec("max_jump_rad", 0.8, "ego rotation between two fused grids that counts as "
                  "a pose jump (reset) (rad)", min=0.001, max=math.pi),
        ParamSpec("objects_topic", "/objects/tracked", "TrackedObjects in map_frame whose "
                  "motion moves their history (empty: ego motion only)", read_only=True,
                  validator=_optional_topic),
        ParamSpec("max_track_age_s", 1.0, "a track set older than the grid by more than this "
                  "is not used (s)", min=0.0, max=10.0),
        ParamSpec("object_min_speed_mps", FusionConfig.object_min_speed_mps, "tracks at least "
                  "this fast move their history (m/s; slower ones are parked-car jitter)",
                  min=0.01, max=100.0),
        ParamSpec("object_min_speed_sigmas", FusionConfig.object_min_speed_sigmas, "a moving "
                  "track's speed must also be at least this many standard deviations of it "
                  "(twist covariance; unknown covariance: speed alone; 0: off)",
                  min=0.0, max=100.0),
        ParamSpec("object_margin_m", 0.5, "track boxes are enlarged by this on every side (m)",
                  min=0.0, max=10.0),
        ParamSpec("static_history_band_logodds", FusionConfig.static_history_band_logodds,
                  "with a track set: history band of the cells outside every moving track box "
                  "(0: history_band_logodds everywhere)", min=0.0, max=20.0),
        ParamSpec("static_flip_margin_logodds", FusionConfig.static_flip_margin_logodds,
                  "with a track set: hysteresis margin of the cells outside every moving track "
                  "box (0: flip_margin_logodds everywhere; <= max_logodds)", min=0.0, max=20.0),
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("fusion_node", self.PARAMS, **kwargs)
        self._lock = threading.Lock()
        self._pub: Any = None
        self._map_pub: Any = None
        self._subs: list[Any] = []
        self._timer: Any = None
        self.fusion: GridFusion | None = None
        self._grid: GridSpec | None = None
        self.poses = PoseBuffer()
        self._pending: tuple[OccupancyGrid, float] | None = None  # (grid, monotonic arrival)
        self._tracks = TrackSetBuffer()  # track sets in map (max_track_age_s, max_reorder_s)

    # -- lifecycle --------------------------------------------------------------------------
    def on_configure_impl(self) -> None:
        self._pub = self.create_publisher(OccupancyGrid, self.p("fused_topic"), 10)
        if self.p("fused_map_topic"):
            self._map_pub = self.create_publisher(OccupancyGrid, self.p("fused_map_topic"), 10)
        self.diag.set("pose_source", self.p("pose_source"))

    def on_activate_impl(self) -> None:
        self.poses = PoseBuffer(tolerance_s=float(self.p("pose_tolerance_s")))
        self._subs = [self.create_subscription(OccupancyGrid, self.p("grid_topic"),
                                               self._on_grid, 10)]
        if self.p("pose_source") == "odom":
            self._subs.append(self.create_subscription(Odometry, self.p("odom_topic"),
                                                       self._on_odom, 50))
        elif TFMessage is None:
            raise RuntimeError("pose_source 'tf' needs tf2_msgs, which is not importable")
        else:
            self._subs.append(self.create_subscription(TFMessage, "/tf", self._on_tf, 50))
        if self.p("objects_topic"):
            self._subs.append(self.create_subscription(TrackedObjects, self.p("objects_topic"),
                                                       self._on_tracks, 10))
        self._timer = self.create_timer(0.05, self._flush_pending)

    def on_deactivate_impl(self) -> None:
        for s in self._subs:
            self.destroy_subscription(s)
        self._subs = []
        if self._timer is not None:
            self.destroy_timer(self._timer)
            self._timer = None
        with self._lock:
            self._pending = None
            self.fusion = None
            self._grid = None
            self._tracks.clear()

    def on_cleanup_impl(self) -> None:
        if self._pub is not None:
            self.destroy_publisher(self._pub)
            self._pub = None
        if self._map_pub is not None:
            self.destroy_publisher(self._map_pub)
            self._map_pub = None

    def on_params_applied(self, changed: dict[str, Any]) -> None:
        if "pose_tolerance_s" in changed:
            self.poses.tolerance_s = float(self.p("pose_tolerance_s"))
        if set(changed) & set(_FUSION_FIELDS):
            with self._lock:
                if self._grid is not None:
                    self.fusion = GridFusion(self._fusion_config(self._grid))
            self.get_logger().info(f"fusion restarted after parameter change {sorted(changed)}")

    def check_param_combination(self, values: dict[str, Any]) -> str | None:
        """The rules between fusion parameters are FusionConfig's own: build one from
        ``values`` (the grid does not matter for them)."""
        try:
            FusionConfig(grid=GridSpec(), **{k: float(values[k]) for k in _FUSION_FIELDS
                                             if k in values})
        except ValueError as exc:
            return str(exc)
        return None

    def _fusion_config(self, grid: GridSpec) -> FusionConfig:
        return FusionConfig(grid=grid, **{k: float(self.p(k)) for k in _FUSION_FIELDS})

    # -- poses ------------------------------------------------------------------------------
    def _add_pose(self, stamp: float, pose: Pose2D) -> None:
        self.diag.count("poses")
        with self._lock:
            newest = self.poses.newest_stamp
            if newest is not None and stamp < newest - float(self.p("max_reorder_s")):
                self.diag.count("pose_time_jumps")  # looped bag: forget the old timeline
                self.poses.clear()
            self.poses.add(stamp, pose)
            waiting = self._pending is not None
        if waiting:
            self._flush_pending()  # publishes the waiting grid once its pose is there

    def _on_odom(self, msg: Odometry) -> None:
        if not self.active:
            return
        if (msg.header.frame_id.lstrip("/") != self.p("map_frame")
                or msg.child_frame_id.lstrip("/") != self.p("base_frame")):
            self.diag.error("pose_frame_mismatch", (
                f"Odometry {msg.header.frame_id!r} -> {msg.child_frame_id!r}, expected "
                f"{self.p('map_frame')!r} -> {self.p('base_frame')!r}"))
            return
        p, q = msg.pose.pose.position, msg.pose.pose.orientation
        self._add_pose(stamp_to_sec(msg.header.stamp),
                       Pose2D.from_quaternion(p.x, p.y, q.x, q.y, q.z, q.w))

    def _on_tf(self, msg: Any) -> None:
        if not self.active:
            return
        for tf in msg.transforms:
            if (tf.header.frame_id.lstrip("/") == self.p("map_frame")
                    and tf.child_frame_id.lstrip("/") == self.p("base_frame")):
                t, q = tf.transform.translation, tf.transform.rotation
                self._add_pose(stamp_to_sec(tf.header.stamp),
                               Pose2D.from_quaternion(t.x, t.y, q.x, q.y, q.z, q.w))

    # -- tracked objects --------------------------------------------------------------------
    def _on_tracks(self, msg: Any) -> None:
        if not self.active:
            return
        self.diag.count("track_sets")
        if msg.header.frame_id.lstrip("/") != self.p("map_frame"):
            self.diag.error("objects_frame_mismatch", (
                f"TrackedObjects in {msg.header.frame_id!r}, expected {self.p('map_frame')!r} "
                "(the objects node tracks in base_link without a pose): not used"))
            return
        stamp = stamp_to_sec(msg.header.stamp)
        objs: list[ObjectMotion] = []
        for m in msg.objects:
            # the offline evaluation's conversion too (it calls from_object on Object3D)
            o = ObjectMotion.from_object(SimpleNamespace(**object_from_tracked_msg(m)), stamp)
            if o.finite:
                objs.append(o)
            else:
                self.diag.error("bad_objects", f"track {int(m.id)}: non-finite state or "
                                "empty box: ignored")
        with self._lock:
            self._tracks.reorder_s = float(self.p("max_reorder_s"))
            self._tracks.add(stamp, objs)

    def _objects_for(self, stamp: float) -> list[ObjectMotion] | None:
        """Track set for a grid at ``stamp`` (call under the lock); None: no usable set."""
        if not len(self._tracks):
            return None
        self._tracks.max_age_s = float(self.p("max_track_age_s"))
        best = self._tracks.for_stamp(stamp)
        if best is None:
            self.diag.count("stale_objects")
            return None
        return best[1]

    # -- grids ------------------------------------------------------------------------------
    def _on_grid(self, msg: OccupancyGrid) -> None:
        if not self.active:
            return
        self.diag.count("grids")
        self._flush_pending(force=True)  # an older grid still waiting goes first
        with self._lock:
            wait = not self._pose_ready(stamp_to_sec(msg.header.stamp)) \
                and float(self.p("pose_wait_s")) > 0
            if wait:
                self._pending = (msg, time.monotonic())
        if not wait:
            self._process(msg)

    def _pose_ready(self, stamp: float) -> bool:
        """A pose at or after ``stamp`` has arrived (interpolation, not the last pose, is
        possible): otherwise the grid waits up to ``pose_wait_s`` for one."""
        newest = self.poses.newest_stamp
        return newest is not None and newest >= stamp - 1e-6

    def _flush_pending(self, force: bool = False) -> None:
        with self._lock:
            pending = self._pending
            if pending is None:
                return
            msg, arrived = pending
            ready = self._pose_ready(stamp_to_sec(msg.header.stamp))
            if not (ready or force or time.monotonic() - arrived >= float(self.p("pose_wait_s"))):
                return
            self._pending = None
        self._process(msg)

    def _geometry(self, msg: OccupancyGrid) -> GridSpec | None:
        info = msg.info
        o = info.origin.orientation
        if abs(o.x) + abs(o.y) + abs(o.z) > 1e-6:
            self.diag.error("bad_grid", "rotated grid origins are not supported")
            return None
        if not (info.width > 0 and info.height > 0 and math.isfinite(info.resolution)
                and info.resolution > 0):
            self.diag.error("bad_grid", f"grid {info.width} x {info.height} @ "
                            f"{info.resolution} m")
            return None
        return GridSpec(float(info.origin.position.x), float(info.origin.position.y),
                        float(info.resolution), int(info.width), int(info.height),
                        msg.header.frame_id)

    def _process(self, msg: OccupancyGrid) -> None:
        grid = self._geometry(msg)
        if grid is None:
            return
        try:
            prob, known = occupancy_to_probability(msg.data, grid.nx, grid.ny)
        except ValueError as exc:  # GridConversionError is a ValueError
            self.diag.error("bad_grid", str(exc))
            return
        stamp = stamp_to_sec(msg.header.stamp)
        with self._lock:
            if self._grid != grid:
                if self._grid is not None:
                    self.diag.error("grid_geometry_changed", f"grid changed to {grid}: restart")
                self._grid = grid
                self.fusion = GridFusion(self._fusion_config(grid))
            fusion = self.fusion
            assert fusion is not None
            pose = self.poses.lookup(stamp).pose
            objects = self._objects_for(stamp)
            moved = fusion.stats.objects_moved
            try:
                out = fusion.update(stamp, prob, known, pose, objects)
            except ValueError as exc:
                self.diag.error("bad_grid", str(exc))
                return
            moved = fusion.stats.objects_moved - moved
            window = (fusion.map_window() if out is not None and not out.status.single_frame
                      else None)
        if moved:
            self.diag.count("objects_moved", moved)
        if out is None:
            self.diag.error("out_of_order", f"grid stamp {stamp:.3f} s is not newer than the "
                            "last fused grid: skipped")
            return
        key, is_error = _STATUS_KEYS[out.status]
        if is_error:
            self.diag.error(key, {
                "no_pose": f"no pose at {stamp:.3f} s (newest pose "
                           f"{self.poses.newest_stamp}): single-frame grid published",
                "bad_pose": "non-finite pose: history reset, single-frame grid published",
                "pose_jumps": f"pose jumped more than {self.p('max_jump_m')} m / "
                              f"{self.p('max_jump_rad')} rad: history reset",
            }[key])
        else:
            self.diag.count(key)
        self.diag.set("last_status", str(out.status))
        if self._pub is None:
            return
        fused = OccupancyGrid()
        fused.header = msg.header  # stamp = the input's (exact), frame = the input's
        fused.info = msg.info
        fused.data = array.array("b", probability_to_occupancy(out.probability,
                                                               out.known).tobytes())
        self._pub.publish(fused)
        self.diag.count("published")
        if self._map_pub is not None and window is not None:
            self._map_pub.publish(self._map_message(msg, window))
            self.diag.count("published_map")

    def _map_message(self, msg: OccupancyGrid, window: MapWindow) -> OccupancyGrid:
        """The fused state as an OccupancyGrid in ``map_frame``, stamp = the input grid's."""
        return fill_occupancy_grid(OccupancyGrid(), window.grid_spec(self.p("map_frame")),
                                   probability_to_occupancy(window.probability, window.known),
                                   msg.header.stamp)

def main(args: list[str] | None = None) -> int:
    """``ros2 run lss_bev_ros fusion_node``."""
    return run_node(FusionNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
