"""dashboard_node: the live view of the pipeline over HTTP (MJPEG ``/cam``, ``/bev``,
``/fused``; ``/eval``).

Subscribes to the camera images (compressed or raw), ``/detections/<cam>`` (Detection2DArray),
``/bev/occupancy`` (OccupancyGrid), the fused grid ``/bev/occupancy_fused`` (OccupancyGrid of
fusion_node, drawn on ``/fused``, unknown cells grey; nothing published there: ``/fused`` keeps
its "waiting" picture), ``/bev/metrics`` (BevMetrics), the PipelineTiming topics
(``/bev/timing``, ``/detections/timing``), the tracked objects in base_link
(``/objects/tracked_base_link``: boxes and ids drawn on ``/bev``) and, for the reference overlay
on ``/bev``, the LiDAR cloud and/or GT boxes (``lidar_visibility``: cells LiDAR did not observe
are shaded "not scored"); serves them with :class:`lss_bev_ros.web.DashboardServer` (binds
127.0.0.1:8080 by default).

Cost to the pipeline: callbacks only store the newest messages; a timer renders the camera
mosaic and the BEV picture at most ``render_rate_hz``, only while a client watches the stream
(or ``render_always``), decoding JPEGs at reduced size. JPEG encoding runs in the HTTP client
threads. /diagnostics carries clients connected, frames dropped per client and bytes sent,
the grids drawn (``grids``, ``fused_grids``) and the rejected ones (``bad_grid``,
``bad_fused_grid``: size, data length, geometry, values outside -1..100; a fused grid must have
the single-frame grid's geometry). The ``lidar_visibility`` ray cast costs ~0.2 s per drawn
grid for a 30k-point cloud (measured on a loaded 2-core AMD EPYC), in the render timer.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

import numpy as np
from nav_msgs.msg import OccupancyGrid
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from sensor_msgs.msg import CompressedImage, Image, PointCloud2
from visualization_msgs.msg import MarkerArray

from lss_bev_ros.calibration import NUSCENES_CAMERAS, CalibrationError, frame_id_for, load_rig_yaml
from lss_bev_ros.conversions import (
    GridConversionError,
    GridSpec,
    PointCloudError,
    pointcloud2_to_array,
)
from lss_bev_ros.conversions.grid_msg import occupancy_grid_to_probability
from lss_bev_ros.conversions.objects import object_from_tracked_msg
from lss_bev_ros.eval.reference import (
    LidarFilter,
    ReferenceKind,
    boxes_from_markers,
    transform_points,
)
from lss_bev_ros.msg import BevMetrics, Detection2DArray, PipelineTiming, TrackedObjects
from lss_bev_ros.nodes.common import ParamSpec, PerceptionNode, run_node, sensor_qos, stamp_to_sec
from lss_bev_ros.visualization import reference_label
from lss_bev_ros.web import DashboardServer
from lss_bev_ros.web.views import DEFAULT_LIDAR_ORIGIN, BevView, CameraMosaic

_REFERENCES = ("none", *(k.name.lower() for k in ReferenceKind))
_METRIC_FIELDS = (
    "iou", "precision", "recall", "true_positive_cells", "false_positive_cells",
    "false_negative_cells", "mean_iou", "mean_precision", "mean_recall", "frame_count",
    "unmatched_count", "latency_p50_ms", "latency_p90_ms", "latency_p99_ms", "threshold",
    "observed_fraction", "mean_observed_fraction",
)
MAX_GRID_CELLS = 2048 * 2048
"""Largest grid drawn (cells); a larger OccupancyGrid is counted as bad, not rendered."""


def _topic_or_empty(v: str) -> str | None:
    return None if v == "" or v.startswith("/") else "must be empty or an absolute topic"


def _topic(v: str) -> str | None:
    return None if v.startswith("/") else "must be an absolute topic (start with /)"


def _topics(v: list[str]) -> str | None:
    bad = [t for t in v if not t.startswith("/")]
    return f"not absolute topics: {bad}" if bad else None


def _origin(v: list) -> str | None:
    ok = len(v) == 3 and all(math.isfinite(float(x)) for x in v)
    return None if ok else "needs finite [x, y, z] in metres"


def grid_from_msg(msg: Any, expected: GridSpec | None = None) -> tuple[
        np.ndarray, np.ndarray, GridSpec]:
    """OccupancyGrid-like ``msg`` -> (X x Y probabilities 0..1, X x Y known, its GridSpec),
    decoded by :func:`occupancy_grid_to_probability` against ``expected`` (None: the geometry
    the message declares, after checking it is finite, at most :data:`MAX_GRID_CELLS` cells
    and unrotated). Raises :class:`GridConversionError` for a bad geometry, a data length that
    does not match it, or cell values outside -1..100."""
    info = msg.info
    o = info.origin
    vals = (info.resolution, o.position.x, o.position.y)
    if not all(math.isfinite(float(v)) for v in vals) or not info.resolution > 0:
        raise GridConversionError(f"resolution {info.resolution} m, origin ({o.position.x}, "
                                  f"{o.position.y}) m")
    if not abs(o.orientation.x) + abs(o.orientation.y) + abs(o.orientation.z) <= 1e-6:  # NaN
        raise GridConversionError("rotated grid origins are not supported")
    w, h = int(info.width), int(info.height)
    if w <= 0 or h <= 0 or w * h > MAX_GRID_CELLS:
        raise GridConversionError(f"grid {w} x {h} cells (at most {MAX_GRID_CELLS} drawn)")
    grid = expected or GridSpec(float(o.position.x), float(o.position.y),
                                float(info.resolution), w, h, str(msg.header.frame_id))
    prob, known = occupancy_grid_to_probability(msg, grid)
    bad = int(np.count_nonzero(prob > 1.0)) + int(np.count_nonzero(
        np.asarray(msg.data, dtype=np.int8) < -1))
    if bad:
        raise GridConversionError(f"{bad} cells outside -1..100")
    return prob, known, grid


def _template(v: str) -> str | None:
    return None if v.startswith("/") and "{camera}" in v else (
        "must be an absolute topic containing {camera}")


def _cameras(v: list[str]) -> str | None:
    if not v:
        return "need at least one camera"
    return "camera names must be unique" if len(set(v)) != len(v) else None


def pipeline_name(node_name: str, topic: str) -> str:
    """``bev_node`` -> ``bev``; falls back to the topic's first segment (``/bev/timing``)."""
    name = node_name.strip()
    if name:
        return name.removesuffix("_node") or name
    parts = [p for p in topic.split("/") if p]
    return parts[0] if parts else topic


class DashboardNode(PerceptionNode):
    """Lifecycle node serving the MJPEG streams and the evaluation dashboard."""

    PARAMS: tuple[ParamSpec, ...] = (
        ParamSpec("host", "127.0.0.1", "HTTP bind address (127.0.0.1: this machine only; "
                  "0.0.0.0 exposes the streams to the network)", read_only=True),
        ParamSpec("port", 8080, "HTTP port (0: any free port)", read_only=True, min=0,
                  max=65535),
        ParamSpec("jpeg_quality", 80, "JPEG quality of the streams (maximum when adaptive)",
                  min=1, max=100),
        ParamSpec("adaptive_quality", True, "per client: lower the JPEG quality while its "
                  "send time exceeds adaptive_target_ms (slow links), raise it back after"),
        ParamSpec("min_quality", 30, "lowest adaptive JPEG quality", min=1, max=100),
        ParamSpec("adaptive_target_ms", 50.0, "per-frame send-time budget of a client (ms)",
                  min=1.0, max=10000.0),
        ParamSpec("max_client_fps", 0.0, "max frames per second sent to one client (0: every "
                  "new frame)", min=0.0, max=1000.0),
        ParamSpec("max_clients", 16, "max simultaneous stream clients", read_only=True, min=1,
                  max=1024),
        ParamSpec("send_timeout_s", 20.0, "a client that accepts no data this long is "
                  "disconnected (s)", read_only=True, min=0.5, max=3600.0),
        ParamSpec("history_len", 300, "points kept for the dashboard charts", read_only=True,
                  min=10, max=100000),
        ParamSpec("cameras", list(NUSCENES_CAMERAS), "cameras tiled on /cam", read_only=True,
                  validator=_cameras),
        ParamSpec("input_type", "compressed", "camera images: CompressedImage ('compressed', "
                  "topic + '/compressed') or Image ('raw')", read_only=True,
                  choices=("compressed", "raw")),
        ParamSpec("image_topic_template", "/cameras/{camera}/image_raw", "image topic per "
                  "camera ({camera} = frame id)", read_only=True, validator=_template),
        ParamSpec("detections_prefix", "/detections", "Detection2DArray topics "
                  "<prefix>/<frame id>; empty: no detection overlays", read_only=True,
                  validator=_topic_or_empty),
        ParamSpec("occupancy_topic", "/bev/occupancy", "BEV OccupancyGrid", read_only=True,
                  validator=_topic),
        ParamSpec("fused_topic", "/bev/occupancy_fused", "fused OccupancyGrid (fusion_node) "
                  "drawn on /fused next to /bev, unknown cells grey (empty: no /fused)",
                  read_only=True, validator=_topic_or_empty),
        ParamSpec("metrics_topic", "/bev/metrics", "BevMetrics", read_only=True,
                  validator=_topic),
        ParamSpec("timing_topics", ["/bev/timing", "/detections/timing"], "PipelineTiming "
                  "topics shown as per-stage latency charts", read_only=True, validator=_topics),
        ParamSpec("render_rate_hz", 5.0, "max rate of rendering /cam and /bev (Hz)", min=0.2,
                  max=60.0),
        ParamSpec("render_always", False, "render even when no client watches (snapshots "
                  "always fresh; costs CPU)"),
        ParamSpec("tile_width", 320, "width of one camera tile on /cam, pixels (16:9 tiles)",
                  min=64, max=1920),
        ParamSpec("bev_scale", 2, "pixels per BEV cell on /bev", min=1, max=8),
        ParamSpec("overlay_max_age_s", 0.5, "draw detections on a newer image only if they "
                  "are at most this old (s)", min=0.0, max=10.0),
        ParamSpec("image_history", 3, "images kept per camera to find the one detections "
                  "belong to", read_only=True, min=1, max=30),
        ParamSpec("reference", "lidar_visibility", "reference drawn on /bev (TP/FP/FN "
                  "colours; lidar_visibility: cells LiDAR did not observe shaded as not "
                  "scored); as eval_node's 'reference', or none", read_only=True,
                  choices=_REFERENCES),
        ParamSpec("lidar_origin", list(DEFAULT_LIDAR_ORIGIN), "LiDAR origin (x, y, z) in the "
                  "grid frame (m) for the lidar_visibility ray cast when clouds arrive already "
                  "in the grid frame (default: nuScenes LIDAR_TOP); with rig_file the "
                  "extrinsic's translation is used (as eval_node)", read_only=True,
                  validator=_origin),
        ParamSpec("lidar_topic", "/lidar_top/points", "LiDAR PointCloud2 (reference)",
                  read_only=True, validator=_topic),
        ParamSpec("boxes_topic", "/gt/boxes", "GT boxes MarkerArray (reference)",
                  read_only=True, validator=_topic),
        ParamSpec("objects_topic", "/objects/tracked_base_link", "TrackedObjects in the grid "
                  "frame drawn as boxes + ids on /bev (empty: none)", read_only=True,
                  validator=_topic_or_empty),
        ParamSpec("rig_file", "", "rig YAML with the LiDAR extrinsic (clouds in the LiDAR "
                  "frame); empty: clouds must already be in the grid frame", read_only=True),
        ParamSpec("threshold", 0.5, "occupancy probability drawn as occupied", min=0.0,
                  max=1.0),
        ParamSpec("reference_tolerance_s", 0.1, "max stamp difference grid <-> reference (s)",
                  min=0.0, max=10.0),
        ParamSpec("z_min", 0.3, "LiDAR obstacle band: lowest height above ground (m)",
                  read_only=True, min=-10.0, max=10.0),
        ParamSpec("z_max", 3.0, "LiDAR obstacle band: highest height above ground (m)",
                  read_only=True, min=-10.0, max=20.0),
        ParamSpec("min_points", 1, "LiDAR returns a cell needs to count as occupied",
                  read_only=True, min=1, max=1000),
        ParamSpec("categories", ["vehicle."], "GT box category prefixes of the reference",
                  read_only=True),
        ParamSpec("qos_reliable", False, "reliable (instead of best-effort) sensor "
                  "subscriptions", read_only=True),
    )

    def __init__(self, **kwargs) -> None:
        super().__init__("dashboard_node", self.PARAMS, **kwargs)
        self.server: DashboardServer | None = None
        self.mosaic: CameraMosaic | None = None
        self.bev: BevView | None = None
        self.fused: BevView | None = None
        self._subs: list = []
        self._render_timer = None
        self._diag_timer = None
        self._render_group = MutuallyExclusiveCallbackGroup()
        self._lidar_tf = None
        self._lidar_frame = "lidar_top"
        self._grid_frame = "base_link"
        self._rendered = {"cam": -1, "bev": -1, "fused": -1}
        self._render_ms = {"cam": 0.0, "bev": 0.0, "fused": 0.0}
        self._renders = {"cam": 0, "bev": 0, "fused": 0}
        self._lock = threading.Lock()
        self._decode_errors = 0

    # -- lifecycle --------------------------------------------------------------------------
    def on_configure_impl(self) -> None:
        if float(self.p("z_max")) <= float(self.p("z_min")):
            raise ValueError("z_max must be > z_min")
        self._lidar_tf = None
        rig_file = self.p("rig_file")
        if rig_file:  # only the reference overlay needs it: the live view runs without
            try:
                rig = load_rig_yaml(rig_file)
            except (CalibrationError, OSError) as exc:
                self.diag.error("rig_file", f"cannot load rig_file {rig_file!r}: {exc}; "
                                "LiDAR clouds must be in the grid frame for the overlay")
            else:
                if rig.lidar_rotation is not None and rig.lidar_translation is not None:
                    self._lidar_tf = (rig.lidar_rotation, rig.lidar_translation)
                    self._lidar_frame = rig.lidar_frame_id
                self._grid_frame = rig.base_frame_id
        self.server = DashboardServer(
            self.p("host"), int(self.p("port")), int(self.p("jpeg_quality")),
            bool(self.p("adaptive_quality")), min_quality=int(self.p("min_quality")),
            adaptive_target_ms=float(self.p("adaptive_target_ms")),
            max_fps=float(self.p("max_client_fps")), max_clients=int(self.p("max_clients")),
            send_timeout_s=float(self.p("send_timeout_s")),
            history_len=int(self.p("history_len")),
            streams=("cam", "bev", "fused") if self.p("fused_topic") else ("cam", "bev"),
        )
        self._decode_errors = 0
        self.mosaic = CameraMosaic(list(self.p("cameras")), int(self.p("image_history")),
                                   float(self.p("overlay_max_age_s")))
        filt = LidarFilter(z_min=float(self.p("z_min")), z_max=float(self.p("z_max")),
                           min_points=int(self.p("min_points")))
        self.bev = BevView(self.p("reference"), float(self.p("threshold")),
                           float(self.p("reference_tolerance_s")), filt,
                           list(self.p("categories")) or None)
        self.fused = (BevView("none", float(self.p("threshold")), title="fused",
                              unknown_label="unknown (-1)") if self.p("fused_topic") else None)
        self.server.update_info({
            "cameras": ", ".join(self.p("cameras")),
            "camera_input": self.p("input_type"),
            "reference_overlay": self.p("reference"),
            "fused_topic": self.p("fused_topic") or "none",
        })
        self.diag.set("reference", self.p("reference"))

    def on_activate_impl(self) -> None:
        assert self.server is not None and self.mosaic is not None and self.bev is not None
        self.server.start()  # raises OSError naming host:port when it cannot bind
        self.diag.set("url", self.server.url)
        self.get_logger().info(
            f"live view on {self.server.url}/  (/cam, /bev, /eval, /eval.json)")
        group = ReentrantCallbackGroup()
        qos = sensor_qos(depth=1, reliable=bool(self.p("qos_reliable")))
        compressed = self.p("input_type") == "compressed"
        subs = []
        for cam in self.mosaic.cameras:
            topic = self.p("image_topic_template").replace("{camera}", frame_id_for(cam))
            subs.append(self.create_subscription(
                CompressedImage if compressed else Image,
                topic + "/compressed" if compressed else topic,
                lambda m, c=cam, z=compressed: self._on_image(c, m, z), qos,
                callback_group=group))
            prefix = str(self.p("detections_prefix")).rstrip("/")
            if prefix:
                subs.append(self.create_subscription(
                    Detection2DArray, f"{prefix}/{frame_id_for(cam)}",
                    lambda m, c=cam: self._on_detections(c, m), 10, callback_group=group))
        subs.append(self.create_subscription(
            OccupancyGrid, self.p("occupancy_topic"), self._on_grid, 10, callback_group=group))
        if self.fused is not None:
            subs.append(self.create_subscription(
                OccupancyGrid, self.p("fused_topic"), self._on_fused, 10, callback_group=group))
        subs.append(self.create_subscription(
            BevMetrics, self.p("metrics_topic"), self._on_metrics, 10, callback_group=group))
        for topic in self.p("timing_topics"):
            subs.append(self.create_subscription(
                PipelineTiming, topic, lambda m, t=topic: self._on_timing(t, m), 10,
                callback_group=group))
        if self.bev.needs_lidar:
            subs.append(self.create_subscription(
                PointCloud2, self.p("lidar_topic"), self._on_cloud,
                sensor_qos(depth=2, reliable=bool(self.p("qos_reliable"))),
                callback_group=group))
        if self.bev.needs_boxes:
            subs.append(self.create_subscription(
                MarkerArray, self.p("boxes_topic"), self._on_boxes, 10, callback_group=group))
        if self.p("objects_topic"):
            subs.append(self.create_subscription(
                TrackedObjects, self.p("objects_topic"), self._on_objects, 10,
                callback_group=group))
        self._subs = subs
        self._make_render_timer()
        self._diag_timer = self.create_timer(1.0, self._update_diag, callback_group=group)

    def on_deactivate_impl(self) -> None:
        for s in self._subs:
            self.destroy_subscription(s)
        self._subs = []
        for t in (self._render_timer, self._diag_timer):
            if t is not None:
                self.destroy_timer(t)
        self._render_timer = self._diag_timer = None
        if self.server is not None:
            self.server.stop()

    def on_cleanup_impl(self) -> None:
        if self.server is not None:
            self.server.stop()
        self.server = self.mosaic = self.bev = self.fused = None

    def _make_render_timer(self) -> None:
        if self._render_timer is not None:
            self.destroy_timer(self._render_timer)
        self._render_timer = self.create_timer(
            1.0 / float(self.p("render_rate_hz")), self._render, callback_group=self._render_group)

    def on_params_applied(self, changed: dict[str, Any]) -> None:
        srv = self.server
        stream_keys = {"jpeg_quality", "adaptive_quality", "min_quality", "adaptive_target_ms",
                       "max_client_fps"}
        if srv is not None and set(changed) & stream_keys:
            srv.configure(jpeg_quality=int(self.p("jpeg_quality")),
                          adaptive=bool(self.p("adaptive_quality")),
                          min_quality=int(self.p("min_quality")),
                          adaptive_target_ms=float(self.p("adaptive_target_ms")),
                          max_fps=float(self.p("max_client_fps")))
        if "render_rate_hz" in changed and self._render_timer is not None:
            self._make_render_timer()
        if self.mosaic is not None and "overlay_max_age_s" in changed:
            self.mosaic.overlay_max_age_s = float(changed["overlay_max_age_s"])
        if self.bev is not None:
            if "threshold" in changed:
                self.bev.threshold = float(changed["threshold"])
            if "reference_tolerance_s" in changed:
                self.bev.tolerance_s = float(changed["reference_tolerance_s"])
        if self.fused is not None and "threshold" in changed:
            self.fused.threshold = float(changed["threshold"])
        self._rendered = dict.fromkeys(self._rendered, -1)  # redraw with the new settings

    # -- callbacks (store only) ---------------------------------------------------------------
    def _on_image(self, cam: str, msg: Any, compressed: bool) -> None:
        if not self.active or self.mosaic is None:
            return
        if not len(msg.data):
            self.diag.error("bad_image", f"{cam}: image without data")
            return
        self.mosaic.add_image(cam, stamp_to_sec(msg.header.stamp), msg, compressed)
        self.diag.count("images")

    def _on_detections(self, cam: str, msg: Detection2DArray) -> None:
        if not self.active or self.mosaic is None:
            return
        w, h = int(msg.image_width), int(msg.image_height)
        if w <= 0 or h <= 0:
            self.diag.error("bad_detections", f"{cam}: image size {w}x{h} in Detection2DArray")
            return
        bad = [d for d in msg.detections
               if not all(math.isfinite(v) for v in (d.center_x, d.center_y, d.size_x, d.size_y))]
        if bad:
            self.diag.error("bad_detections", f"{cam}: {len(bad)} non-finite boxes")
            return
        self.mosaic.add_detections(cam, stamp_to_sec(msg.header.stamp), list(msg.detections),
                                   w, h)
        self.diag.count("detection_arrays")

    def _on_grid(self, msg: OccupancyGrid) -> None:
        if not self.active or self.bev is None:
            return
        try:
            prob, known, grid = grid_from_msg(msg)
        except ValueError as exc:  # GridConversionError
            self.diag.error("bad_grid", str(exc))
            return
        if not grid.frame_id:
            grid = GridSpec(grid.xmin, grid.ymin, grid.resolution, grid.nx, grid.ny,
                            self._grid_frame)
        self.bev.add_grid(stamp_to_sec(msg.header.stamp), prob, known, grid)
        self.diag.count("grids")

    def _on_fused(self, msg: OccupancyGrid) -> None:
        """The fused grid must have the single-frame grid's geometry once one has arrived
        (fusion_node publishes it on the input grid); before that, its own."""
        if not self.active or self.fused is None or self.bev is None:
            return
        single = self.bev.grid
        if single is not None and not msg.header.frame_id:
            single = None  # an empty frame id cannot match: judged on its own geometry
        try:
            prob, known, grid = grid_from_msg(msg, single)
        except ValueError as exc:  # GridConversionError
            self.diag.error("bad_fused_grid", str(exc))
            return
        self.fused.add_grid(stamp_to_sec(msg.header.stamp), prob, known, grid)
        self.diag.count("fused_grids")

    def _on_metrics(self, msg: BevMetrics) -> None:
        if not self.active or self.server is None:
            return
        d: dict[str, Any] = {k: getattr(msg, k) for k in _METRIC_FIELDS}
        d["stamp"] = stamp_to_sec(msg.header.stamp)
        try:
            d["reference_kind"] = ReferenceKind(int(msg.reference_kind)).name.lower()
        except ValueError:
            d["reference_kind"] = int(msg.reference_kind)
        d["reference_description"] = msg.reference_description
        self.server.update_metrics(d)
        if self.bev is not None:
            kind = d["reference_kind"]
            iou = f"{msg.iou:.3f}" if math.isfinite(msg.iou) else "n/a"
            frac = float(msg.observed_fraction)
            if isinstance(kind, str) and ReferenceKind.parse(kind).scores_observed_only \
                    and math.isfinite(frac):
                iou += f" ({100.0 * frac:.0f} % scored)"  # observed cells of the grid
            label = reference_label(kind if isinstance(kind, str) else "")
            self.bev.caption = {  # replaced, not mutated: the render thread reads it
                f"IoU vs {label}": iou,
                "mean": f"{msg.mean_iou:.3f}" if math.isfinite(msg.mean_iou) else ""}
        self.diag.count("metrics")

    def _on_timing(self, topic: str, msg: PipelineTiming) -> None:
        if not self.active or self.server is None:
            return
        stages = {s.name: float(s.duration_ms) for s in msg.stages}
        name = pipeline_name(msg.node_name, topic)
        self.server.update_timing(
            name, msg.backend or "?", stages, total_ms=float(msg.total_ms),
            latency_ms=float(msg.latency_ms), node_latency_ms=float(msg.node_latency_ms),
            frames_processed=int(msg.frames_processed),
            frames_dropped=int(msg.frames_dropped), node=msg.node_name,
            stamp=stamp_to_sec(msg.header.stamp))
        self.diag.count("timing")

    def _on_cloud(self, msg: PointCloud2) -> None:
        if not self.active or self.bev is None or self.server is None:
            return
        if not (self.p("render_always") or self.server.wanted("bev")):
            return  # nobody looks at /bev: skip the conversion
        try:
            pts, _ = pointcloud2_to_array(msg, fields=("x", "y", "z"))
        except PointCloudError as exc:
            self.diag.error("bad_pointcloud", str(exc))
            return
        frame = msg.header.frame_id
        origin = [float(v) for v in self.p("lidar_origin")]
        if frame == self._lidar_frame and self._lidar_tf is not None:
            pts = transform_points(pts, *self._lidar_tf)
            origin = [float(v) for v in self._lidar_tf[1]]  # the sensor in base_link
        elif frame != self._grid_frame:
            self.diag.error("unknown_frame", f"point cloud in frame {frame!r}: set rig_file "
                            "with the LiDAR extrinsic, or publish clouds in the grid frame")
            return
        self.bev.add_points(stamp_to_sec(msg.header.stamp), pts, origin)

    def _on_boxes(self, msg: MarkerArray) -> None:
        if not self.active or self.bev is None:
            return
        try:
            boxes, frame = boxes_from_markers(msg)
        except ValueError as exc:
            self.diag.error("bad_boxes", str(exc))
            return
        if boxes and frame != self._grid_frame:
            self.diag.error("unknown_frame", f"GT boxes in frame {frame!r}, expected "
                            f"{self._grid_frame!r}")
            return
        stamps = {stamp_to_sec(m.header.stamp) for m in msg.markers}
        if len(stamps) == 1:
            self.bev.add_boxes(stamps.pop(), boxes)

    def _on_objects(self, msg: TrackedObjects) -> None:
        if not self.active or self.bev is None:
            return
        if msg.header.frame_id != self._grid_frame:
            self.diag.error("objects_frame", f"objects in frame {msg.header.frame_id!r}, the "
                            f"grid is in {self._grid_frame!r}: not drawn")
            return
        try:
            objs = [object_from_tracked_msg(o) for o in msg.objects]
        except (AttributeError, IndexError, TypeError, ValueError) as exc:
            self.diag.error("bad_objects", str(exc))
            return
        self.bev.add_objects(stamp_to_sec(msg.header.stamp), objs)
        self.diag.count("object_arrays")

    # -- rendering (timer) ------------------------------------------------------------------------
    def _render(self) -> None:
        srv, mosaic, bev = self.server, self.mosaic, self.bev
        if not self.active or srv is None or mosaic is None or bev is None:
            return
        always = bool(self.p("render_always"))
        tw = int(self.p("tile_width"))
        jobs: list[tuple[str, Any, Any]] = [
            ("cam", mosaic, lambda: mosaic.render((round(tw * 9 / 16), tw))),
            ("bev", bev, lambda: bev.render(int(self.p("bev_scale"))))]
        fused = self.fused
        if fused is not None:
            jobs.append(("fused", fused, lambda: fused.render(int(self.p("bev_scale")))))
        for name, view, draw in jobs:
            if view.version == self._rendered[name] or not (always or srv.wanted(name)):
                continue
            version = view.version
            t0 = time.perf_counter()
            try:
                img = draw()
            except Exception as exc:  # bad input must not stop the live view
                self.diag.error(f"render_{name}", f"{type(exc).__name__}: {exc}")
                self._rendered[name] = version
                continue
            self._rendered[name] = version
            if name == "cam" and mosaic.decode_errors > self._decode_errors:
                self.diag.error("bad_image", mosaic.last_error)
                self.diag.count("bad_image", mosaic.decode_errors - self._decode_errors - 1)
                self._decode_errors = mosaic.decode_errors
            if img is None:
                continue
            srv.update_jpeg_stream(name, img, copy=False)
            ms = (time.perf_counter() - t0) * 1e3
            self._render_ms[name] += 0.2 * (ms - self._render_ms[name])
            self._renders[name] += 1

    def _update_diag(self) -> None:
        srv = self.server
        if srv is None:
            return
        stats = srv.stream_stats()
        clients = []
        total_bytes = 0
        for name, st in stats.items():
            self.diag.set(f"{name}.clients", st["clients_connected"])
            self.diag.set(f"{name}.frames_published", st["frames_published"])
            self.diag.set(f"{name}.frames_dropped", st["frames_dropped"])
            self.diag.set(f"{name}.bytes_sent", st["bytes_sent"])
            total_bytes += st["bytes_sent"]
            clients += [f"{name}#{c['id']} {c['peer']} sent={c['frames_sent']} "
                        f"dropped={c['frames_dropped']} q={c['quality']}" for c in st["clients"]]
        self.diag.set("clients_connected", len(clients))
        self.diag.set("clients", "; ".join(clients) or "none")
        self.diag.set("bytes_sent", total_bytes)
        self.diag.set("http_client_errors", srv.client_errors)  # resets, slow request heads
        self.diag.set("http_connections_refused", srv.connections_refused)
        if self.mosaic is not None:
            info: dict[str, Any] = {
                "images_received": dict(self.mosaic.received),
                "detections": self.mosaic.detection_counts(),
                "render_ms": {k: round(v, 2) for k, v in self._render_ms.items()},
                "renders": dict(self._renders),
            }
            if self.bev is not None:
                info["grids_received"] = self.bev.grids
            if self.fused is not None:
                info["fused_grids_received"] = self.fused.grids
            srv.update_info(info)


def main(args: list[str] | None = None) -> int:
    """``ros2 run lss_bev_ros dashboard_node``."""
    return run_node(DashboardNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
