"""3D objects (:class:`lss_bev_ros.objects.types.Object3D`) <-> ROS messages, and the other message
handling of objects_node that needs no node: 2D detection arrays -> :class:`Detections`,
odometry / tf poses -> :class:`Pose2D`, RViz markers.

Messages are duck-typed on input (any object with the message's attributes) and built with the
message classes imported lazily, so this module imports without ROS and is tested without DDS.
Frames follow REP-103 (x forward, y left, z up); metres, radians, m/s, seconds.

Message layout (see msg/DetectedObjectKinematics.msg, msg/TrackedObjectKinematics.msg):

* pose covariance: 6 x 6 row-major over (x, y, z, rot_x, rot_y, rot_z) in the header frame:
  (x, y) from the estimate, z = (height / 4)^2, rot_z = yaw variance (``UNOBSERVED_YAW_VAR``
  when the yaw is not observed), rot_x = rot_y = 0, other cross terms 0.
* twist: in the OBJECT frame (Autoware convention), ``R(yaw)^T [vx, vy]``; its covariance
  ``R^T C R`` over (vx, vy); covariance[0] = -1 when unknown.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from lss_bev_ros.detection.types import Detections
from lss_bev_ros.objects.types import Object3D, Pose2D

#: ObjectClassification.label of each nuScenes detection name (Autoware's numbering)
AUTOWARE_LABELS: Mapping[str, int] = {
    "car": 1,
    "truck": 2,
    "construction_vehicle": 2,
    "bus": 3,
    "trailer": 4,
    "motorcycle": 5,
    "bicycle": 6,
    "pedestrian": 7,
    "animal": 8,
    "traffic_cone": 0,
    "barrier": 0,
}

#: yaw variance (rad^2) of a yaw nobody observed: uniform on [-pi, pi)
UNOBSERVED_YAW_VAR = math.pi**2 / 3.0

#: marker colours (r, g, b) 0..1 per nuScenes name; others grey
CLASS_COLORS: Mapping[str, tuple[float, float, float]] = {
    "car": (0.15, 0.55, 1.0),
    "truck": (1.0, 0.55, 0.1),
    "bus": (1.0, 0.85, 0.1),
    "pedestrian": (1.0, 0.2, 0.25),
    "trailer": (0.7, 0.4, 0.1),
    "bicycle": (0.3, 0.9, 0.4),
    "motorcycle": (0.6, 0.3, 0.9),
}
_GREY = (0.7, 0.7, 0.7)

UNAVAILABLE, SIGN_UNKNOWN, AVAILABLE = 0, 1, 2  # orientation_availability values


# ---------------------------------------------------------------------------- geometry ----
def yaw_to_quaternion(yaw: float) -> tuple[float, float, float, float]:
    """Rotation about +z by ``yaw`` rad -> quaternion (x, y, z, w)."""
    return 0.0, 0.0, math.sin(yaw / 2.0), math.cos(yaw / 2.0)


def quaternion_to_yaw(x: float, y: float, z: float, w: float) -> float:
    """Heading (rad about +z) of a quaternion (x, y, z, w); roll and pitch are ignored."""
    return math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


def _rot(yaw: float) -> np.ndarray:
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, -s], [s, c]])


def _finite_cov(c: np.ndarray | None) -> np.ndarray | None:
    if c is None:
        return None
    a = np.asarray(c, dtype=np.float64).reshape(2, 2)
    return a if np.all(np.isfinite(a)) else None


def yaw_variance(obj: Object3D) -> float:
    """Yaw variance (rad^2) published for ``obj``."""
    v = float(getattr(obj, "yaw_variance", math.nan))
    if obj.yaw_observed and math.isfinite(v) and v >= 0.0:
        return v
    return UNOBSERVED_YAW_VAR


def pose_covariance(obj: Object3D) -> tuple[list[float], bool]:
    """(36 floats row-major over x, y, z, rot_x, rot_y, rot_z; has_position_covariance)."""
    cov = np.zeros((6, 6))
    pc = _finite_cov(obj.position_covariance)
    if pc is not None:
        cov[:2, :2] = pc
    cov[2, 2] = (max(float(obj.height), 0.0) / 4.0) ** 2
    cov[5, 5] = yaw_variance(obj)
    return [float(v) for v in cov.reshape(-1)], pc is not None


def twist_in_object_frame(obj: Object3D) -> tuple[float, float, np.ndarray | None]:
    """Header-frame velocity (vx, vy) -> (v_along_heading, v_left, 2 x 2 covariance | None) in
    the object frame (rotation by ``-yaw``)."""
    r = _rot(float(obj.yaw))
    v = r.T @ np.array([obj.vx, obj.vy], dtype=np.float64)
    c = _finite_cov(obj.velocity_covariance)
    return float(v[0]), float(v[1]), (r.T @ c @ r if c is not None else None)


def twist_covariance(cov2: np.ndarray | None) -> list[float]:
    """2 x 2 (vx, vy) covariance -> 36 floats; ``[-1, 0, ...]`` when unknown."""
    cov = np.zeros((6, 6))
    if cov2 is None:
        cov[0, 0] = -1.0
    else:
        cov[:2, :2] = cov2
    return [float(v) for v in cov.reshape(-1)]


def speed(obj: Object3D) -> float:
    """|v| m/s."""
    return math.hypot(obj.vx, obj.vy)


def orientation_availability(obj: Object3D, tracked: bool, moving_mps: float = 1.0) -> int:
    """UNAVAILABLE / SIGN_UNKNOWN / AVAILABLE (see DetectedObjectKinematics.msg).

    A track moving faster than ``moving_mps`` whose yaw agrees with its direction of motion
    (within 30 deg) has a full heading; an observed yaw without that is known up to 180 deg.
    """
    if tracked and speed(obj) >= moving_mps:
        d = math.atan2(obj.vy, obj.vx) - obj.yaw
        if abs(math.atan2(math.sin(d), math.cos(d))) < math.radians(30.0):
            return AVAILABLE
    return SIGN_UNKNOWN if obj.yaw_observed else UNAVAILABLE


def autoware_label(name: str) -> int:
    """nuScenes detection name -> ObjectClassification label constant (UNKNOWN = 0)."""
    return AUTOWARE_LABELS.get(name, 0)


# ----------------------------------------------------------------------------- track ids ----
def new_uuid_prefix() -> bytes:
    """8 random bytes of an RFC 4122 version-4 UUID (version nibble included)."""
    return uuid.uuid4().bytes[:8]


def object_uuid(prefix: bytes, track_id: int) -> bytes:
    """16-byte object id: ``prefix`` (8 bytes) + ``track_id`` big-endian with the RFC 4122
    variant bits (10xx) in byte 8. Unique per (prefix, id < 2**62)."""
    if len(prefix) != 8:
        raise ValueError("uuid prefix must be 8 bytes")
    tail = bytearray(int(track_id & ((1 << 64) - 1)).to_bytes(8, "big"))
    tail[0] = (tail[0] & 0x3F) | 0x80
    return bytes(prefix) + bytes(tail)


# --------------------------------------------------------------------- input conversion ----
def detections_from_msg(msg: Any, class_names: Sequence[str]) -> tuple[Detections, int]:
    """``lss_bev_ros/Detection2DArray`` -> (:class:`Detections` in the message's image pixels,
    number of detections dropped for an unknown class).

    The class is the index of ``label`` in ``class_names`` when the label is one of them, else
    ``class_id`` when it indexes ``class_names``; other detections are dropped. Box values are
    passed on as they are (NaN / negative sizes included: the objects core rejects and counts
    them), ``center +- size / 2``.
    """
    index = {n: i for i, n in enumerate(class_names)}
    rows, conf, cls, tid = [], [], [], []
    unknown = 0
    for d in msg.detections:
        c = index.get(str(d.label))
        if c is None:
            c = int(d.class_id) if 0 <= int(d.class_id) < len(class_names) else None
        if c is None:
            unknown += 1
            continue
        cx, cy, w, h = float(d.center_x), float(d.center_y), float(d.size_x), float(d.size_y)
        rows.append((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
        conf.append(float(d.score))
        cls.append(c)
        tid.append(int(d.track_id))
    size = (int(msg.image_height), int(msg.image_width))
    if not rows:
        return Detections.empty(size), unknown
    return Detections(np.array(rows, np.float64), np.array(conf), np.array(cls), size,
                      np.array(tid, np.int64)), unknown


# --------------------------------------------------------------------------- poses -------
def pose2d_from_pose(position: Any, orientation: Any, stamp: float) -> Pose2D | None:
    """geometry_msgs/Pose ``position`` + ``orientation`` (or a Transform's ``translation`` +
    ``rotation``; duck-typed) -> ground-plane :class:`Pose2D`; None when not finite or the
    quaternion is degenerate."""
    p, q = position, orientation
    vals = (p.x, p.y, q.x, q.y, q.z, q.w)
    if not all(math.isfinite(float(v)) for v in vals):
        return None
    if float(q.x) ** 2 + float(q.y) ** 2 + float(q.z) ** 2 + float(q.w) ** 2 < 1e-12:
        return None
    yaw = quaternion_to_yaw(float(q.x), float(q.y), float(q.z), float(q.w))
    return Pose2D(float(p.x), float(p.y), yaw, float(stamp))


def objects_in_base(objects: Sequence[Object3D], pose: Pose2D) -> list[Object3D]:
    """Objects in map -> the same objects in base_link at ``pose`` (map -> base_link): position,
    yaw and covariances rotated; the velocity stays the velocity over ground, expressed in
    base_link axes."""
    from dataclasses import replace

    r = _rot(pose.yaw)
    out = []
    for o in objects:
        x, y = pose.to_base(np.array([[o.x, o.y]]))[0]
        v = r.T @ np.array([o.vx, o.vy])
        pc = np.asarray(o.position_covariance, dtype=np.float64).reshape(2, 2)
        vc = _finite_cov(o.velocity_covariance)
        yaw = math.atan2(math.sin(o.yaw - pose.yaw), math.cos(o.yaw - pose.yaw))
        out.append(replace(o, x=float(x), y=float(y), yaw=yaw, vx=float(v[0]), vy=float(v[1]),
                           position_covariance=r.T @ pc @ r,
                           velocity_covariance=None if vc is None else r.T @ vc @ r))
    return out


# ---------------------------------------------------------------------- output messages ----
def _classification(obj: Object3D) -> Any:
    from lss_bev_ros.msg import ObjectClassification

    return ObjectClassification(label=autoware_label(obj.label), label_name=str(obj.label),
                                probability=float(np.clip(obj.label_probability, 0.0, 1.0)))


def _fill_pose(pwc: Any, obj: Object3D) -> bool:
    p = pwc.pose
    p.position.x, p.position.y, p.position.z = float(obj.x), float(obj.y), float(obj.z)
    qx, qy, qz, qw = yaw_to_quaternion(float(obj.yaw))
    p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w = qx, qy, qz, qw
    cov, has = pose_covariance(obj)
    pwc.covariance = cov
    return has


def _fill_shape(shape: Any, obj: Object3D) -> None:
    shape.type = 0  # BOUNDING_BOX
    shape.dimensions.x = float(obj.length)
    shape.dimensions.y = float(obj.width)
    shape.dimensions.z = float(obj.height)


def detected_object_msg(obj: Object3D) -> Any:
    """:class:`Object3D` (no velocity) -> ``lss_bev_ros/DetectedObject``."""
    from lss_bev_ros.msg import DetectedObject

    m = DetectedObject()
    m.existence_probability = float(np.clip(obj.existence_probability, 0.0, 1.0))
    m.classification = [_classification(obj)]
    k = m.kinematics
    k.has_position_covariance = _fill_pose(k.pose_with_covariance, obj)
    k.orientation_availability = orientation_availability(obj, tracked=False)
    moving = obj.vx != 0.0 or obj.vy != 0.0
    k.has_twist = bool(moving)
    vx, vy, c = twist_in_object_frame(obj)
    k.twist_with_covariance.twist.linear.x, k.twist_with_covariance.twist.linear.y = vx, vy
    k.has_twist_covariance = bool(moving and c is not None)
    k.twist_with_covariance.covariance = twist_covariance(c)
    _fill_shape(m.shape, obj)
    m.source_cameras = [str(c) for c in obj.cameras]
    return m


def tracked_object_msg(obj: Object3D, uuid_prefix: bytes, stationary_mps: float = 0.5,
                       moving_mps: float = 1.0) -> Any:
    """Confirmed track -> ``lss_bev_ros/TrackedObject`` (object_id from ``uuid_prefix``)."""
    from lss_bev_ros.msg import TrackedObject

    m = TrackedObject()
    m.object_id.uuid = list(object_uuid(uuid_prefix, int(obj.track_id)))
    m.id = int(max(obj.track_id, 0))
    m.existence_probability = float(np.clip(obj.existence_probability, 0.0, 1.0))
    m.classification = [_classification(obj)]
    k = m.kinematics
    _fill_pose(k.pose_with_covariance, obj)
    vx, vy, c = twist_in_object_frame(obj)
    k.twist_with_covariance.twist.linear.x, k.twist_with_covariance.twist.linear.y = vx, vy
    k.twist_with_covariance.covariance = twist_covariance(c)
    k.acceleration_with_covariance.covariance = twist_covariance(None)
    k.orientation_availability = orientation_availability(obj, True, moving_mps)
    k.is_stationary = speed(obj) < stationary_mps
    _fill_shape(m.shape, obj)
    m.age_s = float(obj.age_s)
    m.source_cameras = [str(c) for c in obj.cameras]
    return m


def detected_objects_msg(objects: Iterable[Object3D], stamp: Any, frame_id: str) -> Any:
    """-> ``lss_bev_ros/DetectedObjects``; ``stamp`` is the input's header stamp message."""
    from lss_bev_ros.msg import DetectedObjects

    m = DetectedObjects()
    m.header.stamp, m.header.frame_id = stamp, frame_id
    m.objects = [detected_object_msg(o) for o in objects]
    return m


def tracked_objects_msg(objects: Iterable[Object3D], stamp: Any, frame_id: str,
                        uuid_prefix: bytes, stationary_mps: float = 0.5,
                        moving_mps: float = 1.0) -> Any:
    """-> ``lss_bev_ros/TrackedObjects``; ``stamp`` is the input's header stamp message."""
    from lss_bev_ros.msg import TrackedObjects

    m = TrackedObjects()
    m.header.stamp, m.header.frame_id = stamp, frame_id
    m.objects = [tracked_object_msg(o, uuid_prefix, stationary_mps, moving_mps) for o in objects]
    return m


def object_from_tracked_msg(m: Any) -> dict[str, Any]:
    """``TrackedObject`` (duck-typed) -> plain dict in the header frame: x, y, z, yaw, length,
    width, height, vx, vy (header frame, m/s), velocity_covariance (2 x 2 ndarray, header
    frame, (m/s)^2; None when the message says unknown), id, label, age_s (for tests, tools,
    the web, fusion_node)."""
    p = m.kinematics.pose_with_covariance.pose
    yaw = quaternion_to_yaw(p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w)
    t = m.kinematics.twist_with_covariance.twist.linear
    r = _rot(yaw)
    v = r @ np.array([t.x, t.y])
    tc = np.asarray(m.kinematics.twist_with_covariance.covariance, dtype=np.float64)
    vcov = r @ tc.reshape(6, 6)[:2, :2] @ r.T if tc.size == 36 and tc[0] >= 0 else None
    label = m.classification[0].label_name if m.classification else ""
    return {"id": int(m.id), "x": float(p.position.x), "y": float(p.position.y),
            "z": float(p.position.z), "yaw": yaw, "length": float(m.shape.dimensions.x),
            "width": float(m.shape.dimensions.y), "height": float(m.shape.dimensions.z),
            "vx": float(v[0]), "vy": float(v[1]), "velocity_covariance": vcov,
            "label": label, "age_s": float(m.age_s),
            "cameras": list(m.source_cameras)}


# ------------------------------------------------------------------------------ markers ----
def object_markers(tracked: Sequence[Object3D], tracked_frame: str,
                   detected: Sequence[Object3D], detected_frame: str, stamp: Any, *,
                   show_detected: bool = True, lifetime_s: float = 1.0,
                   arrow_horizon_s: float = 1.0) -> Any:
    """``visualization_msgs/MarkerArray`` of one frame: DELETEALL first, then per track a CUBE
    (coloured by class), a TEXT ``#id label speed`` above it and an ARROW from the box centre
    to where it will be in ``arrow_horizon_s`` (none when not moving); per detection (with
    ``show_detected``) a translucent CUBE. Namespaces ``tracked/box``, ``tracked/id``,
    ``tracked/velocity``, ``detected/box``."""
    from geometry_msgs.msg import Point
    from visualization_msgs.msg import Marker, MarkerArray

    out = MarkerArray()
    clear = Marker()
    clear.header.stamp, clear.header.frame_id = stamp, tracked_frame
    clear.action = Marker.DELETEALL
    out.markers.append(clear)

    def base(ns: str, mid: int, mtype: int, frame: str, obj: Object3D, alpha: float) -> Any:
        m = Marker()
        m.header.stamp, m.header.frame_id = stamp, frame
        m.ns, m.id, m.type, m.action = ns, int(mid), mtype, Marker.ADD
        r, g, b = CLASS_COLORS.get(obj.label, _GREY)
        m.color.r, m.color.g, m.color.b, m.color.a = r, g, b, alpha
        m.lifetime.sec = int(lifetime_s)
        m.lifetime.nanosec = round((lifetime_s % 1.0) * 1e9) % 1_000_000_000
        m.pose.orientation.w = 1.0
        return m

    def cube(ns: str, mid: int, frame: str, obj: Object3D, alpha: float) -> Any:
        m = base(ns, mid, Marker.CUBE, frame, obj, alpha)
        m.pose.position.x, m.pose.position.y, m.pose.position.z = obj.x, obj.y, obj.z
        qx, qy, qz, qw = yaw_to_quaternion(obj.yaw)
        m.pose.orientation.x, m.pose.orientation.y = qx, qy
        m.pose.orientation.z, m.pose.orientation.w = qz, qw
        m.scale.x = max(float(obj.length), 0.01)
        m.scale.y = max(float(obj.width), 0.01)
        m.scale.z = max(float(obj.height), 0.01)
        return m

    for i, o in enumerate(tracked):
        mid = int(o.track_id) if o.track_id >= 0 else 1_000_000 + i
        out.markers.append(cube("tracked/box", mid, tracked_frame, o, 0.6))
        text = base("tracked/id", mid, Marker.TEXT_VIEW_FACING, tracked_frame, o, 1.0)
        text.pose.position.x, text.pose.position.y = o.x, o.y
        text.pose.position.z = o.z + o.height / 2 + 0.8
        text.scale.z = 0.9
        text.text = f"#{o.track_id} {o.label} {speed(o):.1f} m/s"
        out.markers.append(text)
        if speed(o) > 0.1:
            arrow = base("tracked/velocity", mid, Marker.ARROW, tracked_frame, o, 1.0)
            z = o.z + o.height / 2
            arrow.points = [Point(x=float(o.x), y=float(o.y), z=float(z)),
                            Point(x=float(o.x + o.vx * arrow_horizon_s),
                                  y=float(o.y + o.vy * arrow_horizon_s), z=float(z))]
            arrow.scale.x, arrow.scale.y, arrow.scale.z = 0.2, 0.5, 0.6  # shaft, head d, head l
            out.markers.append(arrow)
    if show_detected:
        for i, o in enumerate(detected):
            out.markers.append(cube("detected/box", i, detected_frame, o, 0.25))
    return out


def overlay_boxes(objects: Sequence[Object3D]) -> list[dict[str, Any]]:
    """Plain dicts (x, y, yaw, length, width, label, id, vx, vy) for a BEV view overlay."""
    return [{"x": float(o.x), "y": float(o.y), "yaw": float(o.yaw), "length": float(o.length),
             "width": float(o.width), "label": str(o.label), "id": int(o.track_id),
             "vx": float(o.vx), "vy": float(o.vy)} for o in objects]
