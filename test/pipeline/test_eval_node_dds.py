"""eval_node over real DDS: grid + LiDAR (+ GT boxes) in, BevMetrics and diagnostics out."""

from __future__ import annotations

import array
import math

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Point, Pose, Quaternion, Vector3
from nav_msgs.msg import OccupancyGrid
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import PointCloud2, PointField
from visualization_msgs.msg import Marker, MarkerArray

from lss_bev_ros.calibration import CameraCalibration, RigCalibration, save_rig_yaml
from lss_bev_ros.conversions import (
    GridSpec,
    points_to_pointcloud2_fields,
    probability_to_occupancy,
)
from lss_bev_ros.msg import BevMetrics
from lss_bev_ros.nodes.eval_node import EvalNode

GRID = GridSpec()
# LiDAR frame: x right, y forward (nuScenes LIDAR_TOP), 1.8 m above base_link
LIDAR_R = np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
LIDAR_T = np.array([1.0, 0.0, 1.8])


@pytest.fixture
def rig_file(tmp_path):
    cam = CameraCalibration("CAM_FRONT", 160, 90, np.array([[80, 0, 80], [0, 80, 45], [0, 0, 1]]),
                            np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0]], float), [1.5, 0, 1.5])
    return str(save_rig_yaml(RigCalibration((cam,), LIDAR_R, LIDAR_T), tmp_path / "rig.yaml"))


def _stamp(t: float) -> Time:
    return Time(sec=int(t), nanosec=round((t - int(t)) * 1e9))


def _cloud(points_lidar: np.ndarray, t: float, frame: str = "lidar_top") -> PointCloud2:
    pts = np.zeros((len(points_lidar), 5), np.float32)
    pts[:, :3] = points_lidar
    fields, step, data = points_to_pointcloud2_fields(pts)
    m = PointCloud2()
    m.header.stamp, m.header.frame_id = _stamp(t), frame
    m.height, m.width = 1, len(pts)
    m.fields = [PointField(name=n, offset=o, datatype=d, count=1) for n, o, d in fields]
    m.point_step, m.row_step = step, step * len(pts)
    m.data = array.array("B", data)
    return m


def _grid(prob: np.ndarray, t: float, res: float = 0.5) -> OccupancyGrid:
    g = OccupancyGrid()
    g.header.stamp, g.header.frame_id = _stamp(t), "base_link"
    g.info.resolution = res
    g.info.width, g.info.height = 200, 200
    g.info.origin.position.x = g.info.origin.position.y = -50.0
    g.info.origin.orientation.w = 1.0
    g.data = array.array("b", probability_to_occupancy(prob).tobytes())
    return g


def _base_to_lidar(p_base: np.ndarray) -> np.ndarray:
    return (p_base - LIDAR_T) @ LIDAR_R  # R^T (p - t)


class _Harness:
    def __init__(self, ctx, node: EvalNode):
        self.node = node
        self.io = Node("eval_test_io", context=ctx)
        self.pub_cloud = self.io.create_publisher(PointCloud2, "/lidar_top/points", 10)
        self.pub_grid = self.io.create_publisher(OccupancyGrid, "/bev/occupancy", 10)
        self.pub_boxes = self.io.create_publisher(MarkerArray, "/gt/boxes", 10)
        self.metrics: list[BevMetrics] = []
        self.diag: dict[str, str] = {}
        self.io.create_subscription(BevMetrics, "/bev/metrics", self.metrics.append, 10)
        self.io.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)
        self.ex = SingleThreadedExecutor(context=ctx)
        self.ex.add_node(node)
        self.ex.add_node(self.io)

    def _on_diag(self, msg: DiagnosticArray) -> None:
        for st in msg.status:
            if "eval_node" in st.name:
                self.diag = {kv.key: kv.value for kv in st.values}

    def connected(self, spin) -> None:
        assert spin(self.ex, lambda: all(p.get_subscription_count() > 0 for p in (
            self.pub_cloud, self.pub_grid)), 10.0), "eval_node subscriptions never matched"

    def close(self) -> None:
        self.ex.shutdown()
        self.node.destroy_node()
        self.io.destroy_node()


def test_eval_node_lidar_reference_metrics_and_bad_input(ros_context, rig_file, spin):
    node = EvalNode(context=ros_context, parameter_overrides=[
        Parameter("rig_file", value=rig_file), Parameter("reference", value="lidar"),
        Parameter("stamp_tolerance_s", value=0.05)])
    assert node.maybe_autostart()
    h = _Harness(ros_context, node)
    try:
        h.connected(spin)
        # obstacles at (10, 0) and (20, 5) in base_link, plus ground and NaN returns
        base = np.array([[10.0, 0.0, 1.0], [20.0, 5.0, 1.0], [15.0, -3.0, 0.0]])
        pts = np.vstack([_base_to_lidar(base), [[np.nan, 1.0, 1.0]]]).astype(np.float32)
        h.pub_cloud.publish(_cloud(pts, 100.0))
        prob = np.zeros((200, 200), np.float32)
        for x, y in ((10.0, 0.0), (-5.0, -5.0)):   # one hit, one false alarm; (20, 5) missed
            ix, iy, _ = GRID.cell_of(np.array([x]), np.array([y]))
            prob[ix[0], iy[0]] = 0.9
        assert spin(h.ex, lambda: h.node.diag.counters.get("clouds", 0) == 1, 10.0)
        h.pub_grid.publish(_grid(prob, 100.02))
        assert spin(h.ex, lambda: len(h.metrics) == 1, 10.0), "no BevMetrics"
        m = h.metrics[0]
        assert (m.true_positive_cells, m.false_positive_cells, m.false_negative_cells) == (1, 1, 1)
        assert m.iou == pytest.approx(1 / 3) and m.precision == 0.5 and m.recall == 0.5
        assert m.reference_kind == BevMetrics.REFERENCE_LIDAR and "LiDAR" in m.reference_description
        assert (m.header.stamp.sec, m.header.stamp.nanosec) == (100, 20_000_000)
        assert m.header.frame_id == "base_link" and m.frame_count == 1
        assert m.threshold == pytest.approx(0.5)
        # a grid stamped 100 s against today's wall clock: no latency of decades, but NaN and
        # an explained clock_mismatch (the e2e and demo tests check real latencies)
        assert math.isnan(m.latency_p50_ms)
        assert h.node.diag.counters["clock_mismatch"] >= 1

        # bad input: unknown frame, empty cloud, wrong grid geometry
        h.pub_cloud.publish(_cloud(pts, 101.0, frame="velodyne"))
        h.pub_cloud.publish(_cloud(np.zeros((0, 3), np.float32), 101.5))
        h.pub_grid.publish(_grid(prob, 101.5, res=0.25))
        assert spin(h.ex, lambda: h.diag.get("grid_mismatch") == "1"
                    and h.diag.get("unknown_frame") == "1"
                    and h.diag.get("empty_clouds") == "1"
                    and h.diag.get("non_finite_points") == "2", 10.0), h.diag
        assert "velodyne" in h.diag["last_error.unknown_frame"]
        # still evaluating after bad input: the empty cloud is a valid (empty) reference
        h.pub_grid.publish(_grid(prob, 101.5))
        assert spin(h.ex, lambda: len(h.metrics) == 2, 10.0)
        m2 = h.metrics[1]
        assert m2.false_positive_cells == 2 and m2.true_positive_cells == 0
        assert m2.recall != m2.recall  # NaN: empty reference
        assert m2.mean_iou == pytest.approx((1 / 3 + 0.0) / 2)
    finally:
        h.close()


def _marker(i: int, x: float, y: float, yaw: float, t: float, ns: str = "vehicle.car") -> Marker:
    m = Marker(type=Marker.CUBE, action=Marker.ADD, id=i, ns=ns)
    m.header.stamp, m.header.frame_id = _stamp(t), "base_link"
    m.pose = Pose(position=Point(x=x, y=y, z=0.8),
                  orientation=Quaternion(z=math.sin(yaw / 2), w=math.cos(yaw / 2)))
    m.scale = Vector3(x=4.0, y=2.0, z=1.6)
    return m


def test_eval_node_lidar_in_boxes(ros_context, rig_file, spin):
    node = EvalNode(context=ros_context, parameter_overrides=[
        Parameter("rig_file", value=rig_file), Parameter("reference", value="lidar_in_boxes")])
    assert node.maybe_autostart()
    h = _Harness(ros_context, node)
    try:
        h.connected(spin)
        assert spin(h.ex, lambda: h.pub_boxes.get_subscription_count() > 0, 10.0)
        t = 200.0
        # two cars; LiDAR hits only the first (plus a wall outside any box)
        h.pub_boxes.publish(MarkerArray(markers=[_marker(0, 10.0, 0.0, 0.0, t),
                                                 _marker(1, -20.0, 8.0, 0.5, t)]))
        base = np.array([[10.0, 0.0, 1.0], [30.0, 30.0, 1.0]])
        h.pub_cloud.publish(_cloud(_base_to_lidar(base).astype(np.float32), t + 0.01))
        prob = np.zeros((200, 200), np.float32)
        ix, iy, _ = GRID.cell_of(np.array([10.0]), np.array([0.0]))
        prob[ix[0], iy[0]] = 1.0
        assert spin(h.ex, lambda: h.node.diag.counters.get("box_arrays", 0) == 1
                    and h.node.diag.counters.get("clouds", 0) == 1, 10.0)
        h.pub_grid.publish(_grid(prob, t))
        assert spin(h.ex, lambda: len(h.metrics) == 1, 10.0)
        m = h.metrics[0]
        assert m.reference_kind == BevMetrics.REFERENCE_LIDAR_IN_BOXES
        assert (m.true_positive_cells, m.false_positive_cells, m.false_negative_cells) == (1, 0, 0)
        assert m.iou == 1.0
    finally:
        h.close()
