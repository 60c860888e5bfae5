"""frame_player_node: play nuScenes(-format) samples from a dataroot as live sensor topics.

Reads a real or synthetic (``lss-bev-synth``) nuScenes dataroot with nuscenes-devkit and, at
``rate_hz``, publishes per key frame:

* per camera ``sensor_msgs/CompressedImage`` (the dataset's JPEG, untouched) and/or
  ``sensor_msgs/Image`` (rgb8) plus ``sensor_msgs/CameraInfo``, in the camera's optical frame;
* ``sensor_msgs/PointCloud2`` (x, y, z, intensity, ring) in ``lidar_top``;
* ground-truth boxes as ``visualization_msgs/MarkerArray`` (CUBEs in ``base_link``, ns=category);
* ``nav_msgs/Odometry`` (map -> base_link), ``/tf`` (map -> base_link) and ``/tf_static``
  (base_link -> sensors) where ``tf2_msgs`` is importable (not on PyPI; tools/bootstrap.sh builds
  it from tools/vendor); without it the rig file alone carries the extrinsics.

Each message carries its *sensor* stamp: with ``stamp_mode: now`` the sample is re-timed to the
current clock keeping the sensors' relative offsets (so end-to-end latency is meaningful); with
``dataset`` the original timestamps are used. Optionally writes the rig calibration YAML that
bev_node / eval_node read (``rig_file_out``).

Dataset access is :class:`lss_bev_ros.data.frames.NuScenesFrames` (no ROS; the GT boxes are the
same function ``lss-bev-bag convert`` writes).
"""

from __future__ import annotations

import array

import cv2
import numpy as np
from geometry_msgs.msg import Point, Pose, Quaternion, Vector3
from nav_msgs.msg import Odometry
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2, PointField
from std_msgs.msg import ColorRGBA
from visualization_msgs.msg import Marker, MarkerArray

from lss_bev_ros.calibration import (
    NUSCENES_CAMERAS,
    frame_id_for,
    matrix_to_quaternion,
    save_rig_yaml,
)
from lss_bev_ros.conversions import points_to_pointcloud2_fields, rgb_to_image_bytes
from lss_bev_ros.data.frames import NuScenesFrames, SampleFrame
from lss_bev_ros.nodes.common import (
    ParamSpec,
    PerceptionNode,
    latched_qos,
    run_node,
    sec_to_stamp,
)
from lss_bev_ros.visualization import category_rgba

try:  # /tf and /tf_static need tf2_msgs (not on PyPI; built by tools/bootstrap.sh)
    from geometry_msgs.msg import TransformStamped
    from tf2_msgs.msg import TFMessage  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - depends on the ROS install
    TFMessage = None
    TransformStamped = None


# ---------------------------------------------------------------------------------------------
# node
# ---------------------------------------------------------------------------------------------
def _positive(v: float) -> str | None:
    return None if v > 0 else "must be > 0"


def _pattern(v: str) -> str | None:
    ok = v.startswith("/") and "{camera}" in v
    return None if ok else "must be an absolute topic containing {camera}"


def _topic(v: str) -> str | None:
    return None if v.startswith("/") else "must be an absolute topic (start with /)"




class FramePlayerNode(PerceptionNode):
    """Publishes nuScenes key frames as camera / LiDAR / GT topics at ``rate_hz``."""

    PARAMS: tuple[ParamSpec, ...] = (
        ParamSpec("dataroot", "", "nuScenes dataroot (real or lss-bev-synth)", read_only=True),
        ParamSpec("version", "v1.0-mini", "table folder under dataroot", read_only=True),
        ParamSpec("scenes", [""], "scene names to play ([''] or []: all)", read_only=True),
        ParamSpec("cameras", list(NUSCENES_CAMERAS), "cameras to publish", read_only=True),
        ParamSpec("rate_hz", 2.0, "key frames per second", min=0.01, max=100.0,
                  validator=_positive),
        ParamSpec("loop", True, "start again after the last sample"),
        ParamSpec("max_frames", 0, "stop after this many frames (0: no limit)", min=0),
        ParamSpec("image_type", "compressed", "publish CompressedImage, Image or both",
                  read_only=True, choices=("compressed", "raw", "both")),
        ParamSpec("image_scale", 1.0, "image downscale factor (intrinsics scaled too)",
                  read_only=True, min=0.05, max=1.0),
        ParamSpec("jpeg_quality", 90, "JPEG quality when images are re-encoded", read_only=True,
                  min=10, max=100),
        ParamSpec("image_topic_template", "/cameras/{camera}/image_raw", "image topic per "
                  "camera ({camera} = frame id; '/compressed' appended for CompressedImage)",
                  read_only=True, validator=_pattern),
        ParamSpec("camera_info_topic_template", "/cameras/{camera}/camera_info",
                  "CameraInfo topic per camera",
                  read_only=True, validator=_pattern),
        ParamSpec("lidar_topic", "/lidar_top/points", "PointCloud2 topic", read_only=True,
                  validator=_topic),
        ParamSpec("boxes_topic", "/gt/boxes", "GT boxes MarkerArray topic", read_only=True,
                  validator=_topic),
        ParamSpec("odom_topic", "/odom", "ego Odometry topic", read_only=True, validator=_topic),
        ParamSpec("publish_lidar", True, "publish the LiDAR cloud"),
        ParamSpec("publish_boxes", True, "publish GT boxes"),
        ParamSpec("publish_tf", True, "publish /tf and /tf_static (needs tf2_msgs)"),
        ParamSpec("stamp_mode", "now", "now: re-time samples to the clock keeping sensor "
                  "offsets; dataset: original timestamps", choices=("now", "dataset")),
        ParamSpec("rig_file_out", "", "write the rig calibration YAML here on configure",
                  read_only=True),
        ParamSpec("base_frame", "base_link", "ego frame", read_only=True),
        ParamSpec("cache_frames", 64, "decoded samples kept in memory", read_only=True, min=1),
        ParamSpec("qos_reliable", True, "reliable publishers (best-effort subscribers still "
                  "match)", read_only=True),
    )

    def __init__(self, **kwargs) -> None:
        super().__init__("frame_player_node", self.PARAMS, **kwargs)
        self.frames: NuScenesFrames | None = None
        self._pubs: dict[str, object] = {}
        self._timer = None
        self.index = 0
        self.published = 0
        self.last_stamps: dict[str, float] = {}

    # -- lifecycle --------------------------------------------------------------------------
    def on_configure_impl(self) -> None:
        root = self.p("dataroot")
        if not root:
            raise RuntimeError("parameter dataroot is empty (a nuScenes or lss-bev-synth root)")
        scenes = [s for s in self.p("scenes") if s]
        self.frames = NuScenesFrames(root, self.p("version"), scenes, tuple(self.p("cameras")),
                                     float(self.p("image_scale")), int(self.p("jpeg_quality")),
                                     int(self.p("cache_frames")))
        self.get_logger().info(f"{len(self.frames)} samples from {root}")
        out = self.p("rig_file_out")
        if out:
            save_rig_yaml(self.frames.frame(0).rig(), out)
            self.get_logger().info(f"wrote rig calibration {out}")
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE if self.p(
            "qos_reliable") else ReliabilityPolicy.BEST_EFFORT)
        tr = self.p("image_type")
        for ch in self.frames.cameras:
            fid = frame_id_for(ch)
            topic = self.p("image_topic_template").replace("{camera}", fid)
            if tr in ("compressed", "both"):
                self._pubs[f"cmp/{ch}"] = self.create_publisher(CompressedImage,
                                                                 topic + "/compressed", qos)
            if tr in ("raw", "both"):
                self._pubs[f"raw/{ch}"] = self.create_publisher(Image, topic, qos)
            self._pubs[f"info/{ch}"] = self.create_publisher(
                CameraInfo, self.p("camera_info_topic_template").replace("{camera}", fid), qos)
        self._pubs["lidar"] = self.create_publisher(PointCloud2, self.p("lidar_topic"), qos)
        self._pubs["boxes"] = self.create_publisher(MarkerArray, self.p("boxes_topic"), 10)
        self._pubs["odom"] = self.create_publisher(Odometry, self.p("odom_topic"), 10)
        if TFMessage is not None:
            self._pubs["tf"] = self.create_publisher(TFMessage, "/tf", 10)
            self._pubs["tf_static"] = self.create_publisher(TFMessage, "/tf_static",
                                                            latched_qos())
        elif self.p("publish_tf"):
            self.get_logger().warning("tf2_msgs not importable: /tf and /tf_static are not "
                                      "published (extrinsics travel in the rig file; ego pose "
                                      "on " + self.p("odom_topic") + ")")
            self.diag.set("tf", "unavailable (tf2_msgs missing)")

    def on_activate_impl(self) -> None:
        self.index = 0
        self.published = 0
        self._publish_tf_static()
        self._timer = self.create_timer(1.0 / float(self.p("rate_hz")), self._tick)

    def on_deactivate_impl(self) -> None:
        if self._timer is not None:
            self.destroy_timer(self._timer)
            self._timer = None

    def on_cleanup_impl(self) -> None:
        for p in self._pubs.values():
            self.destroy_publisher(p)
        self._pubs = {}
        self.frames = None

    def on_params_applied(self, changed: dict) -> None:
        if "rate_hz" in changed and self._timer is not None:
            self.destroy_timer(self._timer)
            self._timer = self.create_timer(1.0 / float(changed["rate_hz"]), self._tick)

    # -- publishing -------------------------------------------------------------------------
    def _tick(self) -> None:
        frames = self.frames
        if frames is None or not self.active:
            return
        limit = int(self.p("max_frames"))
        if (limit and self.published >= limit) or (
                not self.p("loop") and self.index >= len(frames)):
            if self.diag.values.get("finished") != "True":
                self.get_logger().info(f"finished after {self.published} frames")
                self.diag.set("finished", True)
            return
        try:
            f = frames.frame(self.index)
        except (OSError, ValueError) as exc:
            self.diag.error("bad_sample", f"sample {self.index}: {exc}")
            self.index += 1
            return
        self.index += 1
        self.publish_frame(f)

    def _stamp_for(self, f: SampleFrame, ts: float, base: float):
        return sec_to_stamp(ts) if self.p("stamp_mode") == "dataset" else sec_to_stamp(
            base + (ts - f.newest_timestamp))

    def publish_frame(self, f: SampleFrame) -> None:
        """Publish one sample now (camera infos first, then images, LiDAR, boxes, pose)."""
        base = self.now_sec()
        tr = self.p("image_type")
        for ch, c in f.cameras.items():
            stamp = self._stamp_for(f, c.timestamp, base)
            fid = frame_id_for(ch)
            info = CameraInfo()
            info.header.stamp, info.header.frame_id = stamp, fid
            info.width, info.height = c.width, c.height
            info.distortion_model = "plumb_bob"
            info.d = [0.0] * 5
            info.k = [float(v) for v in c.intrinsics.reshape(-1)]
            info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
            p = np.zeros((3, 4))
            p[:, :3] = c.intrinsics
            info.p = [float(v) for v in p.reshape(-1)]
            self._pubs[f"info/{ch}"].publish(info)
            if tr in ("compressed", "both"):
                m = CompressedImage()
                m.header.stamp, m.header.frame_id = stamp, fid
                m.format = "jpeg"
                m.data = c.jpeg
                self._pubs[f"cmp/{ch}"].publish(m)
            if tr in ("raw", "both"):
                if c.rgb is None:
                    bgr = cv2.imdecode(np.frombuffer(c.jpeg, np.uint8), cv2.IMREAD_COLOR)
                    c.rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                m = Image()
                m.header.stamp, m.header.frame_id = stamp, fid
                m.height, m.width, m.step, data = rgb_to_image_bytes(c.rgb)
                m.encoding = "rgb8"
                m.data = data
                self._pubs[f"raw/{ch}"].publish(m)
            self.last_stamps[ch] = stamp.sec + stamp.nanosec * 1e-9
        lstamp = self._stamp_for(f, f.lidar_timestamp, base)
        if f.lidar_points is not None and self.p("publish_lidar"):
            self._pubs["lidar"].publish(self._cloud(f.lidar_points, lstamp))
        if self.p("publish_boxes") and f.lidar_points is not None:
            self._pubs["boxes"].publish(self._markers(f, lstamp))
        self._publish_pose(f, lstamp)
        self.published += 1
        self.diag.count("frames_published")
        self.diag.set("sample", f"{f.scene} {f.token}")

    @staticmethod
    def _cloud(points: np.ndarray, stamp) -> PointCloud2:
        fields, step, data = points_to_pointcloud2_fields(points)
        m = PointCloud2()
        m.header.stamp, m.header.frame_id = stamp, "lidar_top"
        m.height, m.width = 1, int(points.shape[0])
        m.fields = [PointField(name=n, offset=o, datatype=d, count=1) for n, o, d in fields]
        m.is_bigendian = False
        m.point_step, m.row_step = step, step * int(points.shape[0])
        m.data = array.array("B", data)
        m.is_dense = True
        return m

    def _markers(self, f: SampleFrame, stamp) -> MarkerArray:
        base = self.p("base_frame")
        clear = Marker(action=Marker.DELETEALL)
        clear.header.stamp, clear.header.frame_id = stamp, base
        out = [clear]
        for cat, c, size, q, instance in f.boxes:
            m = Marker(type=Marker.CUBE, action=Marker.ADD, id=instance, ns=cat)
            m.header.stamp, m.header.frame_id = stamp, base
            m.pose = Pose(position=Point(x=float(c[0]), y=float(c[1]), z=float(c[2])),
                          orientation=Quaternion(w=float(q[0]), x=float(q[1]), y=float(q[2]),
                                                 z=float(q[3])))
            m.scale = Vector3(x=float(size[0]), y=float(size[1]), z=float(size[2]))
            r, g, b, a = category_rgba(cat)
            m.color = ColorRGBA(r=r, g=g, b=b, a=a)
            out.append(m)
        return MarkerArray(markers=out)

    def _publish_pose(self, f: SampleFrame, stamp) -> None:
        t, q = f.ego_translation, f.ego_rotation_wxyz
        odom = Odometry()
        odom.header.stamp, odom.header.frame_id = stamp, "map"
        odom.child_frame_id = self.p("base_frame")
        odom.pose.pose = Pose(position=Point(x=float(t[0]), y=float(t[1]), z=float(t[2])),
                              orientation=Quaternion(w=float(q[0]), x=float(q[1]),
                                                     y=float(q[2]), z=float(q[3])))
        self._pubs["odom"].publish(odom)
        if TFMessage is not None and self.p("publish_tf"):
            self._pubs["tf"].publish(TFMessage(transforms=[
                self._transform("map", self.p("base_frame"), t, q, stamp)]))

    def _publish_tf_static(self) -> None:
        if TFMessage is None or not self.p("publish_tf") or self.frames is None:
            return
        f = self.frames.frame(0)
        stamp = sec_to_stamp(self.now_sec())
        tfs = [self._transform(self.p("base_frame"), frame_id_for(c.name), c.translation,
                               matrix_to_quaternion(c.rotation), stamp)
               for c in f.cameras.values()]
        if f.lidar_rotation is not None:
            tfs.append(self._transform(self.p("base_frame"), "lidar_top", f.lidar_translation,
                                       matrix_to_quaternion(f.lidar_rotation), stamp))
        self._pubs["tf_static"].publish(TFMessage(transforms=tfs))

    @staticmethod
    def _transform(parent: str, child: str, t, q_wxyz, stamp):
        ts = TransformStamped()
        ts.header.stamp, ts.header.frame_id, ts.child_frame_id = stamp, parent, child
        ts.transform.translation = Vector3(x=float(t[0]), y=float(t[1]), z=float(t[2]))
        ts.transform.rotation = Quaternion(w=float(q_wxyz[0]), x=float(q_wxyz[1]),
                                           y=float(q_wxyz[2]), z=float(q_wxyz[3]))
        return ts


def main(args: list[str] | None = None) -> int:
    """``ros2 run lss_bev_ros frame_player_node``."""
    return run_node(FramePlayerNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
