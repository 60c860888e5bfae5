"""Objects for ``lss-bev-bag eval --objects``: the same cores as the live graph, fed offline.

Per BEV frame of :class:`rosbag_tools.evaluate.ReplayEvaluator` (one camera set): the set's
images decoded at full size (as detector_node does) go through
:class:`~lss_bev_ros.detection.pipeline.DetectionPipeline` (batched YOLO + per-camera ByteTrack,
detector_node's core), then with the grid as eval_node / objects_node read it and the ``/odom``
pose through :class:`~lss_bev_ros.objects.pipeline.ObjectPipeline` (objects_node's core). The
objects are written in the official nuScenes detection and tracking submission formats and
scored with the devkit's own ``DetectionEval`` / ``TrackingEval`` against the dataroot's ground
truth (bags carry no sample tokens: stamps are matched to key frames of ``--dataroot``).
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lss_bev_ros.calibration import RigCalibration
from lss_bev_ros.conversions import ConversionError, GridSpec, compressed_to_rgb, image_to_rgb
from lss_bev_ros.detection.detector import BatchedDetector, DetectorConfig
from lss_bev_ros.detection.gt import CLASS_NAMES
from lss_bev_ros.detection.pipeline import DetectionPipeline
from lss_bev_ros.diagnostics import CountingDiagnostics
from lss_bev_ros.objects import ObjectPipeline, ObjectsConfig, ObjectsFrame, Pose2D

DEFAULT_DETECTOR = Path(__file__).resolve().parents[1] / "models" / "yolo_synth" / \
    "yolo11n_synth.onnx"


@dataclass
class ObjectsRun:
    """Objects of one bag, per frame stamp (s)."""

    frames: list[tuple[float, ObjectsFrame]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)


class OfflineObjects:
    """Detector + objects cores for one offline run (see the module docstring)."""

    def __init__(self, rig: RigCalibration, grid: GridSpec, diag: CountingDiagnostics,
                 detector_weights: Path | None = None, imgsz: int = 416,
                 conf_threshold: float = 0.25, mode: str = "fused",
                 time_jump_s: float = 5.0) -> None:
        self.diag = diag
        det = BatchedDetector(DetectorConfig(str(detector_weights or DEFAULT_DETECTOR),
                                             imgsz=imgsz))
        self.detection = DetectionPipeline(det, rig.names, conf_threshold)
        self.detection.detector.update(conf=self.detection.detector_threshold())
        self.objects = ObjectPipeline(rig, grid, CLASS_NAMES, ObjectsConfig(mode=mode,
                                                                        time_jump_s=time_jump_s))
        self.run = ObjectsRun()
        self._last_stamp = -np.inf

    def set_rig(self, rig: RigCalibration) -> None:
        self.objects.set_rig(rig)

    def add(self, stamp: float, messages: Mapping[str, Any], probability: np.ndarray,
            known: np.ndarray, pose: Pose2D | None) -> ObjectsFrame:
        """One camera set (image messages by camera) + its grid + pose -> objects."""
        if stamp < self._last_stamp:  # looped bag: the trackers' timeline restarts
            self.detection.reset()
        self._last_stamp = stamp
        images = []
        for cam, msg in messages.items():
            try:
                rgb = compressed_to_rgb(msg) if hasattr(msg, "format") else image_to_rgb(msg)
            except ConversionError as exc:
                self.diag.error("objects_bad_image", f"{cam}: {exc}")
                continue
            images.append((cam, rgb))
        res = self.detection.run(images)
        dets = {cam: d for (cam, _), d in zip(images, res.published, strict=True)}
        frame = self.objects.step(stamp, dets, probability, known, pose)
        for key, n in frame.issues.items():
            self.diag.count(f"objects_{key}", n)
        self.run.frames.append((stamp, frame))
        return frame


@contextlib.contextmanager
def splits_lock(dataroot: Path, version: str) -> Iterator[None]:
    """Exclusive lock of ``<dataroot>/<version>/splits.json`` from writing a custom split until
    the devkit has read it: parallel evaluations (``lss-bev-bag eval-many`` workers, also on
    other machines sharing the dataroot where the filesystem supports ``flock``) take turns."""
    path = Path(dataroot) / version / ".splits.json.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def score_objects(run: ObjectsRun, dataroot: Path, version: str, out_dir: Path) -> None:
    """Write the submission files for the run's frames and score them with the devkit."""
    from nuscenes.nuscenes import NuScenes

    from lss_bev_ros.objects.nuscenes_eval import (
        SampleIndex,
        SubmissionWriter,
        score_submission,
        write_custom_splits,
    )

    nusc = NuScenes(version=version, dataroot=str(dataroot), verbose=False)
    index = SampleIndex.from_nuscenes(nusc)
    by_token: dict[str, ObjectsFrame] = {}
    for stamp, frame in run.frames:
        tok = index.token_at(stamp)
        if tok is not None:
            by_token[tok] = frame  # a looped bag: the last pass counts
    if not by_token:
        raise ValueError(f"no frame stamp matches a key frame of {dataroot} ({version})")
    scenes = sorted({index.scenes[t] for t in by_token})
    writer = SubmissionWriter()
    for tok in index.tokens:  # every sample of the evaluated scenes (empty when no output)
        if index.scenes[tok] in scenes:
            writer.add(tok, by_token.get(tok), index.poses[tok])
    split = "lss_bev_bag_eval"
    det, trk = writer.write(out_dir)
    with splits_lock(dataroot, version):
        write_custom_splits(dataroot, version, {split: scenes})
        summary = score_submission(nusc, det, trk, out_dir / "devkit", eval_set=split)
    run.summary = {**summary.as_row(), "scenes": scenes, "key_frames": len(by_token)}
    run.files = {"detection_submission": det, "tracking_submission": trk}
