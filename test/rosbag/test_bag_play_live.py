"""``play`` into a live graph over real DDS: a separate rclpy subscriber node receives the bag's
messages with the recorded spacing scaled by the requested rate; /tf_static is latched;
/clock carries bag time; a corrupt record is counted and skipped."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from rosbag_tools.bagio import TYPESTORE, is_latched, iter_raw, make_qos, open_bag
from rosbag_tools.play import BagPlayer

IMG = "/cameras/cam_front/image_raw/compressed"


def _stamp_ns(h) -> int:
    return h.stamp.sec * 1_000_000_000 + h.stamp.nanosec


class Recorder:
    """Subscriptions that log (monotonic receive time, message) per topic."""

    def __init__(self, node, topics: dict[str, type], qos: QoSProfile | int = 10) -> None:
        self.got: dict[str, list[tuple[float, object]]] = {t: [] for t in topics}
        self.subs = [
            node.create_subscription(cls, t, lambda m, t=t: self.got[t].append(
                (time.monotonic(), m)), qos)
            for t, cls in topics.items()
        ]


def _bag_stamps(bag: Path, topic: str) -> list[int]:
    with open_bag(bag) as r:
        return [t for c, t, _ in iter_raw(r, [topic])]


def _spin_while(executor, cond, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while cond() and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.02)


@pytest.mark.parametrize("rate", [2.0])
def test_play_at_rate_into_live_subscriber(ros_context, synth_bag: Path, rate: float) -> None:
    import rclpy
    from nav_msgs.msg import Odometry
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import CompressedImage

    sub_node = rclpy.create_node("bag_test_listener", context=ros_context)
    play_node = rclpy.create_node("bag_test_player", context=ros_context)
    ex = SingleThreadedExecutor(context=ros_context)
    ex.add_node(sub_node)
    rec = Recorder(sub_node, {IMG: CompressedImage, "/odom": Odometry, "/clock": Clock})
    player = BagPlayer(play_node, synth_bag, rate=rate, topics=[IMG, "/odom"], clock=True,
                       clock_hz=20.0, wait_for_subscribers_s=10.0)
    try:
        player.start()
        _spin_while(ex, lambda: player.running, 30.0)
        _spin_while(ex, lambda: len(rec.got[IMG]) < 5 or len(rec.got["/odom"]) < 5, 3.0)
        stats = player.join(1.0)
    finally:
        player.stop()
        player.destroy()
        ex.shutdown()
        sub_node.destroy_node()
        play_node.destroy_node()

    want = _bag_stamps(synth_bag, IMG)
    got = rec.got[IMG]
    assert [_stamp_ns(m.header) for _, m in got] == want  # every frame, in order
    assert len(rec.got["/odom"]) == len(_bag_stamps(synth_bag, "/odom"))
    assert stats.published == {IMG: 5, "/odom": 5} and not stats.errors
    # spacing: bag 0.5 s apart -> 0.5 / rate on the wall clock
    arrivals = np.array([t for t, _ in got])
    gaps = np.diff(arrivals)
    expected = np.diff(want) * 1e-9 / rate
    assert np.median(gaps) == pytest.approx(np.median(expected), abs=0.06)
    assert np.all(np.abs(gaps - expected) < 0.2), gaps  # loaded CI machines jitter
    span = arrivals[-1] - arrivals[0]
    assert span == pytest.approx((want[-1] - want[0]) * 1e-9 / rate, abs=0.2)
    # /clock: bag time, non-decreasing, inside the bag's span
    clock = [m.clock.sec * 1_000_000_000 + m.clock.nanosec for _, m in rec.got["/clock"]]
    assert len(clock) >= 10
    assert all(b >= a for a, b in itertools.pairwise(clock))
    assert want[0] <= clock[0] and clock[-1] <= want[-1] + 100_000_000


def _latched_map_bag(path: Path) -> Path:
    """A bag with one latched (transient-local) nav_msgs/OccupancyGrid on /map."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    t = TYPESTORE.types
    grid = t["nav_msgs/msg/OccupancyGrid"](
        header=t["std_msgs/msg/Header"](
            stamp=t["builtin_interfaces/msg/Time"](sec=5, nanosec=0), frame_id="map"),
        info=t["nav_msgs/msg/MapMetaData"](
            map_load_time=t["builtin_interfaces/msg/Time"](sec=5, nanosec=0), resolution=0.5,
            width=4, height=2, origin=t["geometry_msgs/msg/Pose"](
                position=t["geometry_msgs/msg/Point"](x=0.0, y=0.0, z=0.0),
                orientation=t["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0))),
        data=np.arange(8, dtype=np.int8),
    )
    with Writer(path, version=8, storage_plugin=StoragePlugin.MCAP) as w:
        conn = w.add_connection("/map", "nav_msgs/msg/OccupancyGrid", typestore=TYPESTORE,
                                offered_qos_profiles=[make_qos(latched=True)])
        w.write(conn, 5_000_000_000, TYPESTORE.serialize_cdr(grid, "nav_msgs/msg/OccupancyGrid"))
    return path


LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)


def test_latched_topic_reaches_late_subscriber(ros_context, tmp_path: Path) -> None:
    """A topic recorded transient-local is re-published latched: a subscriber that joins after
    play ended still gets it (how /tf_static must behave)."""
    import rclpy
    from nav_msgs.msg import OccupancyGrid

    bag = _latched_map_bag(tmp_path / "map")
    with open_bag(bag) as r:
        assert [is_latched(c) for c in r.connections] == [True]
    play_node = rclpy.create_node("bag_test_latch_player", context=ros_context)
    sub_node = rclpy.create_node("bag_test_latch_listener", context=ros_context)
    ex = SingleThreadedExecutor(context=ros_context)
    ex.add_node(sub_node)
    player = BagPlayer(play_node, bag)
    try:
        player.run()  # played to the end before anyone subscribed
        late = Recorder(sub_node, {"/map": OccupancyGrid}, LATCHED)
        _spin_while(ex, lambda: not late.got["/map"], 10.0)
    finally:
        player.destroy()
        ex.shutdown()
        sub_node.destroy_node()
        play_node.destroy_node()
    assert len(late.got["/map"]) == 1
    assert list(late.got["/map"][0][1].data) == list(range(8))


def test_tf_static_latched_or_reported_missing(ros_context, synth_bag: Path) -> None:
    """/tf_static of the converted bag is latched; where tf2_msgs is not installed (the PyPI ROS
    set here has none) play says so per topic and still plays the rest."""
    import rclpy

    try:
        from tf2_msgs.msg import TFMessage
    except ImportError:
        TFMessage = None
    play_node = rclpy.create_node("bag_test_tf_player", context=ros_context)
    sub_node = rclpy.create_node("bag_test_tf_listener", context=ros_context)
    ex = SingleThreadedExecutor(context=ros_context)
    ex.add_node(sub_node)
    player = BagPlayer(play_node, synth_bag, rate=50.0, topics=["/tf_static", "/tf", "/odom"])
    late = None
    try:
        stats = player.run()
        if TFMessage is not None:
            late = Recorder(sub_node, {"/tf_static": TFMessage}, LATCHED)
            _spin_while(ex, lambda: not late.got["/tf_static"], 10.0)
    finally:
        player.destroy()
        ex.shutdown()
        sub_node.destroy_node()
        play_node.destroy_node()
    assert stats.published["/odom"] == 5
    if TFMessage is None:
        assert set(stats.skipped_topics) == {"/tf", "/tf_static"}
        assert all("tf2_msgs" in why for why in stats.skipped_topics.values())
    else:
        assert stats.published["/tf_static"] == 1 and not stats.skipped_topics
        (_, msg), = late.got["/tf_static"]
        assert len(msg.transforms) == 7
        assert {t.header.frame_id for t in msg.transforms} == {"base_link"}


def test_bad_record_is_counted_and_skipped(ros_context, bad_record_bag: Path) -> None:
    import rclpy
    from nav_msgs.msg import Odometry

    play_node = rclpy.create_node("bag_test_bad_player", context=ros_context)
    sub_node = rclpy.create_node("bag_test_bad_listener", context=ros_context)
    ex = SingleThreadedExecutor(context=ros_context)
    ex.add_node(sub_node)
    odom = Recorder(sub_node, {"/odom": Odometry})
    bad = BagPlayer(play_node, bad_record_bag, rate=20.0, wait_for_subscribers_s=10.0)
    try:
        bad.start()
        _spin_while(ex, lambda: bad.running, 20.0)
        _spin_while(ex, lambda: len(odom.got["/odom"]) < 5, 2.0)
        stats = bad.join(1.0)
    finally:
        bad.stop()
        bad.destroy()
        ex.shutdown()
        sub_node.destroy_node()
        play_node.destroy_node()
    assert stats.errors == {"/odom": 1} and stats.published == {"/odom": 5}
    xs = [m.pose.pose.position.x for _, m in odom.got["/odom"]]
    assert xs == [0.0, 1.0, 2.0, 4.0, 5.0]  # record 3 skipped, the rest delivered


def test_raw_mode_delivers_identical_messages(ros_context, synth_bag: Path) -> None:
    import rclpy
    from sensor_msgs.msg import PointCloud2

    sub_node = rclpy.create_node("bag_test_raw_listener", context=ros_context)
    play_node = rclpy.create_node("bag_test_raw_player", context=ros_context)
    ex = SingleThreadedExecutor(context=ros_context)
    ex.add_node(sub_node)
    rec = Recorder(sub_node, {"/lidar_top/points": PointCloud2})
    player = BagPlayer(play_node, synth_bag, rate=20.0, topics=["/lidar_top/points"], raw=True,
                       wait_for_subscribers_s=10.0)
    try:
        player.start()
        _spin_while(ex, lambda: player.running, 20.0)
        _spin_while(ex, lambda: len(rec.got["/lidar_top/points"]) < 5, 2.0)
        player.join(1.0)
    finally:
        player.stop()
        player.destroy()
        ex.shutdown()
        sub_node.destroy_node()
        play_node.destroy_node()
    with open_bag(synth_bag) as r:
        src = [TYPESTORE.deserialize_cdr(raw, c.msgtype)
               for c, _, raw in iter_raw(r, ["/lidar_top/points"])]
    got = [m for _, m in rec.got["/lidar_top/points"]]
    assert len(got) == len(src) == 5
    for a, b in zip(got, src, strict=True):
        assert bytes(a.data) == bytes(b.data) and a.width == b.width
        assert _stamp_ns(a.header) == _stamp_ns(b.header)


def test_cli_play_subprocess(ros_context, synth_bag: Path) -> None:
    """``lss-bev-bag play`` as its own process (same ROS domain) feeds our subscriber."""
    import rclpy
    from nav_msgs.msg import Odometry

    sub_node = rclpy.create_node("bag_test_cli_listener", context=ros_context)
    ex = SingleThreadedExecutor(context=ros_context)
    ex.add_node(sub_node)
    rec = Recorder(sub_node, {"/odom": Odometry})
    proc = subprocess.Popen(
        [sys.executable, "-m", "rosbag_tools.cli", "play", str(synth_bag), "--rate", "4",
         "--topics", "/odom", "--delay", "0.5", "--wait-for-subscribers", "30"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ),
    )
    try:
        _spin_while(ex, lambda: proc.poll() is None, 60.0)
        _spin_while(ex, lambda: len(rec.got["/odom"]) < 5, 2.0)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        ex.shutdown()
        sub_node.destroy_node()
    assert proc.returncode == 0, err
    assert "published 5 messages" in out
    assert len(rec.got["/odom"]) == 5
