"""frame_player_node over real DDS: images (raw + compressed), camera infos, LiDAR, GT boxes,
odometry, /tf and /tf_static, all with sensor stamps; the rig file it writes."""

from __future__ import annotations

import time

import cv2
import numpy as np
from nav_msgs.msg import Odometry
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from visualization_msgs.msg import MarkerArray

from lss_bev_ros.calibration import NUSCENES_CAMERAS, load_rig_yaml
from lss_bev_ros.conversions import image_to_rgb, pointcloud2_to_array
from lss_bev_ros.nodes.common import latched_qos, stamp_to_sec
from lss_bev_ros.nodes.frame_player_node import FramePlayerNode


def test_frame_player_publishes_a_sample(ros_context, synth_root, tmp_path):
    from tf2_msgs.msg import TFMessage

    rig_out = tmp_path / "rig.yaml"
    player = FramePlayerNode(context=ros_context, parameter_overrides=[
        Parameter("dataroot", value=str(synth_root)), Parameter("rate_hz", value=4.0),
        Parameter("image_type", value="both"), Parameter("image_scale", value=0.25),
        Parameter("max_frames", value=2), Parameter("rig_file_out", value=str(rig_out))])
    io = Node("player_listener", context=ros_context)
    got: dict[str, list] = {k: [] for k in ("raw", "cmp", "info", "cloud", "boxes", "odom",
                                            "tf", "tf_static")}
    io.create_subscription(Image, "/cameras/cam_front/image_raw", got["raw"].append, 10)
    io.create_subscription(CompressedImage, "/cameras/cam_front/image_raw/compressed",
                           got["cmp"].append, 10)
    io.create_subscription(CameraInfo, "/cameras/cam_front/camera_info", got["info"].append, 10)
    io.create_subscription(PointCloud2, "/lidar_top/points", got["cloud"].append, 10)
    io.create_subscription(MarkerArray, "/gt/boxes", got["boxes"].append, 10)
    io.create_subscription(Odometry, "/odom", got["odom"].append, 10)
    io.create_subscription(TFMessage, "/tf", got["tf"].append, 10)
    io.create_subscription(TFMessage, "/tf_static", got["tf_static"].append, latched_qos())
    ex = SingleThreadedExecutor(context=ros_context)
    ex.add_node(io)
    ex.add_node(player)
    try:
        assert player.maybe_autostart()
        deadline = time.monotonic() + 30.0
        while time.monotonic() < deadline and not (
                len(got["cloud"]) >= 2 and got["tf_static"] and len(got["raw"]) >= 2):
            ex.spin_once(timeout_sec=0.05)
        assert all(got.values()), {k: len(v) for k, v in got.items()}
        assert player.published == 2
        # the rig file matches what is published (scaled intrinsics)
        rig = load_rig_yaml(rig_out)
        assert rig.names == tuple(NUSCENES_CAMERAS) and rig.lidar_rotation is not None
        info = got["info"][0]
        front = rig.camera("CAM_FRONT")
        assert (info.width, info.height) == (front.width, front.height) == (400, 225)
        np.testing.assert_allclose(np.array(info.k).reshape(3, 3), front.intrinsics, atol=1e-6)
        assert info.header.frame_id == "cam_front"
        rgb = image_to_rgb(got["raw"][0])
        assert rgb.shape == (225, 400, 3)
        dec = cv2.imdecode(np.frombuffer(bytes(got["cmp"][0].data), np.uint8), cv2.IMREAD_COLOR)
        assert dec.shape == (225, 400, 3) and got["cmp"][0].format == "jpeg"
        # sensor stamps: image, info, cloud and boxes of one sample share the sample's time
        t_img = stamp_to_sec(got["raw"][0].header.stamp)
        assert stamp_to_sec(info.header.stamp) == t_img
        assert abs(stamp_to_sec(got["cloud"][0].header.stamp) - t_img) < 0.1
        assert abs(t_img - player.now_sec()) < 30.0  # stamp_mode now
        pts, dropped = pointcloud2_to_array(got["cloud"][0], fields=("x", "y", "z", "intensity",
                                                                    "ring"))
        assert len(pts) > 1000 and dropped == 0 and got["cloud"][0].header.frame_id == "lidar_top"
        boxes = got["boxes"][0].markers
        assert boxes[0].action == 3 and len(boxes) > 1  # DELETEALL, then CUBEs
        assert all(m.header.frame_id == "base_link" and m.ns for m in boxes[1:])
        assert got["odom"][0].child_frame_id == "base_link"
        static = {t.child_frame_id: t for t in got["tf_static"][0].transforms}
        assert set(static) == {c.lower() for c in NUSCENES_CAMERAS} | {"lidar_top"}
        tr = static["cam_front"].transform.translation
        np.testing.assert_allclose([tr.x, tr.y, tr.z], front.translation, atol=1e-6)
        assert got["tf"][0].transforms[0].header.frame_id == "map"
    finally:
        ex.shutdown()
        player.destroy_node()
        io.destroy_node()
