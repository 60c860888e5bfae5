"""dashboard_node over real DDS: pipeline topics in, MJPEG /cam and /bev, /eval.json and
/diagnostics out; bad input counted while the node keeps serving."""

from __future__ import annotations

import array
import json
import socket
import threading
import time

import cv2
import numpy as np
import pytest
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Point, Pose, Quaternion, Vector3
from nav_msgs.msg import OccupancyGrid
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import CompressedImage, PointCloud2, PointField
from visualization_msgs.msg import Marker, MarkerArray
from web_testutil import MjpegReader, get

from lss_bev_ros.conversions import GridSpec, points_to_pointcloud2_fields, probability_to_occupancy
from lss_bev_ros.msg import (
    BevMetrics,
    Detection2D,
    Detection2DArray,
    PipelineTiming,
    StageDuration,
)
from lss_bev_ros.nodes.dashboard_node import DashboardNode, pipeline_name
from lss_bev_ros.visualization import FREE_RGB, NOT_SCORED_SWATCH, TP_RGB, UNSEEN_RGB

GRID = GridSpec()
GRAY = 100


def _stamp(t: float) -> Time:
    return Time(sec=int(t), nanosec=round((t - int(t)) * 1e9))


def _jpeg(t: float, data: bytes | None = None) -> CompressedImage:
    m = CompressedImage()
    m.header.stamp, m.header.frame_id = _stamp(t), "cam_front"
    m.format = "jpeg"
    if data is None:
        img = np.full((360, 640, 3), GRAY, np.uint8)
        data = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
    m.data = array.array("B", data)
    return m


def _dets(t: float, width: int = 640) -> Detection2DArray:
    m = Detection2DArray()
    m.header.stamp, m.header.frame_id = _stamp(t), "cam_front"
    m.camera_name, m.image_width, m.image_height = "CAM_FRONT", width, 360
    m.detections = [Detection2D(class_id=2, label="car", score=0.9, center_x=320.0,
                                center_y=180.0, size_x=200.0, size_y=100.0, track_id=7)]
    return m


def _grid(t: float, width: int = 200) -> OccupancyGrid:
    prob = np.zeros((200, 200), np.float32)
    ix, iy, _ = GRID.cell_of(np.array([10.0]), np.array([0.0]))
    prob[ix[0] - 4 : ix[0] + 4, iy[0] - 2 : iy[0] + 2] = 0.9
    g = OccupancyGrid()
    g.header.stamp, g.header.frame_id = _stamp(t), "base_link"
    g.info.resolution = 0.5
    g.info.width, g.info.height = width, 200
    g.info.origin.position.x = g.info.origin.position.y = -50.0
    g.info.origin.orientation.w = 1.0
    g.data = array.array("b", probability_to_occupancy(prob).tobytes())
    return g


def _fused(t: float, resolution: float = 0.5, width: int = 200) -> OccupancyGrid:
    """A fused grid as fusion_node publishes it: the car ahead, the left half unknown (-1)."""
    g = _grid(t)
    prob = np.zeros((200, 200), np.float32)
    prob[115:125, 98:102] = 0.88  # x = 7.5..12.5 m
    known = np.ones((200, 200), bool)
    known[:, 100:] = False  # y > 0: not seen for unknown_after_s
    g.info.resolution, g.info.width = resolution, width
    g.data = array.array("b", probability_to_occupancy(prob, known).tobytes())
    return g


def _boxes(t: float) -> MarkerArray:
    m = Marker(type=Marker.CUBE, action=Marker.ADD, id=0, ns="vehicle.car")
    m.header.stamp, m.header.frame_id = _stamp(t), "base_link"
    m.pose = Pose(position=Point(x=10.0, y=0.0, z=0.8), orientation=Quaternion(w=1.0))
    m.scale = Vector3(x=4.0, y=2.0, z=1.6)
    return MarkerArray(markers=[m])


def _metrics(t: float, iou: float) -> BevMetrics:
    m = BevMetrics()
    m.header.stamp, m.header.frame_id = _stamp(t), "base_link"
    m.reference_kind = BevMetrics.REFERENCE_GT_BOXES
    m.reference_description = "ground-truth box footprints (test)"
    m.iou, m.precision, m.recall = iou, 0.75, float("nan")
    m.mean_iou, m.frame_count, m.unmatched_count = 0.5, 3, 1
    m.latency_p50_ms, m.latency_p90_ms, m.latency_p99_ms = 100.0, 150.0, 200.0
    m.threshold = 0.5
    return m


def _timing(node: str, backend: str, stages: dict[str, float], t: float) -> PipelineTiming:
    m = PipelineTiming()
    m.header.stamp = _stamp(t)
    m.node_name, m.backend = node, backend
    m.stages = [StageDuration(name=k, duration_ms=v) for k, v in stages.items()]
    m.total_ms, m.latency_ms = sum(stages.values()) + 1.0, float("nan")  # clock mismatch
    m.node_latency_ms = 80.5
    m.frames_processed, m.frames_dropped = 12, 3
    return m


class _Harness:
    def __init__(self, ctx, node: DashboardNode) -> None:
        self.node = node
        self.io = Node("dashboard_test_io", context=ctx)
        pub = self.io.create_publisher
        self.img = pub(CompressedImage, "/cameras/cam_front/image_raw/compressed", 10)
        self.det = pub(Detection2DArray, "/detections/cam_front", 10)
        self.grid = pub(OccupancyGrid, "/bev/occupancy", 10)
        self.fused = pub(OccupancyGrid, "/bev/occupancy_fused", 10)
        self.metrics = pub(BevMetrics, "/bev/metrics", 10)
        self.bev_timing = pub(PipelineTiming, "/bev/timing", 10)
        self.det_timing = pub(PipelineTiming, "/detections/timing", 10)
        self.boxes = pub(MarkerArray, "/gt/boxes", 10)
        self._lock = threading.Lock()
        self._diag: dict[str, str] = {}
        self.io.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)
        self.ex = MultiThreadedExecutor(num_threads=3, context=ctx)
        self.ex.add_node(node)
        self.ex.add_node(self.io)
        self.thread = threading.Thread(target=self.ex.spin, daemon=True)
        self.thread.start()

    def _on_diag(self, msg: DiagnosticArray) -> None:
        for st in msg.status:
            if "dashboard_node" in st.name:
                with self._lock:
                    self._diag = {kv.key: kv.value for kv in st.values}

    @property
    def diag(self) -> dict[str, str]:
        with self._lock:
            return dict(self._diag)

    def close(self) -> None:
        self.ex.shutdown(timeout_sec=5.0)
        self.thread.join(10.0)
        self.node.destroy_node()
        self.io.destroy_node()


def _until(pred, timeout: float = 20.0, period: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(period)
    return pred()


def _box_drawn(cam: np.ndarray) -> bool:
    """The detection box (tile coordinates x 110..210, y 65..115) is drawn on the gray image."""
    front = cam[:180].astype(int)  # tile row 1: CAM_FRONT, 320 x 180
    edge = front[80:100, 108:113]
    inner = front[85:95, 150:170]
    return bool((np.abs(edge - GRAY).max(axis=2) > 60).any(axis=1).all()
                and np.abs(inner - GRAY).max() < 20)


def _tp_pixels(bev_bgr: np.ndarray) -> int:
    rgb = cv2.cvtColor(bev_bgr, cv2.COLOR_BGR2RGB).astype(int)
    near = np.abs(rgb - np.array(TP_RGB)).max(axis=2) < 45
    return int(near[:, 100:300].sum())  # centre columns (the legend is at the left edge)


def _read_until(reader: MjpegReader, pred, timeout: float = 20.0) -> np.ndarray:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, img = reader.next_frame()
        if pred(img):
            return img
    raise AssertionError("no frame satisfied the condition")


def test_pipeline_name():
    assert pipeline_name("bev_node", "/bev/timing") == "bev"
    assert pipeline_name("", "/detections/timing") == "detections"


def test_dashboard_node_serves_pipeline_topics(ros_context):
    node = DashboardNode(context=ros_context, parameter_overrides=[
        Parameter("port", value=0), Parameter("cameras", value=["CAM_FRONT", "CAM_BACK"]),
        Parameter("reference", value="gt_boxes"), Parameter("render_rate_hz", value=20.0),
        Parameter("tile_width", value=320), Parameter("bev_scale", value=2)])
    assert node.maybe_autostart()
    url = node.server.url
    assert url.startswith("http://127.0.0.1:")
    h = _Harness(ros_context, node)
    cam = bev = None
    try:
        assert _until(lambda: all(p.get_subscription_count() > 0 for p in (
            h.img, h.det, h.grid, h.metrics, h.bev_timing, h.det_timing, h.boxes))), \
            "dashboard_node subscriptions never matched"
        cam = MjpegReader(url + "/cam")  # watching: the node renders
        bev = MjpegReader(url + "/bev")
        t = 50.0
        h.boxes.publish(_boxes(t))
        h.img.publish(_jpeg(t))
        h.det.publish(_dets(t))
        h.grid.publish(_grid(t))
        h.metrics.publish(_metrics(t, 0.625))
        h.bev_timing.publish(_timing("bev_node", "torch", {"geometry": 1.0,
                                                           "camera_encoder": 20.0}, t))
        h.det_timing.publish(_timing("detector_node", "onnxruntime", {"inference": 9.0}, t))

        img = _read_until(cam, _box_drawn)
        assert img.shape == (360, 320, 3)  # 2 rows (front, back) of 320 x 180 tiles
        img = _read_until(bev, lambda im: _tp_pixels(im) > 50)
        assert img.shape == (400, 400, 3)

        def data():
            d = json.loads(get(url + "/eval.json")[2])
            ok = ("iou" in d["metrics"] and {"bev", "detector"} <= set(d["timing"])
                  and d["info"].get("detections", {}).get("CAM_FRONT"))
            return d if ok else None

        d = _until(data)
        assert d, "eval.json never had metrics, timing and detections"
        assert d["metrics"]["iou"] == 0.625 and d["metrics"]["recall"] is None
        assert d["metrics"]["reference_kind"] == "gt_boxes"
        assert d["metrics"]["stamp"] == t and len(d["metrics_history"]) == 1
        assert d["timing"]["bev"]["backend"] == "torch"
        assert d["timing"]["bev"]["stages_ms"] == {"geometry": 1.0, "camera_encoder": 20.0}
        assert d["timing"]["bev"]["frames_dropped"] == 3
        assert d["timing"]["bev"]["latency_ms"] is None  # NaN: valid JSON null, not NaN
        assert d["timing"]["bev"]["node_latency_ms"] == 80.5
        assert d["timing"]["detector"]["backend"] == "onnxruntime"
        assert d["info"]["detections"]["CAM_FRONT"] == {"detections": 1, "tracks": 1}
        assert d["info"]["images_received"]["CAM_FRONT"] == 1
        assert d["streams"]["cam"]["clients_connected"] == 1

        # bad input: counted and reported, the node keeps serving
        h.img.publish(_jpeg(51.0, data=b"\xff\xd8 not a jpeg"))
        h.det.publish(_dets(51.0, width=0))
        h.grid.publish(_grid(51.0, width=100))  # 100 x 200 cells but 40000 values
        assert _until(lambda: node.diag.counters.get("bad_detections", 0) == 1
                      and node.diag.counters.get("bad_grid", 0) == 1), node.diag.counters
        h.det.publish(_dets(51.0))  # detections of the corrupt image: it is the one shown
        assert _until(lambda: node.diag.counters.get("bad_image", 0) >= 1), node.diag.counters
        assert "could not decode" in node.diag.last_error["bad_image"]
        h.img.publish(_jpeg(52.0))
        h.det.publish(_dets(52.0))
        _read_until(cam, _box_drawn)  # recovered
        def diag_ready():
            dg = h.diag
            ok = (dg.get("bad_detections") == "1" and dg.get("clients_connected") == "2"
                  and "bad_image" in dg)  # a message from after the render counted it
            return dg if ok else None

        diag = _until(diag_ready)
        assert diag, h.diag
        assert int(diag["bad_image"]) >= 1 and int(diag["bad_grid"]) == 1
        assert int(diag["cam.frames_published"]) >= 2 and int(diag["bytes_sent"]) > 0
        assert "cam#" in diag["clients"] and "dropped=" in diag["clients"]

        # parameters: validated on set, applied live to the server
        res = node.set_parameters([Parameter("jpeg_quality", value=150)])
        assert not res[0].successful and "range" in res[0].reason
        assert node.set_parameters([Parameter("jpeg_quality", value=40)])[0].successful
        assert _until(lambda: node.server.jpeg_quality == 40)

        # deactivate: the server goes away, the port is released
        port = node.server.port
        cam.close()
        bev.close()
        cam = bev = None
        node.trigger_deactivate()
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1.0)
    finally:
        for r in (cam, bev):
            if r is not None:
                r.close()
        h.close()


def _jpg(url: str) -> np.ndarray | None:
    status, _, body = get(url)
    if status != 200:
        return None
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR),
                        cv2.COLOR_BGR2RGB).astype(int)


def test_dashboard_node_shows_the_fused_grid_with_unknown_cells_grey(ros_context):
    node = DashboardNode(context=ros_context, parameter_overrides=[
        Parameter("port", value=0), Parameter("cameras", value=["CAM_FRONT"]),
        Parameter("reference", value="none"), Parameter("render_rate_hz", value=20.0),
        Parameter("render_always", value=True), Parameter("bev_scale", value=2)])
    assert node.maybe_autostart()
    url = node.server.url
    h = _Harness(ros_context, node)
    try:
        # nothing on the fused topic: /fused serves its "waiting" picture, the rest works
        waiting = _jpg(url + "/fused.jpg")
        assert waiting is not None and waiting.shape == (240, 426, 3)
        assert _until(lambda: h.fused.get_subscription_count() and h.grid.get_subscription_count())
        h.grid.publish(_grid(60.0))
        assert _until(lambda: (b := _jpg(url + "/bev.jpg")) is not None and b.shape[0] == 400)

        def fused_frame():
            h.fused.publish(_fused(60.0))
            img = _jpg(url + "/fused.jpg")
            return [img] if img is not None and img.shape == (400, 400, 3) else None

        frames = _until(fused_frame, period=0.2)
        assert frames, node.diag.counters
        img = frames[0]
        # display: forward up, left (y > 0, unknown) on the left; 2 px per cell
        assert np.abs(img[100:140, 60:120].mean((0, 1)) - UNSEEN_RGB).max() < 10  # grey
        free = img[100:140, 280:340].mean((0, 1))  # known, p = 0: the dark free colour
        assert np.abs(free - FREE_RGB).max() < 12 and np.abs(free - UNSEEN_RGB).max() > 20
        car = img[2 * (199 - 124) : 2 * (199 - 115), 2 * (199 - 99) : 2 * (199 - 98)]
        assert car.mean() > 120  # p 0.88 in the warm end of the colour ramp

        # bad fused grids: counted in /diagnostics, not drawn, the node keeps serving
        h.fused.publish(_fused(61.0, width=100))  # 100 x 200 cells, 40000 values
        h.fused.publish(_fused(62.0, resolution=0.25))  # not the single-frame grid's geometry
        assert _until(lambda: node.diag.counters.get("bad_fused_grid", 0) == 2), \
            node.diag.counters
        assert "0.25" in node.diag.last_error["bad_fused_grid"]
        assert _until(lambda: h.diag.get("bad_fused_grid") == "2"), h.diag
        assert int(h.diag["fused_grids"]) >= 1
        d = _until(lambda: (j := json.loads(get(url + "/eval.json")[2]))["info"].get(
            "fused_grids_received") and j)  # the info table is refreshed once a second
        assert d and d["info"]["fused_grids_received"] >= 1 and "fused" in d["streams"]
    finally:
        h.close()


def _road_cloud(t: float) -> PointCloud2:
    """Ground returns on the road 5..20 m ahead, |y| < 5 m, in base_link (P x 5 points)."""
    gx, gy = np.meshgrid(np.arange(5.0, 20.0, 0.25), np.arange(-5.0, 5.0, 0.25))
    pts = np.zeros((gx.size, 5), np.float32)
    pts[:, 0], pts[:, 1] = gx.ravel(), gy.ravel()
    fields, step, data = points_to_pointcloud2_fields(pts)
    m = PointCloud2()
    m.header.stamp, m.header.frame_id = _stamp(t), "base_link"
    m.height, m.width = 1, len(pts)
    m.fields = [PointField(name=n, offset=o, datatype=d, count=1) for n, o, d in fields]
    m.point_step, m.row_step = step, step * len(pts)
    m.data = array.array("B", data)
    return m


def test_dashboard_node_shades_cells_lidar_did_not_observe(ros_context):
    node = DashboardNode(context=ros_context, parameter_overrides=[
        Parameter("port", value=0), Parameter("cameras", value=["CAM_FRONT"]),
        Parameter("reference", value="lidar_visibility"), Parameter("render_always", value=True),
        Parameter("render_rate_hz", value=20.0), Parameter("fused_topic", value="")])
    assert node.maybe_autostart()
    url = node.server.url
    h = _Harness(ros_context, node)
    cloud = h.io.create_publisher(PointCloud2, "/lidar_top/points", 10)
    try:
        assert _until(lambda: cloud.get_subscription_count() and h.grid.get_subscription_count())
        assert get(url + "/fused.jpg")[0] == 404  # fused_topic "": no /fused

        def shaded():
            cloud.publish(_road_cloud(70.0))
            h.grid.publish(_grid(70.0))
            img = _jpg(url + "/bev.jpg")
            return [img] if img is not None and img.shape == (400, 400, 3) and np.abs(
                img[250:290, 60:100].mean((0, 1)) - NOT_SCORED_SWATCH).max() < 12 else None

        frames = _until(shaded, period=0.3)
        assert frames, node.diag.counters  # 20 m behind, 30 m left: not observed, grey
        road = frames[0][2 * (199 - 130) : 2 * (199 - 125), 2 * (199 - 104) : 2 * (199 - 96)]
        assert road.mean() < 40  # 12.5..15 m ahead on the road: observed free, dark
    finally:
        h.close()


def test_dashboard_node_fails_activation_on_a_busy_port(ros_context):
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    port = blocker.getsockname()[1]
    node = DashboardNode(context=ros_context, parameter_overrides=[Parameter("port", value=port)])
    try:
        assert not node.maybe_autostart()  # configure ok, activate FAILURE (logged, counted)
        assert node.diag.counters.get("activate_failed") == 1
        assert f"127.0.0.1:{port}" in node.diag.last_error["activate_failed"]
    finally:
        node.destroy_node()
        blocker.close()
