"""Batched multi-camera YOLO detection, per-camera ByteTrack tracking, 2D GT projection, export.

ROS-free: ``detector_node`` is the thin ROS glue around these modules. Heavy imports
(``ultralytics``, ``torch``) happen inside the modules that need them, not here.
"""

from lss_bev_ros.detection.types import TRACK_ID_NONE, Detections

__all__ = ["TRACK_ID_NONE", "Detections"]
