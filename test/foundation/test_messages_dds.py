"""Each custom message goes from one rclpy node to another over real DDS, fields intact."""

from __future__ import annotations

import math

import pytest
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy

from lss_bev_ros.msg import (
    BevMetrics,
    DetectedObject,
    DetectedObjects,
    Detection2D,
    Detection2DArray,
    ObjectClassification,
    PipelineTiming,
    StageDuration,
    TrackedObject,
    TrackedObjectKinematics,
    TrackedObjects,
)


def _detections() -> Detection2DArray:
    m = Detection2DArray()
    m.header.stamp.sec, m.header.stamp.nanosec = 1533151603, 512404000
    m.header.frame_id = "cam_front"
    m.camera_name, m.image_width, m.image_height = "CAM_FRONT", 1600, 900
    m.detections = [
        Detection2D(class_id=2, label="car", score=0.91, center_x=812.5, center_y=455.0,
                    size_x=120.25, size_y=80.5, track_id=17),
        Detection2D(class_id=0, label="person", score=0.42, center_x=10.0, center_y=20.0,
                    size_x=5.0, size_y=12.0, track_id=Detection2D.TRACK_ID_NONE),
    ]
    return m


def _timing() -> PipelineTiming:
    m = PipelineTiming()
    m.header.stamp.sec = 42
    m.header.frame_id = "base_link"
    m.node_name, m.backend = "bev_node", "onnxruntime(CPUExecutionProvider)"
    m.stages = [StageDuration(name="geometry", duration_ms=0.5),
                StageDuration(name="camera_encoder", duration_ms=250.0)]
    m.total_ms, m.latency_ms, m.frames_processed, m.frames_dropped = 260.0, 300.5, 10, 3
    m.node_latency_ms = 280.25
    return m


def _metrics() -> BevMetrics:
    m = BevMetrics()
    m.header.stamp.sec = 7
    m.header.frame_id = "base_link"
    m.reference_kind = BevMetrics.REFERENCE_GT_BOXES
    m.reference_description = "GT box footprints"
    m.iou, m.precision, m.recall = 0.5, 0.75, float("nan")
    m.true_positive_cells, m.false_positive_cells, m.false_negative_cells = 100, 33, 67
    m.mean_iou, m.mean_precision, m.mean_recall = 0.4, 0.6, 0.55
    m.frame_count, m.unmatched_count = 12, 1
    m.latency_p50_ms, m.latency_p90_ms, m.latency_p99_ms, m.threshold = 200.0, 250.0, 300.0, 0.5
    return m


def _detected_objects() -> DetectedObjects:
    m = DetectedObjects()
    m.header.stamp.sec, m.header.stamp.nanosec = 1533151603, 512404000
    m.header.frame_id = "base_link"
    o = DetectedObject(existence_probability=0.8, source_cameras=["CAM_FRONT", "CAM_FRONT_RIGHT"])
    o.classification = [ObjectClassification(label=ObjectClassification.CAR, label_name="car",
                                             probability=0.9)]
    o.kinematics.pose_with_covariance.pose.position.x = 12.5
    o.kinematics.pose_with_covariance.pose.orientation.z = 0.38268343
    o.kinematics.pose_with_covariance.pose.orientation.w = 0.92387953
    o.kinematics.pose_with_covariance.covariance = [float(i) for i in range(36)]
    o.kinematics.has_position_covariance = True
    o.kinematics.orientation_availability = o.kinematics.SIGN_UNKNOWN
    o.shape.dimensions.x, o.shape.dimensions.y, o.shape.dimensions.z = 4.5, 1.9, 1.6
    m.objects = [o, DetectedObject()]
    return m


def _tracked_objects() -> TrackedObjects:
    m = TrackedObjects()
    m.header.stamp.sec = 99
    m.header.frame_id = "map"
    o = TrackedObject(id=2**40 + 3, existence_probability=0.95, age_s=2.5,
                      source_cameras=["CAM_BACK"])
    o.object_id.uuid = list(range(16))
    o.classification = [ObjectClassification(label=ObjectClassification.PEDESTRIAN,
                                             label_name="pedestrian", probability=0.7)]
    k = o.kinematics
    k.twist_with_covariance.twist.linear.x = -1.25
    k.twist_with_covariance.covariance = [0.5] * 36
    k.acceleration_with_covariance.covariance[0] = -1.0
    k.orientation_availability = TrackedObjectKinematics.AVAILABLE
    k.is_stationary = False
    o.shape.dimensions.x = 0.7
    m.objects = [o]
    return m


def _same(a, b) -> bool:
    """Field-wise equality that treats NaN == NaN."""
    if hasattr(a, "get_fields_and_field_types"):
        return all(_same(getattr(a, f), getattr(b, f)) for f in a.get_fields_and_field_types())
    if hasattr(a, "dtype") and hasattr(a, "__len__"):  # numpy-backed fixed arrays (uint8[16])
        a, b = list(a), list(b)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    if isinstance(a, float):
        return abs(a - b) <= 1e-6 * max(1.0, abs(a))
    return a == b


@pytest.mark.parametrize(
    ("msg_type", "factory"),
    [(Detection2DArray, _detections), (PipelineTiming, _timing), (BevMetrics, _metrics),
     (DetectedObjects, _detected_objects), (TrackedObjects, _tracked_objects)],
)
def test_custom_message_round_trip_over_dds(ros_context, spin, msg_type, factory) -> None:
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    talker = Node("lss_test_talker", context=ros_context)
    listener = Node("lss_test_listener", context=ros_context)
    got: list = []
    listener.create_subscription(msg_type, "/lss_test/topic", got.append, qos)
    pub = talker.create_publisher(msg_type, "/lss_test/topic", qos)
    ex = SingleThreadedExecutor(context=ros_context)
    ex.add_node(talker)
    ex.add_node(listener)
    sent = factory()
    assert spin(ex, lambda: pub.get_subscription_count() > 0, 10.0), "no DDS match"

    def publish_and_wait() -> bool:
        pub.publish(sent)
        return bool(got)

    assert spin(ex, publish_and_wait, 10.0), "message never arrived"
    assert _same(sent, got[0])
    assert got[0] is not sent
    ex.shutdown()
    talker.destroy_node()
    listener.destroy_node()
