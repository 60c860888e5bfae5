"""Bounded fuzz over real DDS (issue 13): bev_node, detector_node, eval_node and dashboard_node
run in one separate process (``python -m lss_bev_ros.pipeline``) fed with good synthetic frames
by frame_player_node; this process publishes random and mutated Image, CompressedImage,
CameraInfo, PointCloud2 and MarkerArray messages at the same topics for FUZZ_S seconds
(seeded, ~25 messages/s). At the end every node is alive and still reporting, the rejections
are counted in /diagnostics, and the good frames interleaved with the bad still produced grids,
metrics, detections and dashboard frames."""

from __future__ import annotations

import array
import copy
import math
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from fuzz_testutil import REPO, cloud_msg, stamp, wait_for
from geometry_msgs.msg import Point, Pose, Quaternion, Vector3
from nav_msgs.msg import OccupancyGrid
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2, PointField
from visualization_msgs.msg import Marker, MarkerArray

from lss_bev_ros.msg import BevMetrics, Detection2DArray

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "core"))
from test_image_decompression_bomb import png_bomb

FUZZ_S = 60.0
RATE_HZ = 25.0
SEED = 13
CAMS = ("cam_front_left", "cam_front", "cam_front_right", "cam_back_left", "cam_back",
        "cam_back_right")
NODES = ("bev_node", "detector_node", "eval_node", "dashboard_node")


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from lss_bev_ros.data.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("fuzz_nuscenes")
    generate_dataset(root, n_scenes=1, samples_per_scene=4, seed=3, progress=False)
    return root


def _params(root: Path, tmp: Path) -> dict[str, Any]:
    rig = str(tmp / "rig.yaml")
    return {
        "frame_player_node": {"ros__parameters": {
            "dataroot": str(root), "rate_hz": 0.5, "loop": True, "image_type": "both",
            "image_scale": 0.25, "rig_file_out": rig, "stamp_mode": "now",
            "qos_reliable": True}},
        "bev_node": {"ros__parameters": {
            "rig_file": rig, "weights": str(REPO / "models" / "lss_small_synth.pt"),
            "input_type": "compressed", "missing_timeout_s": 3.0, "qos_reliable": True,
            "qos_depth": 10}},
        "detector_node": {"ros__parameters": {
            "rig_file": rig, "input_type": "raw", "imgsz": 160, "cpu_threads": 1,
            "missing_timeout_s": 3.0, "qos_reliable": True, "qos_depth": 4,
            "publish_annotated": False}},
        "eval_node": {"ros__parameters": {
            "rig_file": rig, "reference": "lidar_in_boxes", "qos_reliable": True}},
        "dashboard_node": {"ros__parameters": {
            "port": 0, "render_always": True, "rig_file": rig, "reference": "lidar",
            "qos_reliable": True, "render_rate_hz": 2.0}},
    }


class Fuzzer:
    """Seeded generator of hostile messages: (topic, message, kind)."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        img = np.full((225, 400, 3), 90, np.uint8)
        cv2.rectangle(img, (100, 80), (220, 160), (200, 40, 40), -1)
        self.jpeg = cv2.imencode(".jpg", img)[1].tobytes()
        self.bomb = png_bomb()
        self.rgb = img
        self.kinds = ("image", "compressed", "camera_info", "cloud", "markers")

    def _now(self) -> float:
        r = self.rng.random()
        if r < 0.8:
            return time.time() + float(self.rng.normal(0, 0.05))
        return float(self.rng.choice([0.0, 1.0, 2**31 - 1.0, time.time() + 86400.0,
                                      time.time() - 3.0]))

    def _bytes(self, n: int) -> array.array:
        return array.array("B", self.rng.integers(0, 256, n, dtype=np.uint8).tobytes())

    def message(self) -> tuple[str, Any, str]:
        kind = str(self.rng.choice(self.kinds))
        cam = str(self.rng.choice(CAMS))
        return (*getattr(self, f"_{kind}")(cam), kind)

    def _image(self, cam: str) -> tuple[str, Any]:
        m = Image()
        m.header.stamp, m.header.frame_id = stamp(self._now()), cam
        h, w = self.rgb.shape[:2]
        m.height, m.width, m.encoding, m.step = h, w, "rgb8", w * 3
        m.data = array.array("B", self.rgb.tobytes())
        case = int(self.rng.integers(0, 7))
        if case == 0:
            m.encoding = str(self.rng.choice(["yuv422", "", "bayer_rggb8", "16UC1", "rgb8\x00"]))
        elif case == 1:
            m.step = int(self.rng.integers(0, w * 3))
        elif case == 2:
            m.data = m.data[: int(self.rng.integers(0, len(m.data)))]
        elif case == 3:
            m.height, m.width = int(self.rng.choice([0, 1, 2**31 - 1, 40000])), int(
                self.rng.choice([0, 1, 2**31 - 1, 40000]))
            m.step = m.width * 3 % 2**32
            m.data = self._bytes(int(self.rng.integers(0, 4096)))
        elif case == 4:
            m.height, m.width = int(self.rng.integers(1, 64)), int(self.rng.integers(1, 64))
            m.step = m.width * 3
            m.data = self._bytes(m.height * m.step)  # valid but the wrong size
        elif case == 5:
            m.data = self._bytes(len(m.data))  # right size, noise
        return f"/cameras/{cam}/image_raw", m

    def _compressed(self, cam: str) -> tuple[str, Any]:
        m = CompressedImage(format="jpeg")
        m.header.stamp, m.header.frame_id = stamp(self._now()), cam
        case = int(self.rng.integers(0, 8))
        data = self.jpeg
        if case == 0:
            data = bytes(self._bytes(int(self.rng.integers(0, 5000))))
        elif case == 1:
            data = self.jpeg[: int(self.rng.integers(0, len(self.jpeg)))]
        elif case == 2:
            m.format = "png"
            data = self.bomb
        elif case == 3:  # JPEG whose frame header declares 60000 x 60000
            i = self.jpeg.find(b"\xff\xc0")
            data = self.jpeg[: i + 5] + b"\xea\x60\xea\x60" + self.jpeg[i + 9:]
        elif case == 4:
            data = b""
        elif case == 5:
            b = bytearray(self.jpeg)
            for _ in range(5):
                b[int(self.rng.integers(2, len(b)))] ^= 0xFF
            data = bytes(b)
        elif case == 6:
            m.format = str(self.rng.choice(["", "bmp", "rgb8; jpeg compressed bgr8", "x" * 300]))
        m.data = array.array("B", data)
        return f"/cameras/{cam}/image_raw/compressed", m

    def _camera_info(self, cam: str) -> tuple[str, Any]:
        m = CameraInfo()
        m.header.stamp, m.header.frame_id = stamp(self._now()), cam
        m.width, m.height = 400, 225
        k = [320.0, 0.0, 200.0, 0.0, 320.0, 112.5, 0.0, 0.0, 1.0]
        case = int(self.rng.integers(0, 7))
        if case == 0:
            k = [0.0] * 9
        elif case == 1:
            k[int(self.rng.integers(0, 9))] = float(self.rng.choice([math.nan, math.inf, -1e6]))
        elif case == 2:
            m.width, m.height = int(self.rng.choice([0, 2**31, 40000])), int(
                self.rng.choice([0, 2**31, 40000]))
        elif case == 3:
            k[2] = -1e6
        elif case == 4:
            k[8] = 0.0
        elif case == 5:
            m.distortion_model = "fisheye_of_doom"
            m.d = [float(x) for x in self.rng.normal(0, 10, int(self.rng.integers(0, 20)))]
        m.k = k
        return f"/cameras/{cam}/camera_info", m

    def _cloud(self, cam: str) -> tuple[str, Any]:
        pts = self.rng.normal(0, 20, (int(self.rng.integers(0, 200)), 3)).astype(np.float32)
        m = cloud_msg(pts, self._now(), frame=str(self.rng.choice(["lidar_top", "base_link"])))
        case = int(self.rng.integers(0, 9))
        if case == 0:
            m.fields[2].offset = int(self.rng.integers(16, 1000))
        elif case == 1:
            m.point_step = int(self.rng.choice([0, 1, 4]))
        elif case == 2:
            m.data = m.data[: max(0, len(m.data) - int(self.rng.integers(1, 20)))]
        elif case == 3:
            m.height = int(self.rng.integers(2, 1000))
        elif case == 4:
            m.fields[0].datatype = int(self.rng.integers(9, 256))
        elif case == 5:
            m.fields = [PointField(name=str(self.rng.choice(["x", "y", "q", ""])),
                                   offset=int(self.rng.integers(0, 64)),
                                   datatype=int(self.rng.integers(0, 12)), count=1)
                        for _ in range(int(self.rng.integers(0, 6)))]
        elif case == 6:
            m.width, m.row_step = 2**31, 1
        elif case == 7:  # well-formed, with non-finite points
            pts[self.rng.random(pts.shape) < 0.3] = np.nan
            m = cloud_msg(pts, self._now(), frame=m.header.frame_id)
        return "/lidar_top/points", m

    def _markers(self, cam: str) -> tuple[str, Any]:
        t = self._now()
        n = int(self.rng.integers(0, 60))
        markers = []
        for i in range(n):
            mk = Marker(type=int(self.rng.choice([Marker.CUBE, Marker.CUBE, Marker.ARROW, 99])),
                        action=int(self.rng.choice([Marker.ADD, Marker.ADD, Marker.DELETEALL])),
                        id=i, ns=str(self.rng.choice(["vehicle.car", "human", "", "v" * 200])))
            mk.header.stamp = stamp(t if self.rng.random() < 0.9 else self._now())
            mk.header.frame_id = str(self.rng.choice(["base_link", "base_link", "map", ""]))
            x, y, yaw = (float(v) for v in self.rng.normal(0, 30, 3))
            q = Quaternion(z=math.sin(yaw / 2), w=math.cos(yaw / 2))
            if self.rng.random() < 0.2:
                q = Quaternion(x=math.nan, w=0.0)
            mk.pose = Pose(position=Point(x=x, y=y, z=float(self.rng.choice([0.8, math.inf]))),
                           orientation=q)
            mk.scale = Vector3(x=float(self.rng.choice([4.0, 0.0, -1.0, 1e9, math.nan])),
                               y=2.0, z=1.6)
            markers.append(mk)
        return "/gt/boxes", MarkerArray(markers=markers)


def _error_counters(values: dict[str, str]) -> dict[str, int]:
    """Counters that have a ``last_error.<key>`` entry: the node's rejections."""
    return {k[len("last_error."):]: int(values.get(k[len("last_error."):], "0"))
            for k in values if k.startswith("last_error.")}


@pytest.mark.slow
def test_fuzzed_input_is_counted_and_every_node_keeps_producing(
        listener, start_nodes, synth_root, tmp_path):
    nodes = start_nodes(_params(synth_root, tmp_path))
    for topic, typ in (("/bev/occupancy", OccupancyGrid), ("/bev/metrics", BevMetrics),
                       ("/detections/cam_front", Detection2DArray)):
        listener.collect(typ, topic)
    fuzz = Fuzzer(SEED)
    topics = {}
    for cam in CAMS:
        for make in (fuzz._image, fuzz._compressed, fuzz._camera_info):
            topic, msg = make(cam)
            topics[topic] = type(msg)
    topics["/lidar_top/points"], topics["/gt/boxes"] = PointCloud2, MarkerArray
    pubs = {t: listener.publisher(typ, t, depth=10) for t, typ in topics.items()}
    assert wait_for(lambda: all(listener.diag_seen.get(n) for n in NODES)
                    and listener.arrived_since("/bev/occupancy", 0.0) > 0, 60.0), (
        f"pipeline not producing before the fuzz:\n{nodes.log()[-4000:]}")

    dash0 = int(listener.values("dashboard_node").get("cam.frames_published", "0"))
    sent: Counter[str] = Counter()
    t0 = time.monotonic()
    k = 0
    while time.monotonic() - t0 < FUZZ_S:
        topic, msg, kind = fuzz.message()
        pubs[topic].publish(msg)
        sent[kind] += 1
        k += 1
        if k % 50 == 0:
            assert nodes.alive(), f"node process died:\n{nodes.log()[-4000:]}"
            if k % 500 == 0:  # the bad input also arrives in bursts of identical mutations
                burst = copy.deepcopy(msg)
                for _ in range(20):
                    pubs[topic].publish(burst)
        time.sleep(max(0.0, t0 + k / RATE_HZ - time.monotonic()))
    t_end = time.monotonic()
    time.sleep(3.0)  # the last diagnostics (1 Hz)

    log = nodes.log()
    assert nodes.alive(), f"node process died:\n{log[-4000:]}"
    assert "Traceback" not in log, log[log.index("Traceback") - 200:][:4000]
    for n in NODES:
        assert listener.diag_seen[n] > t_end, f"{n} stopped reporting /diagnostics"
    errors = {n: _error_counters(listener.values(n)) for n in NODES}
    ev, dash = listener.values("eval_node"), listener.values("dashboard_node")
    assert 0 < int(ev.get("bad_pointcloud", "0")) <= sent["cloud"], (errors, sent)
    assert 0 < int(dash.get("bad_pointcloud", "0")) <= sent["cloud"], (errors, sent)
    assert int(dash.get("bad_image", "0")) > 0, errors
    # an exception other than ConversionError escaping a conversion shows up as render_<view>
    assert not [k for k in errors["dashboard_node"] if k.startswith("render_")], dash
    assert sum(errors["eval_node"].values()) > int(ev["bad_pointcloud"]), errors  # boxes too
    for n in ("bev_node", "detector_node"):
        assert sum(errors[n].values()) > 0, (n, errors[n])
    # good input interleaved with the bad still produced output during the fuzz
    assert listener.arrived_since("/bev/occupancy", t0) > 0, (errors, log[-3000:])
    assert listener.arrived_since("/bev/metrics", t0) > 0, errors
    assert listener.arrived_since("/detections/cam_front", t0) > 0, errors
    assert int(dash.get("cam.frames_published", "0")) > dash0
    print(f"sent {dict(sent)}; rejections {errors}")
    for n in NODES:
        for k, v in sorted(listener.values(n).items()):
            if k.startswith("last_error."):
                print(f"  {n} {k}: {v[:200]}")
