"""objects_node in its own process (``python -m lss_bev_ros.pipeline --nodes objects_node``) over
real DDS: six cameras' detections of a synthetic scene + footprint grids + odometry in,
TrackedObjects / DetectedObjects / markers / timing / diagnostics out."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import OccupancyGrid, Odometry
from objects_scene import GRID, Scene, boxes_per_camera, footprint_grid, synth_rig, write_rig
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo
from visualization_msgs.msg import Marker, MarkerArray

from lss_bev_ros.calibration import NUSCENES_CAMERAS, frame_id_for
from lss_bev_ros.conversions import probability_to_occupancy
from lss_bev_ros.conversions.objects import object_from_tracked_msg
from lss_bev_ros.msg import (
    DetectedObjects,
    Detection2D,
    Detection2DArray,
    PipelineTiming,
    TrackedObjects,
)

REPO = Path(__file__).resolve().parents[2]
QOS = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)


def _stamp(t: float) -> Time:
    sec = math.floor(t)
    return Time(sec=int(sec), nanosec=round((t - sec) * 1e9))


def _key(stamp) -> tuple[int, int]:
    return int(stamp.sec), int(stamp.nanosec)


def _array(cam: str, t: float, boxes: np.ndarray, label: str = "car") -> Detection2DArray:
    m = Detection2DArray()
    m.header.stamp, m.header.frame_id = _stamp(t), frame_id_for(cam)
    m.camera_name, m.image_width, m.image_height = cam, 1600, 900
    m.detections = [Detection2D(class_id=0, label=label, score=0.9, track_id=-1,
                                center_x=float((b[0] + b[2]) / 2),
                                center_y=float((b[1] + b[3]) / 2),
                                size_x=float(b[2] - b[0]), size_y=float(b[3] - b[1]))
                    for b in boxes]
    return m


def _grid(prob: np.ndarray, t: float) -> OccupancyGrid:
    g = OccupancyGrid()
    g.header.stamp, g.header.frame_id = _stamp(t), "base_link"
    g.info.resolution, g.info.width, g.info.height = GRID.resolution, GRID.nx, GRID.ny
    g.info.origin.position.x, g.info.origin.position.y = GRID.xmin, GRID.ymin
    g.info.origin.orientation.w = 1.0
    g.data = probability_to_occupancy(prob).tolist()
    return g


def _odom(x: float, y: float, yaw: float, t: float) -> Odometry:
    m = Odometry()
    m.header.stamp, m.header.frame_id, m.child_frame_id = _stamp(t), "map", "base_link"
    m.pose.pose.position.x, m.pose.pose.position.y = x, y
    m.pose.pose.orientation.z, m.pose.pose.orientation.w = math.sin(yaw / 2), math.cos(yaw / 2)
    return m


class _Io:
    """The test's side of DDS: publishes the node's inputs, collects its outputs."""

    def __init__(self, ctx) -> None:
        self.node = Node("objects_test_io", context=ctx)
        n = self.node
        self.dets = {c: n.create_publisher(Detection2DArray, f"/detections/{frame_id_for(c)}",
                                           QOS) for c in NUSCENES_CAMERAS}
        self.grid = n.create_publisher(OccupancyGrid, "/bev/occupancy", 10)
        self.odom = n.create_publisher(Odometry, "/odom", 50)
        self.info = n.create_publisher(CameraInfo, "/cameras/cam_front/camera_info", 10)
        self.tracked: dict[tuple[int, int], TrackedObjects] = {}
        self.detected: dict[tuple[int, int], DetectedObjects] = {}
        self.local: dict[tuple[int, int], TrackedObjects] = {}
        self.markers: list[MarkerArray] = []
        self.timing: list[PipelineTiming] = []
        self.diag: dict[str, str] = {}
        n.create_subscription(TrackedObjects, "/objects/tracked",
                              lambda m: self.tracked.__setitem__(_key(m.header.stamp), m), QOS)
        n.create_subscription(DetectedObjects, "/objects/detected",
                              lambda m: self.detected.__setitem__(_key(m.header.stamp), m), QOS)
        n.create_subscription(TrackedObjects, "/objects/tracked_base_link",
                              lambda m: self.local.__setitem__(_key(m.header.stamp), m), QOS)
        n.create_subscription(MarkerArray, "/objects/markers", self.markers.append, QOS)
        n.create_subscription(PipelineTiming, "/objects/timing", self.timing.append, QOS)
        n.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)
        self.ex = SingleThreadedExecutor(context=ctx)
        self.ex.add_node(n)

    def _on_diag(self, msg: DiagnosticArray) -> None:
        for st in msg.status:
            if st.name.endswith("objects_node"):
                self.diag = {kv.key: kv.value for kv in st.values}

    def spin_until(self, pred, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.ex.spin_once(timeout_sec=0.02)
            if pred():
                return True
        return pred()

    def count(self, key: str) -> int:
        return int(self.diag.get(key, "0"))

    def frame(self, t: float, boxes: dict[str, np.ndarray], grid: np.ndarray | None,
              ego: tuple[float, float, float] | None, extra: list[Detection2DArray] = (),
              timeout: float = 10.0, grid_late_s: float = 0.0) -> TrackedObjects:
        """Publish one frame (odom, grid, bad arrays, six arrays) and wait for its tracks;
        with ``grid_late_s`` the grid follows the detections that much later."""
        if ego is not None:
            self.odom.publish(_odom(*ego, t))
        if grid is not None and not grid_late_s:
            self.grid.publish(_grid(grid, t))
        for m in extra:
            self.dets[next(c for c in NUSCENES_CAMERAS
                           if frame_id_for(c) == m.header.frame_id)].publish(m)
        for cam in NUSCENES_CAMERAS:
            self.dets[cam].publish(_array(cam, t, boxes.get(cam, np.zeros((0, 4)))))
        if grid is not None and grid_late_s:
            self.spin_until(lambda: False, grid_late_s)
            self.grid.publish(_grid(grid, t))
        key = _key(_stamp(t))
        assert self.spin_until(lambda: key in self.tracked, timeout), (
            f"no /objects/tracked for stamp {t}; diagnostics {self.diag}")
        return self.tracked[key]

    def close(self) -> None:
        self.ex.shutdown()
        self.node.destroy_node()


def _start_node(tmp_path: Path, **params) -> tuple[subprocess.Popen, Path]:
    rig = write_rig(tmp_path / "rig.yaml")
    doc = {"objects_node": {"ros__parameters": {
        "rig_file": str(rig), "qos_reliable": True, "use_camera_info": False, **params}}}
    cfg = tmp_path / "objects.yaml"
    cfg.write_text(yaml.safe_dump(doc))
    log_path = tmp_path / "objects_node.log"
    log = open(log_path, "w")  # noqa: SIM115 - the child process owns it until it exits
    proc = subprocess.Popen(
        [sys.executable, "-m", "lss_bev_ros.pipeline", "--params-file", str(cfg),
         "--nodes", "objects_node"],
        cwd=str(REPO), env=dict(os.environ), stdout=log, stderr=subprocess.STDOUT)
    log.close()
    return proc, log_path


def _stop_node(proc: subprocess.Popen, log_path: Path) -> str:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    text = log_path.read_text()
    assert "Traceback" not in text, text[-3000:]
    return text


@pytest.fixture
def io_and_node(ros_context, tmp_path, request):
    params = getattr(request, "param", {})
    proc, log_path = _start_node(tmp_path, **params)
    io = _Io(ros_context)
    try:
        assert io.spin_until(lambda: all(p.get_subscription_count() > 0
                                         for p in (*io.dets.values(), io.grid, io.odom)), 60), (
            "objects_node never subscribed: " + log_path.read_text()[-2000:])
        time.sleep(0.3)  # reliable readers and writers finish matching
        yield io, proc
    finally:
        io.close()
        _stop_node(proc, log_path)


# every frame's grid is sent before its detections; the wait only matters when DDS delivers it
# late (once > 0.5 s under the fresh-clone CI on 2 cores: one grid_missing), not a tracking fault
@pytest.mark.parametrize("io_and_node", [{"input_wait_s": 2.0}], indirect=True)
def test_car_passing_from_front_to_front_right_keeps_one_track_with_true_velocity(io_and_node):
    io, proc = io_and_node
    scene, rig = Scene(), synth_rig()
    rng = np.random.default_rng(3)
    v_gt = np.array(scene.world_velocity())
    n_frames = 40
    seen_by, results = [], []
    for k in range(n_frames):
        t = scene.t0 + 0.1 * k
        car = scene.car_base(t)
        boxes = boxes_per_camera(rig, car, rng)
        seen_by.append({c for c, b in boxes.items() if len(b)})
        results.append((t, io.frame(t, boxes, footprint_grid([car]), scene.ego(t))))
    # the scene really moves the car from CAM_FRONT alone into CAM_FRONT_RIGHT alone
    assert seen_by[0] == {"CAM_FRONT"} and seen_by[-1] == {"CAM_FRONT_RIGHT"}
    assert any(s == {"CAM_FRONT", "CAM_FRONT_RIGHT"} for s in seen_by)

    ids, pos_err, vel_err = set(), [], []
    for k, (t, msg) in enumerate(results):
        assert msg.header.frame_id == "map"
        assert _key(msg.header.stamp) == _key(_stamp(t))  # output stamp = input stamp
        objs = [object_from_tracked_msg(o) for o in msg.objects]
        if k < 2:  # confirmation takes two updates
            continue
        gx, gy = scene.car_map(t)
        near = [o for o in objs if math.hypot(o["x"] - gx, o["y"] - gy) < 3.0]
        assert len(near) == 1 and len(objs) == 1, f"frame {k}: tracks {objs}"
        o = near[0]
        ids.add(o["id"])
        pos_err.append(math.hypot(o["x"] - gx, o["y"] - gy))
        if o["age_s"] > 1.0:
            vel_err.append(float(np.hypot(o["vx"] - v_gt[0], o["vy"] - v_gt[1])
                                 / np.hypot(*v_gt)))
    assert len(ids) == 1, f"the car changed track id: {ids}"
    assert vel_err and max(vel_err) <= 0.2, f"velocity error {max(vel_err):.1%} of |v|"
    first, last = results[2][1].objects[0], results[-1][1].objects[0]
    assert "CAM_FRONT" in first.source_cameras and "CAM_FRONT_RIGHT" in last.source_cameras
    assert bytes(first.object_id.uuid) == bytes(last.object_id.uuid)
    print(f"\nposition error (map) over {len(pos_err)} frames: mean {np.mean(pos_err):.2f} m, "
          f"max {np.max(pos_err):.2f} m; velocity error after 1 s: mean "
          f"{np.mean(vel_err):.1%}, max {np.max(vel_err):.1%} of {np.hypot(*v_gt):.2f} m/s")

    # the other outputs of the same frames
    t_last = results[-1][0]
    assert io.spin_until(lambda: _key(_stamp(t_last)) in io.detected, 5.0)
    det = io.detected[_key(_stamp(t_last))]
    assert det.header.frame_id == "base_link" and len(det.objects) == 1
    bx, by, _ = scene.car_base(t_last)
    p = det.objects[0].kinematics.pose_with_covariance.pose.position
    assert math.hypot(p.x - bx, p.y - by) < 2.0
    last_key = _key(_stamp(t_last))
    assert io.spin_until(lambda: last_key in io.local, 5.0), "no /objects/tracked_base_link"
    local = object_from_tracked_msg(io.local[last_key].objects[0])  # the same track, base_link
    assert io.local[last_key].header.frame_id == "base_link"
    assert math.hypot(local["x"] - bx, local["y"] - by) < 1.5
    assert local["id"] == results[-1][1].objects[0].id
    assert io.spin_until(lambda: len(io.timing) >= n_frames and io.count("frames_processed")
                         >= n_frames, 10), (len(io.timing), io.diag)
    assert {s.name for s in io.timing[-1].stages} >= {"lift", "track", "publish"}
    core = [sum(s.duration_ms for s in m.stages if s.name in ("lift", "track"))
            for m in io.timing]
    print(f"objects stage (lift + track) per frame: median {np.median(core):.2f} ms, node total "
          f"median {np.median([m.total_ms for m in io.timing]):.2f} ms")
    assert io.timing[-1].frames_processed >= n_frames
    ma = io.markers[-1]
    assert ma.markers[0].action == Marker.DELETEALL
    assert {m.ns for m in ma.markers[1:]} >= {"tracked/box", "tracked/id", "tracked/velocity"}
    for key in ("grid_missing", "no_map_transform", "time_jump", "unknown_camera"):
        assert io.count(key) == 0, io.diag
    assert proc.poll() is None


@pytest.mark.parametrize("io_and_node", [{"input_wait_s": 1.0, "use_camera_info": True}],
                         indirect=True)
def test_bad_input_is_counted_while_good_frames_keep_producing_tracks(io_and_node):
    io, proc = io_and_node
    rig = synth_rig()
    car = (15.0, 0.0, 0.0)  # parked in front of a parked ego
    good = boxes_per_camera(rig, car)
    grid = footprint_grid([car])
    ego = (10.0, 5.0, 0.0)
    t = 500.0
    dt = 0.1

    def step(**kw) -> TrackedObjects:
        nonlocal t
        t += dt
        args = {"boxes": good, "grid": grid, "ego": ego, **kw}
        return io.frame(t, args["boxes"], args["grid"], args["ego"], kw.get("extra", ()),
                        grid_late_s=kw.get("grid_late_s", 0.0))

    def wait_count(key: str, n: int = 1) -> None:
        assert io.spin_until(lambda: io.count(key) >= n, 5.0), f"{key} not counted: {io.diag}"

    for _ in range(3):
        out = step()
    assert len(out.objects) == 1 and out.header.frame_id == "map"
    track_uuid = bytes(out.objects[0].object_id.uuid)

    # detections from a camera the node does not know, on a known camera's topic
    stranger = _array("CAM_FRONT", t + dt, good["CAM_FRONT"])
    stranger.camera_name = "CAM_ROOF"
    out = step(extra=[stranger])
    wait_count("unknown_camera")
    assert len(out.objects) == 1

    # NaN, negative and outside-the-image boxes next to the good one
    bad = dict(good)
    bad["CAM_BACK"] = np.array([[np.nan, 10, 50, 60], [300, 200, 250, 260],
                                [1700, 100, 1800, 200]], float)
    out = step(boxes=bad)
    for key in ("nan_box", "negative_box", "box_outside_image"):
        wait_count(key)
    assert len(out.objects) == 1

    # missing grid: geometry only, same track
    out = step(grid=None)
    wait_count("grid_missing")
    assert len(out.objects) == 1 and bytes(out.objects[0].object_id.uuid) == track_uuid

    # a grid that comes after its detections (bev_node slower than the detector) is waited for
    missing = io.count("grid_missing")
    out = step(grid_late_s=0.15)
    assert len(out.objects) == 1
    assert io.spin_until(lambda: io.count("frames_processed") >= 7, 3.0)
    assert io.count("grid_missing") == missing, io.diag

    # stale grid: stamped far behind the frames
    io.grid.publish(_grid(grid, t - 3.0))
    out = step()
    wait_count("grid_stale")
    assert len(out.objects) == 1

    # no transform to map (odometry stops): tracking falls back to base_link, counted
    for _ in range(4):
        out = step(ego=None)
    wait_count("no_map_transform")
    assert out.header.frame_id == "base_link"
    for _ in range(3):
        out = step()
    assert out.header.frame_id == "map" and len(out.objects) == 1

    # camera_info: invalid intrinsics are counted; half-size intrinsics replace the rig's and
    # the full-size boxes are rescaled (counted as image_size_mismatch), the track goes on
    before_info = bytes(out.objects[0].object_id.uuid)
    io.info.publish(CameraInfo(width=1600, height=900))  # K all zero
    wait_count("bad_camera_info")
    cam = rig.camera("CAM_FRONT")
    k = cam.intrinsics.copy()
    k[:2] *= 0.5
    io.info.publish(CameraInfo(width=800, height=450, k=k.reshape(-1).tolist()))
    wait_count("intrinsics_updates")
    out = step()
    wait_count("image_size_mismatch")
    assert len(out.objects) == 1 and bytes(out.objects[0].object_id.uuid) == before_info

    # time jump back (looped bag): tracks restart, node keeps tracking
    before = bytes(out.objects[0].object_id.uuid)
    t -= 100.0
    for _ in range(3):
        out = step()
    wait_count("time_jump")
    assert len(out.objects) == 1 and out.header.frame_id == "map"
    assert bytes(out.objects[0].object_id.uuid) != before  # a new track, never a reused id
    assert proc.poll() is None, "objects_node died"
