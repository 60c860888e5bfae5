"""nuScenes detection / tracking submissions of our objects, scored by the devkit's own code.

Writing: :class:`SubmissionWriter` collects one :class:`~lss_bev_ros.objects.types.ObjectsFrame`
per key frame (``sample_token``) with the ego pose of that frame and writes the official result
files (``results`` per sample token; ``translation`` / ``rotation`` / ``velocity`` in the global
frame = our ``map`` frame; ``size`` = (w, l, h)).

Scoring: :func:`score_submission` runs ``nuscenes.eval.detection.evaluate.DetectionEval`` and
``nuscenes.eval.tracking.evaluate.TrackingEval`` unchanged. How our synthetic data fits the
devkit's rules (decided here, no monkeypatching):

* **Splits.** ``create_splits_scenes`` is a fixed table of real scene names, but devkit >= 1.2
  accepts any other ``eval_set`` as a *custom split* read from ``<dataroot>/<version>/splits.json``
  (``nuscenes.utils.splits.get_scenes_of_custom_split``). :func:`write_custom_splits` writes that
  file (``lss-bev-synth --eval-splits`` does it at generation time); we evaluate with
  ``eval_set="synth_val"`` = the held-out scenes of ``split_scene_names``.
* **Classes.** The tracking config is built from the official ``tracking_nips_2019`` dict with
  ``tracking_names`` / ``class_range`` restricted to our classes (the config supports that). The
  detection config is the official ``detection_cvpr_2019`` (all ten ``class_range`` entries are
  required by ``DetectionConfig``, ranges unchanged); its ``class_names`` - the classes the
  evaluation iterates and averages over - is restricted to our classes, so mAP / NDS are over
  car, truck, bus, pedestrian instead of counting six absent classes as AP 0.
* Everything else (distance thresholds, class ranges 50 m / 40 m, GT without LiDAR points
  dropped, min recall / precision, max 500 boxes per sample) is the official setting.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lss_bev_ros.objects.classes import NUSCENES_TRACKING_NAMES, attribute_for
from lss_bev_ros.objects.types import Object3D, ObjectsFrame, Pose2D

DETECTION_CONFIG = "detection_cvpr_2019"
TRACKING_CONFIG = "tracking_nips_2019"
EVAL_CLASSES: tuple[str, ...] = ("car", "truck", "bus", "pedestrian")
"""nuScenes detection names our detector knows (lss_bev_ros.detection.gt.CLASS_NAMES)."""
SPLITS_FILE = "splits.json"
VAL_SPLIT = "synth_val"
TRAIN_SPLIT = "synth_train"
MAX_BOXES_PER_SAMPLE = 500


def write_custom_splits(dataroot: str | Path, version: str,
                        splits: Mapping[str, Sequence[str]]) -> Path:
    """Add ``splits`` (split name -> scene names) to ``<dataroot>/<version>/splits.json``, the
    devkit's custom-split file; existing other splits are kept. Predefined split names (train,
    val, mini_val, ...) are refused: the devkit would ignore them."""
    from nuscenes.utils.splits import is_predefined_split

    for name in splits:
        if is_predefined_split(split_name=name):
            raise ValueError(f"{name!r} is a predefined nuScenes split; pick another name")
    path = Path(dataroot) / version / SPLITS_FILE
    data: dict[str, list[str]] = {}
    if path.is_file():
        data = json.loads(path.read_text())
    data.update({k: list(v) for k, v in splits.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))
    return path


def detection_config(classes: Sequence[str] = EVAL_CLASSES) -> Any:
    """Official ``detection_cvpr_2019`` DetectionConfig evaluating only ``classes``."""
    from nuscenes.eval.common.config import config_factory

    cfg = config_factory(DETECTION_CONFIG)
    unknown = set(classes) - set(cfg.class_range)
    if unknown:
        raise ValueError(f"not nuScenes detection names: {sorted(unknown)}")
    cfg.class_names = list(classes)
    return cfg


def tracking_config(classes: Sequence[str] = EVAL_CLASSES) -> Any:
    """Official ``tracking_nips_2019`` TrackingConfig restricted to ``classes`` (those that are
    tracking names)."""
    from nuscenes.eval.common.config import config_factory
    from nuscenes.eval.tracking.data_classes import TrackingConfig

    base = config_factory(TRACKING_CONFIG).serialize()
    names = [c for c in base["tracking_names"] if c in set(classes)]
    if not names:
        raise ValueError(f"none of {list(classes)} is a nuScenes tracking name")
    base["tracking_names"] = names
    base["class_range"] = {c: base["class_range"][c] for c in names}
    base["pretty_tracking_names"] = {c: base["pretty_tracking_names"][c] for c in names}
    base["tracking_colors"] = {c: base["tracking_colors"][c] for c in names}
    return TrackingConfig.deserialize(base)


@dataclass(frozen=True)
class EgoPose:
    """Global (map) pose of base_link at a key frame: 3D translation m, yaw rad."""

    x: float
    y: float
    yaw: float
    z: float = 0.0

    @classmethod
    def from_pose2d(cls, pose: Pose2D, z: float = 0.0) -> EgoPose:
        return cls(pose.x, pose.y, pose.yaw, z)

    @classmethod
    def from_nuscenes(cls, record: Mapping[str, Any]) -> EgoPose:
        """From an ``ego_pose`` record (translation, rotation w x y z)."""
        from pyquaternion import Quaternion

        t = record["translation"]
        yaw = float(Quaternion(record["rotation"]).yaw_pitch_roll[0])
        return cls(float(t[0]), float(t[1]), yaw, float(t[2]))


def _yaw_quat(yaw: float) -> list[float]:
    """Rotation about +z as a (w, x, y, z) quaternion."""
    return [float(np.cos(yaw / 2)), 0.0, 0.0, float(np.sin(yaw / 2))]


def _box_record(sample_token: str, ob: Object3D, xyz: np.ndarray, yaw: float,
                vel: np.ndarray) -> dict[str, Any]:
    speed = float(np.hypot(vel[0], vel[1]))
    return {
        "sample_token": sample_token,
        "translation": [float(v) for v in xyz],
        "size": [float(max(ob.width, 1e-3)), float(max(ob.length, 1e-3)),
                 float(max(ob.height, 1e-3))],
        "rotation": _yaw_quat(yaw),
        "velocity": [float(vel[0]), float(vel[1])],
    } | {"_speed": speed}


@dataclass
class SubmissionWriter:
    """Collects objects per sample token and writes the two official submission files.

    ``detection_source``: ``"detected"`` (per-frame objects, velocity from their track) or
    ``"tracked"`` (the confirmed tracks, as many trackers submit). Objects whose label is not in
    ``classes`` are skipped. Every sample of the evaluated split must be added (empty is fine):
    the devkit refuses a submission that misses samples.
    """

    classes: Sequence[str] = EVAL_CLASSES
    detection_source: str = "detected"
    meta: dict[str, bool] = field(default_factory=lambda: {
        "use_camera": True, "use_lidar": False, "use_radar": False, "use_map": False,
        "use_external": False})
    detections: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    tracks: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.detection_source not in ("detected", "tracked"):
            raise ValueError("detection_source must be 'detected' or 'tracked'")

    def _to_global(self, ob: Object3D, frame_id: str, ego: EgoPose
                   ) -> tuple[np.ndarray, float, np.ndarray]:
        if frame_id == "map":
            return (np.array([ob.x, ob.y, ob.z + ego.z]), ob.yaw, np.array([ob.vx, ob.vy]))
        c, s = np.cos(ego.yaw), np.sin(ego.yaw)
        rot = np.array([[c, -s], [s, c]])
        xy = rot @ np.array([ob.x, ob.y]) + [ego.x, ego.y]
        v = rot @ np.array([ob.vx, ob.vy])
        return np.array([xy[0], xy[1], ob.z + ego.z]), ob.yaw + ego.yaw, v

    def add(self, sample_token: str, frame: ObjectsFrame | None, ego: EgoPose | Pose2D) -> None:
        """Objects of the key frame ``sample_token`` (None: no output, an empty entry)."""
        if isinstance(ego, Pose2D):
            ego = EgoPose.from_pose2d(ego)
        dets: list[dict[str, Any]] = []
        trks: list[dict[str, Any]] = []
        if frame is not None:
            src = (frame.detected, "base_link") if self.detection_source == "detected" else (
                frame.tracked, frame.tracked_frame)
            for ob in src[0]:
                if ob.label not in self.classes:
                    continue
                xyz, yaw, vel = self._to_global(ob, src[1], ego)
                rec = _box_record(sample_token, ob, xyz, yaw, vel)
                speed = rec.pop("_speed")
                rec.update(detection_name=ob.label,
                           detection_score=float(np.clip(ob.existence_probability, 0.0, 1.0)),
                           attribute_name=attribute_for(ob.label, speed))
                dets.append(rec)
            for ob in frame.tracked:
                if ob.label not in self.classes or ob.label not in NUSCENES_TRACKING_NAMES:
                    continue
                xyz, yaw, vel = self._to_global(ob, frame.tracked_frame, ego)
                rec = _box_record(sample_token, ob, xyz, yaw, vel)
                rec.pop("_speed")
                rec.update(tracking_id=str(ob.track_id), tracking_name=ob.label,
                           tracking_score=float(np.clip(ob.existence_probability, 0.0, 1.0)))
                trks.append(rec)
        dets.sort(key=lambda r: -r["detection_score"])
        trks.sort(key=lambda r: -r["tracking_score"])
        self.detections[sample_token] = dets[:MAX_BOXES_PER_SAMPLE]
        self.tracks[sample_token] = trks[:MAX_BOXES_PER_SAMPLE]

    def write(self, out_dir: str | Path) -> tuple[Path, Path]:
        """(detection json, tracking json) written under ``out_dir``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        det = out / "results_detection.json"
        trk = out / "results_tracking.json"
        det.write_text(json.dumps({"meta": self.meta, "results": self.detections}))
        trk.write_text(json.dumps({"meta": self.meta, "results": self.tracks}))
        return det, trk


@dataclass(frozen=True)
class SampleIndex:
    """Key-frame lookup of a dataroot: stamp (s) -> sample token, token -> ego pose, scene.

    Bags from ``lss-bev-bag convert`` stamp every message with its sensor timestamp and carry no
    sample tokens; a frame (camera-set stamp) is matched to the key frame whose LIDAR_TOP
    timestamp (= the sample timestamp) is nearest, within ``tolerance_s`` (synthetic data: all
    sensors of a key frame share one timestamp; real nuScenes: cameras fire up to ~50 ms around
    the sweep; key frames are 500 ms apart).
    """

    stamps: np.ndarray  # S, seconds, sorted
    tokens: tuple[str, ...]  # S sample tokens, same order
    poses: dict[str, EgoPose]  # sample token -> ego pose of its LIDAR_TOP
    scenes: dict[str, str]  # sample token -> scene name

    @classmethod
    def from_nuscenes(cls, nusc: Any, scene_names: Iterable[str] | None = None) -> SampleIndex:
        wanted = set(scene_names) if scene_names is not None else None
        rows = []
        for scene in nusc.scene:
            if wanted is not None and scene["name"] not in wanted:
                continue
            tok = scene["first_sample_token"]
            while tok:
                s = nusc.get("sample", tok)
                sd = nusc.get("sample_data", s["data"]["LIDAR_TOP"])
                pose = EgoPose.from_nuscenes(nusc.get("ego_pose", sd["ego_pose_token"]))
                rows.append((sd["timestamp"] * 1e-6, tok, pose, scene["name"]))
                tok = s["next"]
        rows.sort(key=lambda r: r[0])
        return cls(np.array([r[0] for r in rows]), tuple(r[1] for r in rows),
                   {r[1]: r[2] for r in rows}, {r[1]: r[3] for r in rows})

    def token_at(self, stamp: float, tolerance_s: float = 0.1) -> str | None:
        """Sample token whose key frame is within ``tolerance_s`` of ``stamp`` (s), else None."""
        if len(self.stamps) == 0:
            return None
        i = int(np.searchsorted(self.stamps, stamp))
        best = None
        for j in (i - 1, i):
            if 0 <= j < len(self.stamps) and abs(self.stamps[j] - stamp) <= tolerance_s and (
                    best is None or abs(self.stamps[j] - stamp) < abs(self.stamps[best] - stamp)):
                best = j
        return None if best is None else self.tokens[best]


@dataclass(frozen=True)
class EvalSummary:
    """Headline devkit numbers (NaN where the devkit gives none)."""

    mAP: float  # noqa: N815 (the devkit's metric name)
    NDS: float
    class_ap: dict[str, float]  # detection name -> AP (mean over distance thresholds)
    tp_errors: dict[str, float]  # trans_err, scale_err, orient_err, vel_err, attr_err
    AMOTA: float = float("nan")
    AMOTP: float = float("nan")
    IDS: float = float("nan")
    tracking: dict[str, float] = field(default_factory=dict)  # all 'all'-class metrics

    def as_row(self) -> dict[str, float]:
        """Flat dict of the numbers the benches print."""
        return {"mAP": self.mAP, "NDS": self.NDS, "car_AP": self.class_ap.get("car", np.nan),
                "mATE": self.tp_errors.get("trans_err", np.nan),
                "mASE": self.tp_errors.get("scale_err", np.nan),
                "mAOE": self.tp_errors.get("orient_err", np.nan),
                "mAVE": self.tp_errors.get("vel_err", np.nan),
                "AMOTA": self.AMOTA, "AMOTP": self.AMOTP, "IDS": self.IDS}


def score_submission(nusc: Any, detection_json: str | Path | None,
                     tracking_json: str | Path | None, out_dir: str | Path,
                     eval_set: str = VAL_SPLIT, classes: Sequence[str] = EVAL_CLASSES,
                     verbose: bool = False) -> EvalSummary:
    """Score the submission files with the devkit's DetectionEval and TrackingEval.

    ``nusc``: a loaded ``nuscenes.nuscenes.NuScenes`` of the dataroot; ``eval_set``: a split of
    its ``splits.json`` (see :func:`write_custom_splits`) or a predefined one. Metric files and
    the devkit's outputs go to ``out_dir/detection`` and ``out_dir/tracking``.
    """
    from nuscenes.eval.detection.evaluate import DetectionEval
    from nuscenes.eval.tracking.evaluate import TrackingEval

    out = Path(out_dir)
    sink = io.StringIO()
    mAP = NDS = float("nan")
    class_ap: dict[str, float] = {}
    tp_err: dict[str, float] = {}
    if detection_json is not None:
        with contextlib.redirect_stdout(sink) if not verbose else contextlib.nullcontext():
            ev = DetectionEval(nusc, detection_config(classes), str(detection_json), eval_set,
                               str(out / "detection"), verbose=verbose)
            metrics, _ = ev.evaluate()
        mAP, NDS = float(metrics.mean_ap), float(metrics.nd_score)
        class_ap = {k: float(v) for k, v in metrics.mean_dist_aps.items()}
        tp_err = {k: float(v) for k, v in metrics.tp_errors.items()}
        (out / "detection").mkdir(parents=True, exist_ok=True)
        (out / "detection" / "metrics_summary.json").write_text(
            json.dumps(metrics.serialize(), indent=1, default=float))
    tracking: dict[str, float] = {}
    if tracking_json is not None:
        with contextlib.redirect_stdout(sink) if not verbose else contextlib.nullcontext():
            tev = TrackingEval(tracking_config(classes), str(tracking_json), eval_set,
                               str(out / "tracking"), nusc.version, nusc.dataroot,
                               verbose=verbose)
            tmetrics, _ = tev.evaluate()
        ser = tmetrics.serialize()
        tracking = {k: float(v) for k, v in ser.items()
                    if isinstance(v, (int, float)) and k != "eval_time"}
        (out / "tracking").mkdir(parents=True, exist_ok=True)
        (out / "tracking" / "metrics_summary.json").write_text(
            json.dumps(ser, indent=1, default=float))
    return EvalSummary(mAP, NDS, class_ap, tp_err, tracking.get("amota", float("nan")),
                       tracking.get("amotp", float("nan")), tracking.get("ids", float("nan")),
                       tracking)


def ground_truth_frames(nusc: Any, sample_tokens: Iterable[str]) -> dict[str, list[Object3D]]:
    """GT annotations of our classes as :class:`Object3D` in the global frame, per sample token
    (track id = instance index); perfect 'predictions' for tests and oracle baselines."""
    from pyquaternion import Quaternion

    from lss_bev_ros.detection.gt import CLASS_NAMES, category_to_class

    out: dict[str, list[Object3D]] = {}
    for tok in sample_tokens:
        objs = []
        for at in nusc.get("sample", tok)["anns"]:
            ann = nusc.get("sample_annotation", at)
            k = category_to_class(ann["category_name"])
            if k is None:
                continue
            w, length, h = ann["size"]
            v = nusc.box_velocity(at)[:2]
            v = np.where(np.isfinite(v), v, 0.0)
            x, y, z = ann["translation"]
            objs.append(Object3D(
                float(x), float(y), float(z), float(length), float(w), float(h),
                float(Quaternion(ann["rotation"]).yaw_pitch_roll[0]), True, CLASS_NAMES[k], 1.0,
                1.0, np.eye(2) * 0.01, float(v[0]), float(v[1]), None,
                nusc.getind("instance", ann["instance_token"]), source="gt"))
        out[tok] = objs
    return out
