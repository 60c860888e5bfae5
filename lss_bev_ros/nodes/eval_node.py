"""eval_node: online LiDAR-referenced evaluation of the BEV occupancy grid.

Subscribes to the BEV ``nav_msgs/OccupancyGrid``, the LiDAR ``sensor_msgs/PointCloud2`` and (when
replaying nuScenes) ground-truth boxes (``visualization_msgs/MarkerArray``); builds a reference
occupancy in the same grid and publishes ``lss_bev_ros/BevMetrics`` per evaluated grid. The
logic is :class:`lss_bev_ros.eval.evaluator.BevEvaluator` (ROS-free); this node converts messages,
transforms the cloud ``lidar_top -> base_link`` with the rig calibration and reports bad input.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
from nav_msgs.msg import OccupancyGrid
from sensor_msgs.msg import PointCloud2
from visualization_msgs.msg import MarkerArray

from lss_bev_ros.calibration import CalibrationError, load_rig_yaml
from lss_bev_ros.conversions import (
    ConversionError,
    GridSpec,
    PointCloudError,
    pointcloud2_to_array,
)
from lss_bev_ros.conversions.grid_msg import occupancy_grid_to_probability
from lss_bev_ros.eval.evaluator import REGIONS, BevEvaluator, FrameResult
from lss_bev_ros.eval.reference import (
    LidarFilter,
    ReferenceKind,
    boxes_from_markers,
    transform_points,
)
from lss_bev_ros.msg import BevMetrics
from lss_bev_ros.nodes.common import (
    ParamSpec,
    PerceptionNode,
    run_node,
    sec_to_stamp,
    sensor_qos,
    stamp_to_sec,
)

_KINDS = tuple(k.name.lower() for k in ReferenceKind)


def _origin(v: list) -> str | None:
    ok = len(v) == 3 and all(math.isfinite(float(x)) for x in v)
    return None if ok else "needs finite [x, y, z] in metres"


def wait_for_file(path: str, timeout_s: float) -> bool:
    """Poll until ``path`` exists (True) or ``timeout_s`` passed (False)."""
    deadline = time.monotonic() + timeout_s
    while not Path(path).exists():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)
    return True


def _topic(v: str) -> str | None:
    return None if v.startswith("/") or v == "" else "must be an absolute topic (start with /)"


class EvalNode(PerceptionNode):
    """Lifecycle node: grid + LiDAR (+ GT boxes) -> BevMetrics on ``metrics_topic``."""

    PARAMS: tuple[ParamSpec, ...] = (
        ParamSpec("grid_topic", "/bev/occupancy", "BEV grid to evaluate (OccupancyGrid)",
                  read_only=True, validator=_topic),
        ParamSpec("lidar_topic", "/lidar_top/points", "LiDAR point cloud (PointCloud2)",
                  read_only=True, validator=_topic),
        ParamSpec("boxes_topic", "/gt/boxes", "ground-truth boxes (MarkerArray of CUBEs, "
                  "ns = category, base_link)", read_only=True, validator=_topic),
        ParamSpec("metrics_topic", "/bev/metrics", "BevMetrics output", read_only=True,
                  validator=_topic),
        ParamSpec("reference", "lidar_visibility", "reference occupancy: non-ground LiDAR "
                  "returns, ground-truth box footprints, footprints also hit by LiDAR, or "
                  "lidar_visibility: LiDAR returns ray-cast from the sensor, scored only on the "
                  "cells LiDAR observed (free or occupied; occluded cells are not scored)",
                  read_only=True, choices=_KINDS),
        ParamSpec("lidar_origin", [0.943713, 0.0, 1.84023], "LiDAR origin (x, y, z) in the "
                  "grid frame (m) for lidar_visibility when clouds arrive already in the grid "
                  "frame (default: nuScenes LIDAR_TOP); with rig_file the extrinsic's "
                  "translation is used", read_only=True, validator=_origin),
        ParamSpec("rig_file", "", "rig calibration YAML with the LiDAR extrinsic (lidar -> "
                  "base_link); empty: clouds must already be in the grid frame", read_only=True),
        ParamSpec("rig_wait_s", 10.0, "on configure, wait this long for rig_file to appear "
                  "(launch starts the player that writes it in parallel)", read_only=True,
                  min=0.0, max=600.0),
        ParamSpec("grid_frame", "base_link", "frame of the BEV grid (and of the GT boxes)",
                  read_only=True),
        ParamSpec("grid_resolution", 0.5, "expected grid cell size (m)", read_only=True,
                  min=0.01, max=10.0),
        ParamSpec("grid_size", 200, "expected grid cells along x and y", read_only=True, min=1,
                  max=10000),
        ParamSpec("grid_origin", [-50.0, -50.0], "expected grid origin (x, y) in metres",
                  read_only=True, validator=lambda v: None if len(v) == 2 else "needs [x, y]"),
        ParamSpec("threshold", 0.5, "occupancy probability counted as occupied", min=0.0,
                  max=1.0),
        ParamSpec("stamp_tolerance_s", 0.1, "max stamp difference grid <-> reference (s)",
                  min=0.0, max=5.0),
        ParamSpec("region", "all", "cells evaluated: all, or only those a camera sees",
                  choices=REGIONS),
        ParamSpec("z_min", 0.3, "LiDAR obstacle band: lowest height above ground (m)",
                  min=-5.0, max=10.0),
        ParamSpec("z_max", 3.0, "LiDAR obstacle band: highest height above ground (m)",
                  min=-5.0, max=20.0),
        ParamSpec("min_points", 1, "LiDAR returns a cell needs to count as occupied", min=1,
                  max=1000),
        ParamSpec("free_z_max", 1.0, "lidar_visibility: a beam marks cells free only while it "
                  "is between z_min and this height (m); higher it may pass over a car",
                  min=0.0, max=20.0),
        ParamSpec("categories", ["vehicle."], "GT box category prefixes in the reference "
                  "(empty list: all)"),
        ParamSpec("max_pending", 16, "grids kept while waiting for their reference", min=1,
                  max=1000),
        ParamSpec("qos_reliable", False, "reliable (instead of best-effort) sensor "
                  "subscriptions", read_only=True),
    )

    def __init__(self, **kwargs) -> None:
        super().__init__("eval_node", self.PARAMS, **kwargs)
        self._lock = threading.Lock()
        self._pub = None
        self._subs: list = []
        self.evaluator: BevEvaluator | None = None
        self._lidar_tf: tuple[np.ndarray, np.ndarray] | None = None
        self._lidar_frame = "lidar_top"
        self.results: list[FrameResult] = []
        self._grid_stamps: OrderedDict[float, object] = OrderedDict()  # exact header stamps

    # -- lifecycle --------------------------------------------------------------------------
    def on_configure_impl(self) -> None:
        rig_file = self.p("rig_file")
        self._lidar_tf = None
        if rig_file:
            wait_for_file(rig_file, float(self.p("rig_wait_s")))
            try:
                rig = load_rig_yaml(rig_file)
            except CalibrationError as exc:
                raise RuntimeError(f"cannot load rig_file: {exc}") from exc
            if rig.lidar_rotation is None or rig.lidar_translation is None:
                raise RuntimeError(f"rig_file {rig_file} has no 'lidar' extrinsic")
            self._lidar_tf = (rig.lidar_rotation, rig.lidar_translation)
            self._lidar_frame = rig.lidar_frame_id
        self._build_evaluator()
        self._pub = self.create_publisher(BevMetrics, self.p("metrics_topic"), 10)
        self.diag.set("reference", self.p("reference"))

    def _build_evaluator(self) -> None:
        filt = LidarFilter(z_min=float(self.p("z_min")), z_max=float(self.p("z_max")),
                           min_points=int(self.p("min_points")),
                           free_z_max=float(self.p("free_z_max")))
        cats = list(self.p("categories"))
        with self._lock:
            self.evaluator = BevEvaluator(
                GridSpec(float(self.p("grid_origin")[0]), float(self.p("grid_origin")[1]),
                         float(self.p("grid_resolution")), int(self.p("grid_size")),
                         int(self.p("grid_size")), self.p("grid_frame")), self.p("reference"),
                float(self.p("threshold")), float(self.p("stamp_tolerance_s")),
                region=self.p("region"), lidar_filter=filt, prefixes=cats or None,
                max_pending=int(self.p("max_pending")),
            )

    def on_activate_impl(self) -> None:
        qos = sensor_qos(depth=5, reliable=bool(self.p("qos_reliable")))
        self._subs = [
            self.create_subscription(OccupancyGrid, self.p("grid_topic"), self._on_grid, 10),
            self.create_subscription(PointCloud2, self.p("lidar_topic"), self._on_cloud, qos),
        ]
        if ReferenceKind.parse(self.p("reference")).needs_boxes:
            self._subs.append(self.create_subscription(
                MarkerArray, self.p("boxes_topic"), self._on_boxes, 10))

    def on_deactivate_impl(self) -> None:
        for s in self._subs:
            self.destroy_subscription(s)
        self._subs = []

    def on_cleanup_impl(self) -> None:
        if self._pub is not None:
            self.destroy_publisher(self._pub)
            self._pub = None
        self.evaluator = None

    def on_params_applied(self, changed: dict) -> None:
        live = {"threshold", "stamp_tolerance_s", "region", "z_min", "z_max", "min_points",
                "categories", "max_pending", "free_z_max"}
        if set(changed) & live and self.evaluator is not None:
            if float(self.p("z_max")) <= float(self.p("z_min")):
                raise ValueError("z_max must be > z_min")
            self._build_evaluator()  # restarts the running means with the new definition
            self.get_logger().info(f"evaluation reset after parameter change {sorted(changed)}")

    # -- callbacks --------------------------------------------------------------------------
    def _on_cloud(self, msg: PointCloud2) -> None:
        if not self.active or self.evaluator is None:
            return
        try:
            pts, dropped = pointcloud2_to_array(msg, fields=("x", "y", "z"))
        except PointCloudError as exc:
            self.diag.error("bad_pointcloud", str(exc))
            return
        if dropped:
            self.diag.count("non_finite_points", dropped)
        if len(pts) == 0:
            self.diag.count("empty_clouds")
        frame = msg.header.frame_id
        if frame == self.p("grid_frame"):
            pass
        elif frame == self._lidar_frame and self._lidar_tf is not None:
            pts = transform_points(pts, *self._lidar_tf)
        else:
            known = [self.p("grid_frame")] + ([self._lidar_frame] if self._lidar_tf else [])
            self.diag.error("unknown_frame", f"point cloud in frame {frame!r}; can transform "
                            f"only from {known} (set rig_file for the LiDAR extrinsic)")
            return
        self.diag.count("clouds")
        origin = (self._lidar_tf[1] if frame == self._lidar_frame and self._lidar_tf is not None
                  else [float(v) for v in self.p("lidar_origin")])
        self._publish(self.evaluator.add_points(stamp_to_sec(msg.header.stamp), pts,
                                                origin=origin))

    def _on_boxes(self, msg: MarkerArray) -> None:
        if not self.active or self.evaluator is None:
            return
        try:
            boxes, frame = boxes_from_markers(msg)
        except ValueError as exc:
            self.diag.error("bad_boxes", str(exc))
            return
        if boxes and frame != self.p("grid_frame"):
            self.diag.error("unknown_frame", f"GT boxes in frame {frame!r}, expected "
                            f"{self.p('grid_frame')!r}")
            return
        stamps = {stamp_to_sec(m.header.stamp) for m in msg.markers}
        if len(stamps) > 1:
            self.diag.error("bad_boxes", f"markers with {len(stamps)} different stamps")
            return
        if not stamps:  # an empty array still says "no objects at this time"? no stamp: skip
            self.diag.count("empty_box_arrays")
            return
        self.diag.count("box_arrays")
        self._publish(self.evaluator.add_boxes(stamps.pop(), boxes))

    def _on_grid(self, msg: OccupancyGrid) -> None:
        if not self.active or self.evaluator is None:
            return
        ev = self.evaluator
        g = ev.grid
        try:
            prob, known = occupancy_grid_to_probability(msg, g)
        except ConversionError as exc:
            self.diag.error("grid_mismatch", str(exc))
            return
        stamp = stamp_to_sec(msg.header.stamp)
        self._grid_stamps[stamp] = msg.header.stamp
        while len(self._grid_stamps) > 4 * ev.max_pending:
            self._grid_stamps.popitem(last=False)
        latency_ms = self.stamp_latency_ms(stamp)  # NaN (not counted) on a clock mismatch
        self.diag.count("grids")
        self._publish(ev.add_grid(stamp, prob, known, latency_ms))

    def _publish(self, results: list[FrameResult]) -> None:
        ev = self.evaluator
        if ev is None:
            return
        self.diag.set("unmatched", ev.stats.unmatched)
        for r in results:
            self.results.append(r)
            del self.results[:-100]
            self.diag.count("evaluated")
            self.diag.set("mean_iou", f"{r.mean_iou:.4f}")
            if self._pub is None:
                continue
            m = BevMetrics()
            m.header.stamp = self._grid_stamps.get(r.stamp) or sec_to_stamp(r.stamp)
            m.header.frame_id = ev.grid.frame_id
            m.reference_kind = int(ev.kind)
            m.reference_description = ev.description
            m.iou, m.precision, m.recall = float(r.iou), float(r.precision), float(r.recall)
            m.true_positive_cells = r.confusion.tp
            m.false_positive_cells = r.confusion.fp
            m.false_negative_cells = r.confusion.fn
            m.mean_iou = float(r.mean_iou)
            m.mean_precision = float(r.mean_precision)
            m.mean_recall = float(r.mean_recall)
            m.frame_count = int(r.frame_count)
            m.unmatched_count = int(r.unmatched_count)
            m.latency_p50_ms = float(r.latency_p50_ms)
            m.latency_p90_ms = float(r.latency_p90_ms)
            m.latency_p99_ms = float(r.latency_p99_ms)
            m.threshold = float(ev.threshold)
            m.observed_fraction = float(r.observed_fraction)
            m.mean_observed_fraction = float(r.mean_observed_fraction)
            self._pub.publish(m)


def main(args: list[str] | None = None) -> int:
    """``ros2 run lss_bev_ros eval_node``."""
    return run_node(EvalNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
