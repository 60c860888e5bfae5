"""bev_node over real DDS: well-formed outputs, and bad input (wrong encoding, wrong size, missing
camera, out-of-order stamps, corrupt JPEG) is logged, counted in /diagnostics and survived."""

from __future__ import annotations

import math
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import OccupancyGrid
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from lss_bev_ros.calibration import NUSCENES_CAMERAS, load_rig_yaml, save_rig_yaml
from lss_bev_ros.conversions import occupancy_to_probability
from lss_bev_ros.msg import PipelineTiming
from lss_bev_ros.nodes.bev_node import BevNode

SCALE = 0.1  # 1600 x 900 -> 160 x 90 test images


@pytest.fixture(scope="module")
def small_rig(synth_rig_file: Path, tmp_path_factory) -> Path:
    rig = load_rig_yaml(synth_rig_file)
    for cam in rig.cameras:
        k = cam.intrinsics.copy()
        k[:2] *= SCALE
        rig = rig.replace_camera(cam.with_intrinsics(k, round(cam.width * SCALE),
                                                     round(cam.height * SCALE)))
    return save_rig_yaml(rig, tmp_path_factory.mktemp("rig") / "rig_small.yaml")


@pytest.fixture(scope="module")
def camera_images(synth_root: Path) -> dict[str, np.ndarray]:
    """First sample's images, 160 x 90 RGB."""
    out = {}
    for cam in NUSCENES_CAMERAS:
        path = sorted((synth_root / "samples" / cam).glob("*.jpg"))[0]
        bgr = cv2.resize(cv2.imread(str(path)), (160, 90), interpolation=cv2.INTER_AREA)
        out[cam] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return out


def _t(t: float) -> Time:
    return Time(sec=int(t), nanosec=round((t - int(t)) * 1e9))


class Rig:
    """Test-side camera driver + output listener on its own node."""

    def __init__(self, ctx, node: BevNode, rig_file: Path, images, compressed: bool):
        self.node = node
        self.rig = load_rig_yaml(rig_file)
        self.images = images
        self.compressed = compressed
        self.io = Node("bev_test_io", context=ctx)
        typ = CompressedImage if compressed else Image
        suffix = "/compressed" if compressed else ""
        self.pub_img = {c: self.io.create_publisher(
            typ, f"/cameras/{c.lower()}/image_raw{suffix}", 10) for c in NUSCENES_CAMERAS}
        self.pub_info = {c: self.io.create_publisher(
            CameraInfo, f"/cameras/{c.lower()}/camera_info", 10) for c in NUSCENES_CAMERAS}
        self.grids: list[OccupancyGrid] = []
        self.bev_images: list[Image] = []
        self.timings: list[PipelineTiming] = []
        self.diag: dict[str, str] = {}
        self.io.create_subscription(OccupancyGrid, "/bev/occupancy", self.grids.append, 10)
        self.io.create_subscription(Image, "/bev/image", self.bev_images.append, 10)
        self.io.create_subscription(PipelineTiming, "/bev/timing", self.timings.append, 10)
        self.io.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)
        self.ex = SingleThreadedExecutor(context=ctx)
        self.ex.add_node(node)
        self.ex.add_node(self.io)

    def _on_diag(self, msg: DiagnosticArray) -> None:
        for st in msg.status:
            if st.name.endswith("bev_node"):
                self.diag = {kv.key: kv.value for kv in st.values}

    def image_msg(self, cam: str, t: float, rgb: np.ndarray | None = None, encoding="rgb8"):
        rgb = self.images[cam] if rgb is None else rgb
        if self.compressed:
            m = CompressedImage(format="jpeg")
            m.data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()
        else:
            m = Image(height=rgb.shape[0], width=rgb.shape[1], encoding=encoding,
                      step=rgb.shape[1] * 3)
            m.data = np.ascontiguousarray(rgb).tobytes()
        m.header.stamp, m.header.frame_id = _t(t), cam.lower()
        return m

    def info_msg(self, cam: str, t: float) -> CameraInfo:
        c = self.rig.camera(cam)
        m = CameraInfo(width=c.width, height=c.height, k=[float(v) for v in c.intrinsics.ravel()])
        m.header.stamp, m.header.frame_id = _t(t), cam.lower()
        return m

    def publish_set(self, t: float, skip=(), override=None) -> None:
        override = override or {}
        for cam in NUSCENES_CAMERAS:
            if cam in skip:
                continue
            self.pub_info[cam].publish(self.info_msg(cam, t))
            self.pub_img[cam].publish(override.get(cam) or self.image_msg(cam, t))

    def spin_until(self, pred, timeout: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.ex.spin_once(timeout_sec=0.05)
            if pred():
                return True
        return pred()

    def wait_grid(self, t: float, timeout: float = 60.0) -> OccupancyGrid:
        want = _t(t)
        ok = self.spin_until(lambda: any(g.header.stamp == want for g in self.grids), timeout)
        assert ok, f"no grid stamped {t} (got {[g.header.stamp for g in self.grids]}, " \
                   f"diag {self.diag})"
        return next(g for g in self.grids if g.header.stamp == want)

    def wait_diag(self, key: str, value: str, timeout: float = 10.0) -> None:
        ok = self.spin_until(lambda: self.diag.get(key) == value, timeout)
        assert ok, f"diagnostics {key} != {value}: {self.diag}"

    def close(self) -> None:
        if self.node.active:
            self.node.trigger_deactivate()
        self.ex.shutdown()
        self.node.destroy_node()
        self.io.destroy_node()


def _start(ctx, rig_file: Path, compressed: bool, images, **params) -> Rig:
    over = {"rig_file": str(rig_file), "input_type": "compressed" if compressed else "raw",
            "missing_timeout_s": 0.6, "qos_reliable": True, "qos_depth": 10,
            "precision": "fp32", **params}  # outputs are compared with the fp32 core
    node = BevNode(context=ctx, parameter_overrides=[Parameter(k, value=v)
                                                     for k, v in over.items()])
    assert node.maybe_autostart(), "bev_node did not activate"
    r = Rig(ctx, node, rig_file, images, compressed)
    assert r.spin_until(lambda: all(p.get_subscription_count() > 0
                                    for p in r.pub_img.values()), 20.0)
    return r


def _unknown(g: OccupancyGrid) -> int:
    return int((np.asarray(g.data, dtype=np.int8) < 0).sum())


@pytest.fixture
def raw(ros_context, small_rig, camera_images):
    """bev_node on raw images (no warm-up frame), a first good set already published."""
    r = _start(ros_context, small_rig, False, camera_images, warmup=False)
    try:
        r.publish_set(1.0)
        r.first = r.wait_grid(1.0)
        yield r
    finally:
        r.close()


def test_grid_image_and_timing_are_well_formed_and_carry_the_input_stamp(raw):
    g = raw.first
    assert g.header.frame_id == "base_link"
    assert (g.info.width, g.info.height, g.info.resolution) == (200, 200, 0.5)
    assert (g.info.origin.position.x, g.info.origin.position.y) == (-50.0, -50.0)
    assert g.info.origin.orientation.w == 1.0
    data = np.asarray(g.data, dtype=np.int8)
    assert data.size == 40000 and data.min() >= -1 and data.max() <= 100
    unknown = _unknown(g)
    assert 0 < unknown < 40000 * 0.6  # cells nobody sees (ego, far corners) are -1
    _, known = occupancy_to_probability(g.data, 200, 200)
    assert known.sum() == 40000 - unknown
    assert raw.spin_until(lambda: raw.timings and raw.bev_images, 10.0)
    tm = raw.timings[0]
    assert tm.header.stamp == _t(1.0) and tm.node_name == "bev_node"
    names = [s.name for s in tm.stages]
    for stage in ("convert", "preprocess", "camera_encoder", "voxel_pooling",
                  "bev_encoder", "publish"):
        assert stage in names
    assert tm.total_ms > 0 and tm.node_latency_ms > 0 and tm.frames_processed == 1
    # stamps of 1 s against today's wall clock: no stamp latency, the mismatch is explained
    assert math.isnan(tm.latency_ms)
    raw.wait_diag("clock_mismatch", "1")
    assert float(raw.diag["node_latency_p50_ms"]) > 0
    bi = raw.bev_images[0]
    assert (bi.encoding, bi.height, bi.width) == ("rgb8", 400, 400)


def test_wrong_encoding_masks_that_camera_for_that_set_and_is_counted(raw):
    bad = raw.image_msg("CAM_FRONT", 2.0, encoding="yuv422")
    raw.publish_set(2.0, override={"CAM_FRONT": bad})
    assert _unknown(raw.wait_grid(2.0)) > _unknown(raw.first)  # CAM_FRONT's view is unknown
    raw.wait_diag("bad_encoding", "1")
    assert "yuv422" in raw.diag["last_error.bad_encoding"]
    raw.publish_set(3.0)
    assert _unknown(raw.wait_grid(3.0)) == _unknown(raw.first)


def test_wrong_image_size_masks_that_camera_and_is_counted(raw):
    small = np.zeros((60, 120, 3), np.uint8)
    raw.publish_set(2.0, override={"CAM_BACK": raw.image_msg("CAM_BACK", 2.0, small)})
    assert _unknown(raw.wait_grid(2.0)) > _unknown(raw.first)
    raw.wait_diag("bad_image_size", "1")
    assert "CAM_BACK" in raw.diag["last_error.bad_image_size"]


def test_out_of_order_stamp_is_dropped_and_counted(raw):
    raw.publish_set(2.0)
    raw.wait_grid(2.0)
    raw.pub_img["CAM_FRONT"].publish(raw.image_msg("CAM_FRONT", 1.5))
    raw.wait_diag("out_of_order", "1")
    raw.publish_set(3.0)
    raw.wait_grid(3.0)


def test_silent_camera_is_named_missing_and_masked_while_output_continues(raw):
    # stamps only: the others' stamps must pass the set by > missing_timeout_s (0.6 s)
    for t in (2.0, 2.5, 3.0):
        raw.publish_set(t, skip=("CAM_BACK_RIGHT",))
    g = raw.wait_grid(3.0)  # 2.0 (waited for CAM_BACK_RIGHT) may be superseded by 2.5
    assert _unknown(g) > _unknown(raw.first)
    raw.wait_diag("missing_cameras", "CAM_BACK_RIGHT")
    assert "CAM_BACK_RIGHT" in raw.diag["last_error.camera_missing"]
    raw.publish_set(4.0)  # back: full sets again
    raw.publish_set(4.5)
    assert _unknown(raw.wait_grid(4.5)) == _unknown(raw.first)
    raw.wait_diag("missing_cameras", "none")


def test_policy_wait_publishes_nothing_while_a_camera_is_missing(raw):
    raw.node.set_parameters([Parameter("missing_camera_policy", value="wait")])
    for t in (2.0, 2.5, 3.0):
        raw.publish_set(t, skip=("CAM_BACK_RIGHT",))
    raw.wait_diag("missing_cameras", "CAM_BACK_RIGHT")
    assert "waiting for it" in raw.diag["last_error.camera_missing"]
    assert not raw.spin_until(lambda: len(raw.grids) > 1, 2.0)
    raw.publish_set(4.0)
    raw.publish_set(4.5)
    assert _unknown(raw.wait_grid(4.5)) == _unknown(raw.first)


def test_camera_with_a_clock_offset_is_named_and_the_others_go_on(raw):
    """CAM_FRONT's stamps are 0.2 s ahead: named as offset, grids keep coming without it."""
    for i in range(9):
        t = 2.0 + 0.5 * i
        raw.publish_set(t, override={"CAM_FRONT": raw.image_msg("CAM_FRONT", t + 0.2)})
    raw.wait_diag("offset_cameras", "CAM_FRONT +0.200 s", timeout=60.0)
    assert "CAM_FRONT" in raw.diag["last_error.camera_offset"]
    # the newest set (latest wins on a slow CPU) is published without CAM_FRONT's view
    assert _unknown(raw.wait_grid(6.0)) > _unknown(raw.first)


def test_looped_stamps_restart_synchronisation_and_output_continues(raw):
    for t in (2.0, 8.0, 8.5):
        raw.publish_set(t)
    raw.wait_grid(8.5)
    raw.publish_set(1.2)
    raw.wait_grid(1.2)
    raw.wait_diag("time_jump", "1")
    assert "synchronisation restarted" in raw.diag["last_error.time_jump"]


def test_bev_node_corrupt_jpeg(ros_context, small_rig, camera_images):
    r = _start(ros_context, small_rig, True, camera_images)
    try:
        r.publish_set(1.0)
        g1 = r.wait_grid(1.0)
        corrupt = r.image_msg("CAM_FRONT_LEFT", 2.0)
        corrupt.data = b"\xff\xd8\xff\xe0 definitely not a jpeg " * 10
        r.publish_set(2.0, override={"CAM_FRONT_LEFT": corrupt})
        g2 = r.wait_grid(2.0)
        assert _unknown(g2) > _unknown(g1)
        r.wait_diag("corrupt_image", "1")
        assert "CAM_FRONT_LEFT" in r.diag["last_error.corrupt_image"]
        r.publish_set(3.0)
        assert _unknown(r.wait_grid(3.0)) == _unknown(g1)
        # lifecycle: deactivate frees the model and stops output; activate brings it back
        from rclpy.lifecycle import TransitionCallbackReturn as Ret

        assert r.node.trigger_deactivate() == Ret.SUCCESS
        assert r.node.pipeline is None and not r.node.active
        r.publish_set(4.0)
        assert not r.spin_until(lambda: any(x.header.stamp == _t(4.0) for x in r.grids), 2.0)
        assert r.node.trigger_activate() == Ret.SUCCESS and r.node.active
        assert r.spin_until(lambda: all(p.get_subscription_count() > 0
                                        for p in r.pub_img.values()), 20.0)
        r.publish_set(5.0)
        r.wait_grid(5.0)
    finally:
        r.close()


def test_bev_node_runs_a_checkpoint_and_rejects_missing_weights(
        ros_context, small_rig, camera_images, tmp_path):
    import torch

    from lss_bev_ros.backends import create_backend
    from lss_bev_ros.bev_processor import BevProcessor
    from lss_bev_ros.conversions import probability_to_occupancy
    from lss_bev_ros.lss.checkpoint import load_checkpoint, save_checkpoint
    from lss_bev_ros.lss.config import LSSConfig
    from lss_bev_ros.lss.model import LiftSplatShoot

    bad = BevNode(context=ros_context, parameter_overrides=[
        Parameter("rig_file", value=str(small_rig)),
        Parameter("weights", value=str(tmp_path / "missing.pt"))])
    try:
        assert not bad.maybe_autostart()
        assert "weights file not found" in bad.diag.last_error["configure_failed"]
    finally:
        bad.destroy_node()

    torch.manual_seed(3)
    ckpt = save_checkpoint(tmp_path / "m.pt", LiftSplatShoot(LSSConfig.small()))
    r = _start(ros_context, small_rig, False, camera_images, weights=str(ckpt))
    try:
        assert r.node.diag.values["model"] == f"checkpoint {ckpt}"
        r.publish_set(1.0)
        g = r.wait_grid(1.0)
        # the node ran exactly these weights: same grid as the ROS-free core on the same images
        model, cfg, _ = load_checkpoint(ckpt)
        out = BevProcessor(create_backend("torch", model), cfg, load_rig_yaml(small_rig)).process(
            camera_images, 1.0)
        want = probability_to_occupancy(out.probability, out.visible)
        got = np.asarray(g.data, dtype=np.int8)
        assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
    finally:
        r.close()


def test_bev_node_backend_options(ros_context, small_rig, camera_images):
    """backend_options reach the backend (diagnostics name it); a malformed one is refused."""
    with pytest.raises(ValueError, match="not key=value"):
        BevNode(context=ros_context, parameter_overrides=[
            Parameter("rig_file", value=str(small_rig)),
            Parameter("backend_options", value="channels_last")])
    r = _start(ros_context, small_rig, False, camera_images, precision="bf16",
               backend_options="channels_last=true")
    try:
        assert r.node.diag.values["backend"] == "torch(cpu, bf16, channels_last)"
        r.publish_set(1.0)
        r.wait_grid(1.0)
    finally:
        r.close()


def test_bev_node_takes_extrinsics_from_tf_static(ros_context, small_rig, camera_images):
    """/tf_static (latched, published before the node starts) replaces the rig file's
    extrinsics of the camera it describes, composed through an intermediate frame; a broken
    edge is counted and ignored; the other cameras keep the rig file's."""
    from geometry_msgs.msg import TransformStamped
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from tf2_msgs.msg import TFMessage

    from lss_bev_ros.calibration import matrix_to_quaternion

    rig = load_rig_yaml(small_rig)
    cam = rig.camera("CAM_BACK_RIGHT")
    yaw = np.radians(4.0)
    rz = np.array([[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]])
    want_r, want_t = rz @ cam.rotation, cam.translation + np.array([0.0, 0.0, 0.25])

    def edge(parent, child, r, t):
        m = TransformStamped()
        m.header.frame_id, m.child_frame_id = parent, child
        q = matrix_to_quaternion(r)  # w, x, y, z
        m.transform.rotation.w, m.transform.rotation.x = float(q[0]), float(q[1])
        m.transform.rotation.y, m.transform.rotation.z = float(q[2]), float(q[3])
        m.transform.translation.x, m.transform.translation.y = float(t[0]), float(t[1])
        m.transform.translation.z = float(t[2])
        return m

    # base_link -> rack (z +1 m) -> camera: the rack edge carries the rest
    rack_t = np.array([0.0, 0.0, 1.0])
    tf = TFMessage(transforms=[
        edge("base_link", "rack", np.eye(3), rack_t),
        edge("rack", cam.frame_id, want_r, want_t - rack_t),
        edge("base_link", "broken", np.eye(3), np.array([np.nan, 0.0, 0.0])),
    ])
    pub_node = Node("tf_static_pub", context=ros_context)
    latched = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
    pub_node.create_publisher(TFMessage, "/tf_static", latched).publish(tf)
    r = _start(ros_context, small_rig, False, camera_images)
    try:
        r.ex.add_node(pub_node)
        r.wait_diag("extrinsics_source", "tf_static for 1 of 6 cameras, rig_file for the others")
        got = r.node.pipeline.current_rig().camera("CAM_BACK_RIGHT")
        np.testing.assert_allclose(got.rotation, want_r, atol=1e-9)
        np.testing.assert_allclose(got.translation, want_t, atol=1e-9)
        np.testing.assert_allclose(r.node.pipeline.processor.rig.camera("CAM_BACK_RIGHT").rotation,
                                   want_r, atol=1e-9)
        front = r.node.pipeline.current_rig().camera("CAM_FRONT")
        assert np.array_equal(front.rotation, rig.camera("CAM_FRONT").rotation)
        assert r.node.diag.counters["bad_tf"] == 1
        r.publish_set(1.0)
        r.wait_grid(1.0)
    finally:
        r.close()
        pub_node.destroy_node()


@pytest.mark.parametrize("bad", ["k22_zero", "huge_size", "cx_far_outside"])
def test_invalid_camera_info_masks_only_that_camera_until_a_valid_one(raw, bad):
    """K[2][2] = 0, a 40000 x 40000 CameraInfo or cx = -1e6: counted, CAM_FRONT masked, grids
    keep coming from the other cameras; the next valid CameraInfo brings the camera back."""
    info = raw.info_msg("CAM_FRONT", 2.0)
    k = list(info.k)
    if bad == "k22_zero":
        k[8] = 0.0
    elif bad == "huge_size":
        info.width = info.height = 40000
    else:
        k[2] = -1e6
    info.k = k
    raw.pub_info["CAM_FRONT"].publish(info)
    raw.wait_diag("bad_camera_info", "1")
    for cam in NUSCENES_CAMERAS:  # images only: the valid infos of publish_set would fix it
        raw.pub_img[cam].publish(raw.image_msg(cam, 2.0))
    g = raw.wait_grid(2.0)
    assert _unknown(g) > _unknown(raw.first)  # CAM_FRONT's view unknown, the rest produced
    assert raw.diag.get("bad_camera_info_cameras") == "CAM_FRONT"
    raw.publish_set(3.0)  # with valid CameraInfo again
    assert _unknown(raw.wait_grid(3.0)) == _unknown(raw.first)
    raw.wait_diag("bad_camera_info_cameras", "")


def test_precision_auto_is_resolved_and_reported(ros_context, small_rig, camera_images):
    """auto: bf16 only where the CPU has native bf16 and the parity check passes, else fp32;
    the choice and its reason are in /diagnostics."""
    from lss_bev_ros.backends.cpu_features import read_cpu_features

    r = _start(ros_context, small_rig, False, camera_images, precision="auto", warmup=False)
    try:
        chosen = r.node.diag.values["precision"]
        native = {"amx_bf16", "avx512_bf16"} & set(read_cpu_features().flags)
        assert chosen.startswith(("bf16", "fp32") if native else ("fp32",)), chosen
        r.publish_set(1.0)
        r.wait_grid(1.0)
    finally:
        r.close()
