"""fusion_node in its own process (``python -m lss_bev_ros.pipeline --nodes fusion_node``) over
real DDS: grids + /odom in, /bev/occupancy_fused and /diagnostics out."""

from __future__ import annotations

import array
import contextlib
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import yaml
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import OccupancyGrid, Odometry
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node

from lss_bev_ros.conversions import GridSpec, occupancy_to_probability, probability_to_occupancy

REPO = Path(__file__).resolve().parents[2]
GRID = GridSpec()
OBSTACLE_MAP_X = 20.0  # a static 2 m block at map (20, 0); the ego drives along map x


def _stamp(t: float) -> Time:
    return Time(sec=int(t), nanosec=round((t - int(t)) * 1e9))


def _grid(t: float, ego_x: float, seen: bool) -> OccupancyGrid:
    prob = np.full((GRID.nx, GRID.ny), 0.05, np.float32)
    known = np.zeros((GRID.nx, GRID.ny), bool)
    known[100:180, 40:160] = True  # 0..40 m ahead, +-20 m
    ix, iy, _ = GRID.cell_of(np.array([OBSTACLE_MAP_X - ego_x]), np.array([0.0]))
    prob[ix[0] - 2:ix[0] + 2, iy[0] - 2:iy[0] + 2] = 0.95 if seen else 0.4
    g = OccupancyGrid()
    g.header.stamp, g.header.frame_id = _stamp(t), "base_link"
    g.info.resolution = GRID.resolution
    g.info.width, g.info.height = GRID.nx, GRID.ny
    g.info.origin.position.x, g.info.origin.position.y = GRID.xmin, GRID.ymin
    g.info.origin.orientation.w = 1.0
    g.data = array.array("b", probability_to_occupancy(prob, known).tobytes())
    return g


def _odom(t: float, x: float) -> Odometry:
    m = Odometry()
    m.header.stamp, m.header.frame_id, m.child_frame_id = _stamp(t), "map", "base_link"
    m.pose.pose.position.x = x
    m.pose.pose.orientation.w = 1.0
    return m


class _Io:
    def __init__(self, ctx) -> None:
        self.node = Node("fusion_test_io", context=ctx)
        self.pub_grid = self.node.create_publisher(OccupancyGrid, "/bev/occupancy", 10)
        self.pub_odom = self.node.create_publisher(Odometry, "/odom", 10)
        self.fused: list[OccupancyGrid] = []
        self.diag: dict[str, str] = {}
        self.node.create_subscription(OccupancyGrid, "/bev/occupancy_fused", self.fused.append,
                                      10)
        self.fused_map: list[OccupancyGrid] = []
        self.node.create_subscription(OccupancyGrid, "/bev/occupancy_fused_map",
                                      self.fused_map.append, 10)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)
        self.ex = SingleThreadedExecutor(context=ctx)
        self.ex.add_node(self.node)

    def _on_diag(self, msg: DiagnosticArray) -> None:
        for st in msg.status:
            if st.name.endswith("fusion_node"):
                self.diag = {kv.key: kv.value for kv in st.values}

    def spin_until(self, pred, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.ex.spin_once(timeout_sec=0.05)
            if pred():
                return True
        return pred()

    def fused_at(self, t: float, in_map: bool = False) -> OccupancyGrid | None:
        want = _stamp(t)
        grids = self.fused_map if in_map else self.fused
        return next((g for g in grids if g.header.stamp == want), None)


@contextlib.contextmanager
def _fusion_node(tmp_path: Path) -> Iterator[subprocess.Popen]:
    """fusion_node in its own process (pose_wait_s 2 s); SIGINT at the end, then its log must
    hold no traceback."""
    params = tmp_path / "fusion.yaml"
    params.write_text(yaml.safe_dump({"fusion_node": {"ros__parameters": {
        "pose_wait_s": 2.0}}}))
    with open(tmp_path / "fusion_node.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lss_bev_ros.pipeline", "--params-file", str(params),
             "--nodes", "fusion_node"],
            cwd=str(REPO), env=dict(os.environ), stdout=log, stderr=subprocess.STDOUT)
        try:
            yield proc
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    text = (tmp_path / "fusion_node.log").read_text()
    assert "Traceback" not in text, text[-3000:]


def _obstacle_cells(g: OccupancyGrid, ego_x: float) -> np.ndarray:
    prob, known = occupancy_to_probability(g.data, g.info.width, g.info.height)
    ix, iy, _ = GRID.cell_of(np.array([OBSTACLE_MAP_X - ego_x]), np.array([0.0]))
    return np.where(known, prob, -1.0)[ix[0] - 2:ix[0] + 2, iy[0] - 2:iy[0] + 2]


def test_fusion_node_fuses_across_a_missed_frame_and_counts_a_bad_pose(ros_context, tmp_path):
    with _fusion_node(tmp_path) as proc:
        io = _Io(ros_context)
        try:
            assert io.spin_until(lambda: io.pub_grid.get_subscription_count() > 0
                                 and io.pub_odom.get_subscription_count() > 0, 60.0), \
                "fusion_node never subscribed"
            io.spin_until(lambda: False, 0.5)  # let the reliable readers match
            stamps = [100.0 + 0.1 * k for k in range(6)]
            for k, t in enumerate(stamps):
                ego_x = 1.0 * k  # 10 m/s
                io.pub_odom.publish(_odom(t, ego_x))
                io.pub_grid.publish(_grid(t, ego_x, seen=(k != 4)))  # frame 4: the block is missed
                assert io.spin_until(lambda t=t: io.fused_at(t) is not None, 20.0), \
                    f"no fused grid for {t}; diag {io.diag}"
            # a non-finite pose: single-frame grid out, counted
            t_bad = 100.6
            io.pub_odom.publish(_odom(t_bad, math.nan))
            io.pub_grid.publish(_grid(t_bad, 6.0, seen=False))
            assert io.spin_until(lambda: io.fused_at(t_bad) is not None, 20.0)
            assert io.spin_until(lambda: io.diag.get("bad_pose") == "1", 10.0), io.diag
            assert proc.poll() is None, "fusion_node died"
        finally:
            io.node.destroy_node()

    for t in stamps:
        g = io.fused_at(t)
        assert g.header.frame_id == "base_link" and (g.info.width, g.info.height) == (200, 200)
        data = np.asarray(g.data, dtype=np.int8)
        assert data.min() == -1 and data.max() <= 100
    # the weakly missed frame: the single-frame grid says 40 %, the fused grid holds the block
    missed = _obstacle_cells(io.fused_at(stamps[4]), 4.0)
    assert (missed > 0.5).mean() >= 0.75, missed
    # bad pose: the published grid is the single-frame one (the block at 40 %)
    bad = _obstacle_cells(io.fused_at(t_bad), 6.0)
    assert np.allclose(bad, 0.4), bad
    assert int(io.diag["published"]) == 7 and int(io.diag["fused"]) == 5, io.diag
    assert io.diag["last_status"] == "bad_pose"
    # the map-frame window: one per fused frame (none for the single-frame fallback), cells
    # fixed in map (origin on whole cells), the block held on its map cells in the missed frame
    assert int(io.diag["published_map"]) == 6, io.diag
    assert io.fused_at(t_bad, in_map=True) is None
    for k, t in enumerate(stamps):
        m = io.fused_at(t, in_map=True)
        assert m is not None and m.header.frame_id == "map"
        assert (m.info.width, m.info.height, m.info.resolution) == (288, 288, 0.5)
        ox, oy = m.info.origin.position.x, m.info.origin.position.y
        assert ox % 0.5 == 0.0 and oy % 0.5 == 0.0 and abs(ox + 72.0 - k) <= 0.5
        prob, known = occupancy_to_probability(m.data, m.info.width, m.info.height)
        i, j = int((OBSTACLE_MAP_X - ox) // 0.5), int((0.0 - oy) // 0.5)
        patch = np.where(known, prob, -1.0)[i - 1:i + 2, j - 1:j + 2]
        assert (patch > 0.5).all(), (t, patch)


def test_fusion_node_takes_the_pose_from_tf_and_waits_for_it(ros_context):
    from geometry_msgs.msg import TransformStamped
    from rclpy.parameter import Parameter
    from tf2_msgs.msg import TFMessage

    from lss_bev_ros.nodes.fusion_node import FusionNode

    node = FusionNode(context=ros_context, parameter_overrides=[
        Parameter("pose_source", value="tf"), Parameter("pose_wait_s", value=5.0)])
    assert node.maybe_autostart()
    io = _Io(ros_context)
    io.ex.add_node(node)
    pub_tf = io.node.create_publisher(TFMessage, "/tf", 10)
    try:
        assert io.spin_until(lambda: pub_tf.get_subscription_count() > 0
                             and io.pub_grid.get_subscription_count() > 0, 10.0)
        for k in range(4):
            t, ego_x = 200.0 + 0.1 * k, 1.0 * k
            io.pub_grid.publish(_grid(t, ego_x, seen=(k != 3)))  # grid first: it must wait
            io.spin_until(lambda: False, 0.2)
            assert io.fused_at(t) is None, "published before its pose arrived"
            tf = TransformStamped()
            tf.header.stamp, tf.header.frame_id, tf.child_frame_id = _stamp(t), "map", "base_link"
            tf.transform.translation.x = ego_x
            tf.transform.rotation.w = 1.0
            pub_tf.publish(TFMessage(transforms=[tf]))
            assert io.spin_until(lambda t=t: io.fused_at(t) is not None, 10.0), node.diag.counters
        held = _obstacle_cells(io.fused_at(200.3), 3.0)
        assert (held > 0.5).mean() >= 0.75, held
        assert node.diag.counters.get("no_pose", 0) == 0 and node.diag.counters["fused"] == 3
    finally:
        io.ex.shutdown()
        io.node.destroy_node()
        node.destroy_node()


def _car_grid(t: float, car_x: float, p_car: float) -> OccupancyGrid:
    """Ego parked at the map origin; a 4.5 x 2 m car at (car_x, 5) m seen with ``p_car``."""
    g = _grid(t, 0.0, seen=True)
    prob, known = occupancy_to_probability(g.data, GRID.nx, GRID.ny)
    prob[known & (prob > 0.5)] = 0.05  # no static block here
    xs = GRID.xmin + (np.arange(GRID.nx) + 0.5) * GRID.resolution
    ys = GRID.ymin + (np.arange(GRID.ny) + 0.5) * GRID.resolution
    bx, by = np.meshgrid(xs, ys, indexing="ij")
    car = (np.abs(bx - car_x) <= 2.25) & (np.abs(by - 5.0) <= 1.0)
    prob[car] = p_car
    known[car] = True
    g.data = array.array("b", probability_to_occupancy(prob, known).tobytes())
    return g


def test_fusion_node_moves_a_tracked_cars_history_and_refuses_base_link_tracks(ros_context,
                                                                              tmp_path):
    from lss_bev_ros.conversions.objects import new_uuid_prefix, tracked_objects_msg
    from lss_bev_ros.msg import TrackedObjects
    from lss_bev_ros.objects import Object3D

    with _fusion_node(tmp_path) as proc:
        io = _Io(ros_context)
        pub_tracks = io.node.create_publisher(TrackedObjects, "/objects/tracked", 10)
        prefix = new_uuid_prefix()

        def car_x(k: int) -> float:
            return 5.0 + 5.0 * k  # 10 m/s at 2 Hz: 5 m a frame, more than its length

        def tracks(t: float, x: float, frame: str) -> TrackedObjects:
            car = Object3D(x, 5.0, 0.8, 4.5, 2.0, 1.6, 0.0, True, "car", 0.9, 0.9, vx=10.0,
                           vy=0.0, track_id=1)
            # a parked car whose filter has not settled: 4 m/s, but within 2.5 sigma (2 m/s
            # each) of standing still; the twist covariance must reach the rule: not moved
            jitter = Object3D(-20.0, -20.0, 0.8, 4.5, 2.0, 1.6, 0.0, True, "car", 0.9, 0.9,
                              vx=4.0, vy=0.0, velocity_covariance=np.diag([4.0, 4.0]),
                              track_id=2)
            return tracked_objects_msg([car, jitter], _stamp(t), frame, prefix)

        try:
            assert io.spin_until(lambda: io.pub_grid.get_subscription_count() > 0
                                 and pub_tracks.get_subscription_count() > 0, 60.0), \
                "fusion_node never subscribed"
            io.spin_until(lambda: False, 0.5)
            stamps = [200.0 + 0.5 * k for k in range(4)]
            for k, t in enumerate(stamps):
                io.pub_odom.publish(_odom(t, 0.0))
                io.pub_grid.publish(_car_grid(t, car_x(k), 0.95 if k < 3 else 0.4))  # 3: weak
                assert io.spin_until(lambda t=t: io.fused_at(t) is not None, 20.0), io.diag
                pub_tracks.publish(tracks(t, car_x(k), "map"))  # after the grid, as live
                assert io.spin_until(lambda k=k: io.diag.get("track_sets") == str(k + 1), 10.0)
            pub_tracks.publish(tracks(stamps[-1] + 0.1, 0.0, "base_link"))
            assert io.spin_until(lambda: io.diag.get("objects_frame_mismatch") == "1", 10.0), \
                io.diag
            assert proc.poll() is None, "fusion_node died"
        finally:
            io.node.destroy_node()
    # frames 1..3 got the previous tracks; only the moving car's history moved
    assert int(io.diag["objects_moved"]) == 3, io.diag
    g = io.fused_at(stamps[3])
    prob, _ = occupancy_to_probability(g.data, GRID.nx, GRID.ny)
    xs = GRID.xmin + (np.arange(GRID.nx) + 0.5) * GRID.resolution
    ix = np.nonzero(np.abs(xs - car_x(3)) <= 2.0)[0]
    iy = np.nonzero(np.abs(xs - 5.0) <= 0.75)[0]
    held = prob[np.ix_(ix, iy)]
    assert (held > 0.5).mean() >= 0.9, held  # the weak frame's car is held where it is now
