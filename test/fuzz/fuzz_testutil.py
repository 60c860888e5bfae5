"""Helpers for hostile-input tests over real DDS: the nodes run in a separate process started with
``python -m lss_bev_ros.pipeline --params-file <tmp yaml>``; this (test) process publishes the
bad input and listens to ``/diagnostics`` and the nodes' outputs."""

from __future__ import annotations

import array
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[2]


class NodeProcess:
    """The pipeline process: nodes of one parameter file, output captured in a log file."""

    def __init__(self, params: dict[str, Any], tmp_path: Path) -> None:
        self.params_file = tmp_path / "nodes.yaml"
        self.params_file.write_text(yaml.safe_dump(params, sort_keys=False))
        self.log_path = tmp_path / "nodes.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lss_bev_ros.pipeline", "--params-file",
             str(self.params_file)], cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT,
            env=dict(os.environ), start_new_session=True)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15.0)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5.0)
        self._log.close()


class Listener:
    """A test-side rclpy node spinning in a thread: publishers of the hostile input and the
    newest ``/diagnostics`` values per node name."""

    def __init__(self, ctx: Any) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node

        self.node = Node("hostile_input_publisher", context=ctx)
        self.diag: dict[str, dict[str, str]] = {}
        self.diag_seen: dict[str, float] = {}  # node -> monotonic time of its last status
        self.received: dict[str, list[tuple[float, Any]]] = {}  # topic -> (monotonic, msg)
        self._lock = threading.Lock()
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 50)
        self.ex = SingleThreadedExecutor(context=ctx)
        self.ex.add_node(self.node)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while not self._stop.is_set():
            self.ex.spin_once(timeout_sec=0.05)

    def _on_diag(self, msg: Any) -> None:
        with self._lock:
            for st in msg.status:
                name = st.name.strip("/").split("/")[-1]
                self.diag[name] = {kv.key: kv.value for kv in st.values}
                self.diag_seen[name] = time.monotonic()

    def collect(self, msg_type: type, topic: str, depth: int = 20) -> None:
        """Keep every message received on ``topic`` (with its arrival time)."""
        self.received.setdefault(topic, [])

        def keep(m: Any) -> None:
            with self._lock:
                self.received[topic].append((time.monotonic(), m))
                del self.received[topic][:-200]

        self.node.create_subscription(msg_type, topic, keep, depth)

    def arrived_since(self, topic: str, t: float) -> int:
        with self._lock:
            return sum(1 for ta, _ in self.received.get(topic, []) if ta >= t)

    def values(self, node: str) -> dict[str, str]:
        with self._lock:
            return dict(self.diag.get(node, {}))

    def count(self, node: str, key: str) -> int:
        return int(self.values(node).get(key, "0"))

    def publisher(self, msg_type: type, topic: str, reliable: bool = True, depth: int = 50) -> Any:
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        qos = QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE if reliable
                         else ReliabilityPolicy.BEST_EFFORT)
        return self.node.create_publisher(msg_type, topic, qos)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5.0)
        self.ex.shutdown()
        self.node.destroy_node()


def wait_for(pred: Callable[[], bool], timeout: float, period: float = 0.1) -> bool:
    """Poll ``pred`` until true or ``timeout`` seconds passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(period)
    return pred()


def stamp(t: float) -> Any:
    from builtin_interfaces.msg import Time

    return Time(sec=int(t), nanosec=round((t - int(t)) * 1e9))


def cloud_msg(points: np.ndarray, t: float, frame: str = "base_link") -> Any:
    """N x 3 metres -> a well-formed PointCloud2 (x, y, z, intensity, ring)."""
    from sensor_msgs.msg import PointCloud2, PointField

    from lss_bev_ros.conversions import points_to_pointcloud2_fields

    pts = np.zeros((len(points), 5), np.float32)
    pts[:, :3] = points
    fields, step, data = points_to_pointcloud2_fields(pts)
    m = PointCloud2()
    m.header.stamp, m.header.frame_id = stamp(t), frame
    m.height, m.width = 1, len(pts)
    m.fields = [PointField(name=n, offset=o, datatype=d, count=1) for n, o, d in fields]
    m.point_step, m.row_step = step, step * len(pts)
    m.data = array.array("B", data)
    return m


def eval_and_dashboard_params(grid_topic: str = "/bev/occupancy") -> dict[str, Any]:
    """eval_node (LiDAR reference, clouds in base_link) + dashboard_node (port 0, rendering
    always so every cloud is converted)."""
    return {
        "eval_node": {"ros__parameters": {"reference": "lidar", "grid_topic": grid_topic,
                                          "qos_reliable": True}},
        "dashboard_node": {"ros__parameters": {
            "port": 0, "render_always": True, "reference": "lidar", "qos_reliable": True,
            "render_rate_hz": 2.0, "occupancy_topic": grid_topic}},
    }
