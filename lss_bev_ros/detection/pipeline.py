"""Detect + track one camera set: the core detector_node and the quality benchmark both call.

``DetectionPipeline.run([(camera, rgb), ...])`` runs ONE batched YOLO forward pass over the set,
then per-camera ByteTrack (fed down to its low threshold, as ultralytics' ``model.track`` does)
and returns what a consumer should see (:func:`~lss_bev_ros.detection.tracking.publishable`).
ROS-free.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from lss_bev_ros.detection.detector import BatchedDetector
from lss_bev_ros.detection.tracking import (
    MultiCameraTracker,
    TrackerConfig,
    detector_conf,
    publishable,
)
from lss_bev_ros.detection.types import Detections


@dataclass
class DetectionResult:
    """One set's result, in the order of the input images."""

    raw: list[Detections]  # detector output (scores down to the detector's threshold)
    published: list[Detections]  # tracked (ids) and thresholded for consumers
    stage_ms: dict[str, float] = field(default_factory=dict)  # preprocess, inference, tracking


class DetectionPipeline:
    """Batched detection + per-camera tracking with one set of thresholds.

    Args:
        detector: the loaded :class:`BatchedDetector`.
        cameras: camera names (one tracker each).
        conf_threshold: minimum score of a published detection (0..1).
        tracking: ByteTrack on (False: every track id is -1).
        tracker_config: ByteTrack thresholds.
    """

    def __init__(self, detector: BatchedDetector, cameras: Sequence[str],
                 conf_threshold: float = 0.25, tracking: bool = True,
                 tracker_config: TrackerConfig | None = None) -> None:
        self.detector = detector
        self.cameras = tuple(cameras)
        self.conf_threshold = float(conf_threshold)
        self.tracking = bool(tracking)
        self.tracker_config = tracker_config or TrackerConfig()
        self.tracker = MultiCameraTracker(self.cameras, self.tracker_config)

    def detector_threshold(self) -> float:
        """Score threshold the detector itself must run at for these settings."""
        return detector_conf(self.conf_threshold, self.tracking, self.tracker_config)

    def configure(self, conf_threshold: float | None = None, tracking: bool | None = None,
                  tracker_config: TrackerConfig | None = None) -> None:
        """Change thresholds / tracking live (tracks are reset when tracking is switched off)."""
        if conf_threshold is not None:
            self.conf_threshold = float(conf_threshold)
        if tracker_config is not None:
            self.tracker_config = tracker_config
            self.tracker.set_config(tracker_config)
        if tracking is not None:
            if self.tracking and not tracking:
                self.tracker.reset()
            self.tracking = bool(tracking)

    def reset(self) -> None:
        """Forget all tracks (time jump, new sequence)."""
        self.tracker.reset()

    def run(self, images: Sequence[tuple[str, np.ndarray]]) -> DetectionResult:
        """``[(camera, H x W x 3 uint8 RGB), ...]`` -> :class:`DetectionResult`."""
        if not images:
            return DetectionResult([], [], {"preprocess": 0.0, "inference": 0.0,
                                            "tracking": 0.0})
        raw, stage = self.detector.detect_timed([im for _, im in images])
        t0 = time.perf_counter()
        out = []
        low = self.tracker_config.track_low_thresh
        for (cam, _), d in zip(images, raw, strict=True):
            tracked = self.tracker.update(cam, d.select(d.conf >= low)) if self.tracking else d
            out.append(publishable(tracked, self.conf_threshold))
        ms = {"preprocess": stage["preprocess"],
              "inference": stage["inference"] + stage["postprocess"],
              "tracking": (time.perf_counter() - t0) * 1e3}
        return DetectionResult(list(raw), out, ms)

    def active_tracks(self, cameras: Sequence[str]) -> int:
        return sum(self.tracker.active_tracks(c) for c in cameras)
