"""dashboard_node over real DDS draws /objects/tracked_base_link boxes and ids over the /bev grid;
objects in another frame than the grid's are counted, not drawn."""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import OccupancyGrid
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from web_testutil import get

from lss_bev_ros.conversions import probability_to_occupancy
from lss_bev_ros.conversions.objects import CLASS_COLORS, new_uuid_prefix, tracked_objects_msg
from lss_bev_ros.msg import TrackedObjects
from lss_bev_ros.nodes.dashboard_node import DashboardNode
from lss_bev_ros.objects.types import Object3D

assert CLASS_COLORS["car"][2] > 0.9 > CLASS_COLORS["car"][0] + 0.5  # light blue (see below)


def _stamp(t: float) -> Time:
    return Time(sec=int(t), nanosec=round((t - int(t)) * 1e9))


def _grid(t: float) -> OccupancyGrid:
    g = OccupancyGrid()
    g.header.stamp, g.header.frame_id = _stamp(t), "base_link"
    g.info.resolution, g.info.width, g.info.height = 0.5, 200, 200
    g.info.origin.position.x = g.info.origin.position.y = -50.0
    g.info.origin.orientation.w = 1.0
    g.data = probability_to_occupancy(np.zeros((200, 200), np.float32)).tolist()
    return g


def _tracks(t: float, frame: str, x: float, y: float) -> TrackedObjects:
    car = Object3D(x, y, 0.8, 4.5, 1.9, 1.6, 0.0, True, "car", 0.9, 0.9, np.eye(2) * 0.1,
                   vx=3.0, track_id=5, age_s=2.0)
    return tracked_objects_msg([car], _stamp(t), frame, new_uuid_prefix())


def _car_pixels(url: str) -> np.ndarray:
    status, _, body = get(url + "/bev.jpg")
    if status != 200:
        return np.zeros((0, 2), int)
    rgb = cv2.cvtColor(cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR),
                       cv2.COLOR_BGR2RGB).astype(int)
    # the car colour (light blue) after JPEG: bright blue, clearly bluer than red; the empty
    # grid is dark blue (B 48) and the ego white
    return np.argwhere((rgb[..., 2] > 120) & (rgb[..., 2] - rgb[..., 0] > 80))


def test_dashboard_draws_tracked_objects_on_the_bev_view(ros_context):
    node = DashboardNode(context=ros_context, parameter_overrides=[
        Parameter("port", value=0), Parameter("cameras", value=["CAM_FRONT"]),
        Parameter("reference", value="none"), Parameter("render_rate_hz", value=20.0),
        Parameter("render_always", value=True), Parameter("bev_scale", value=2)])
    assert node.maybe_autostart()
    io = Node("dashboard_objects_io", context=ros_context)
    grid_pub = io.create_publisher(OccupancyGrid, "/bev/occupancy", 10)
    obj_pub = io.create_publisher(TrackedObjects, "/objects/tracked_base_link", 10)
    diag: dict[str, str] = {}

    def on_diag(msg: DiagnosticArray) -> None:
        for st in msg.status:
            if "dashboard_node" in st.name:
                diag.update({kv.key: kv.value for kv in st.values})

    io.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)
    ex = MultiThreadedExecutor(num_threads=3, context=ros_context)
    ex.add_node(node)
    ex.add_node(io)
    spin = threading.Thread(target=ex.spin, daemon=True)
    spin.start()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (grid_pub.get_subscription_count()
                                                   and obj_pub.get_subscription_count()):
            time.sleep(0.05)
        assert obj_pub.get_subscription_count(), "dashboard_node does not subscribe to objects"
        px = np.zeros((0, 2), int)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len(px) < 20:
            grid_pub.publish(_grid(50.0))
            obj_pub.publish(_tracks(50.0, "base_link", 15.0, 5.0))
            time.sleep(0.2)
            px = _car_pixels(node.server.url)
        assert len(px) >= 20, "no car outline on /bev"
        # display: forward up, left on the left, ego at (row 200, col 200), 4 px per metre
        assert abs(px[:, 0].mean() - (200 - 15 * 4)) < 8
        assert abs(px[:, 1].mean() - (200 - 5 * 4)) < 12  # the "#5" text sits right of it
        # tracks in map cannot be drawn on the base_link grid: counted, not drawn
        obj_pub.publish(_tracks(51.0, "map", 100.0, 50.0))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "objects_frame" not in diag:
            time.sleep(0.1)
        assert diag.get("objects_frame") == "1", diag
    finally:
        ex.shutdown(timeout_sec=5.0)
        spin.join(10.0)
        node.destroy_node()
        io.destroy_node()
