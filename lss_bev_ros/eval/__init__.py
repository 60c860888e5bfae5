"""Evaluation: segmentation metrics and latency statistics (`metrics`), reference occupancy
(`reference`). ROS-free."""

from lss_bev_ros.eval.metrics import Confusion, LatencyStats, RunningMetrics, iou, precision, recall

__all__ = ["Confusion", "LatencyStats", "RunningMetrics", "iou", "precision", "recall"]
