"""Per-camera multi-object tracking with ultralytics' ByteTrack (``BYTETracker``).

One ``BYTETracker`` per camera, fed the per-image boxes of the batched detector pass. Track ids
are persistent per camera (they start at 1 in each camera); a lost track is kept for
``track_buffer`` *processed* frames, so an object occluded for a few frames keeps its id.
Every detection is returned; the ones ByteTrack matched to a confirmed track carry its id, the
rest ``TRACK_ID_NONE``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from lss_bev_ros.detection.detector import import_ultralytics
from lss_bev_ros.detection.types import TRACK_ID_NONE, Detections


@dataclass(frozen=True)
class TrackerConfig:
    """ByteTrack settings (names and defaults as ultralytics' ``bytetrack.yaml``).

    ``track_buffer`` counts processed frames (with inference every k-th frame: k input frames).
    """

    track_high_thresh: float = 0.25
    track_low_thresh: float = 0.1
    new_track_thresh: float = 0.25
    track_buffer: int = 30
    match_thresh: float = 0.8
    fuse_score: bool = True

    @classmethod
    def from_yaml(cls, path: str | Path | None = None, **overrides) -> TrackerConfig:
        """Read an ultralytics tracker YAML (default: its bundled ``bytetrack.yaml``)."""
        import_ultralytics()
        from ultralytics.utils import YAML
        from ultralytics.utils.checks import check_yaml

        data = YAML.load(check_yaml(str(path) if path else "bytetrack.yaml"))
        kind = data.get("tracker_type", "bytetrack")
        if kind != "bytetrack":
            raise ValueError(f"tracker_type {kind!r} not supported here (bytetrack only)")
        fields = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        fields.update(overrides)
        return cls(**fields)

    def namespace(self):
        """The ``IterableSimpleNamespace`` that ``BYTETracker(args)`` expects."""
        import_ultralytics()
        from ultralytics.utils import IterableSimpleNamespace

        return IterableSimpleNamespace(tracker_type="bytetrack", **asdict(self))


def _boxes_for_tracker(dets: Detections):
    """Detections -> numpy ``ultralytics.engine.results.Boxes`` (what ``BYTETracker`` eats)."""
    from ultralytics.engine.results import Boxes

    return Boxes(dets.as_array(), dets.image_size)


class MultiCameraTracker:
    """One ultralytics ``BYTETracker`` per camera name."""

    def __init__(self, cameras: Iterable[str], config: TrackerConfig | None = None) -> None:
        import_ultralytics()
        from ultralytics.trackers.byte_tracker import BYTETracker

        self._cls = BYTETracker
        self.config = config or TrackerConfig()
        self.cameras = tuple(cameras)
        if not self.cameras:
            raise ValueError("need at least one camera")
        self._trackers = {c: self._cls(self.config.namespace()) for c in self.cameras}

    def update(self, camera: str, dets: Detections) -> Detections:
        """Advance ``camera``'s tracker by one frame; returns ``dets`` with ``track_id`` set."""
        tracker = self._trackers.get(camera)
        if tracker is None:
            raise KeyError(f"unknown camera {camera!r} (tracking {list(self.cameras)})")
        ids = np.full(len(dets), TRACK_ID_NONE, dtype=np.int64)
        tracks = tracker.update(_boxes_for_tracker(dets), None)
        if len(tracks):
            # rows: x1, y1, x2, y2, track_id, score, cls, idx (index into dets)
            idx = tracks[:, 7].astype(np.int64)
            ids[idx] = tracks[:, 4].astype(np.int64)
        return dets.with_track_ids(ids)

    def update_all(self, per_camera: Mapping[str, Detections]) -> dict[str, Detections]:
        """:meth:`update` for every camera in ``per_camera`` (missing cameras are not advanced)."""
        return {cam: self.update(cam, d) for cam, d in per_camera.items()}

    def reset(self, camera: str | None = None) -> None:
        """Forget all tracks (of one camera, or of all); ids restart at 1."""
        for cam in [camera] if camera else self.cameras:
            self._trackers[cam] = self._cls(self.config.namespace())

    def set_config(self, config: TrackerConfig) -> None:
        """New thresholds for all trackers, keeping their tracks."""
        self.config = config
        ns = config.namespace()
        for t in self._trackers.values():
            t.args = ns
            t.max_frames_lost = config.track_buffer

    def active_tracks(self, camera: str) -> int:
        """Number of confirmed tracks currently followed (matched this frame) in ``camera``."""
        return sum(1 for t in self._trackers[camera].tracked_stracks if t.is_activated)

    def lost_tracks(self, camera: str) -> int:
        """Tracks currently lost (kept for re-identification up to ``track_buffer`` frames)."""
        return len(self._trackers[camera].lost_stracks)


def detector_conf(conf_threshold: float, tracking: bool, config: TrackerConfig) -> float:
    """Score threshold for the detector itself: with tracking, low enough for ByteTrack's
    second association (``track_low_thresh``), as ultralytics' ``model.track`` does."""
    return min(conf_threshold, config.track_low_thresh) if tracking else conf_threshold


def publishable(dets: Detections, conf_threshold: float) -> Detections:
    """Detections to report: score >= ``conf_threshold``, plus lower-score ones that continue a
    confirmed track (ByteTrack's second association)."""
    return dets.select((dets.conf >= conf_threshold) | (dets.track_id != TRACK_ID_NONE))
