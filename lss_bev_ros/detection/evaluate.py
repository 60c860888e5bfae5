"""Detection (precision/recall, AP@0.5) and tracking (MOTA, IDF1, ID switches) evaluation.

Detection: class-aware greedy matching by score at IoU >= ``iou_threshold`` (one GT per
prediction), AP with all-point interpolation (VOC 2010+/COCO style, at one IoU), mAP = mean
over classes that have GT. Tracking: ``motmetrics`` accumulators, one per camera sequence,
IoU distance (``1 - IoU``, pairs below ``iou_threshold`` not matchable).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from lss_bev_ros.detection.types import TRACK_ID_NONE, Detections


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of A x 4 and B x 4 xyxy boxes -> A x B."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def match_greedy(
    pred_xyxy: np.ndarray, pred_conf: np.ndarray, pred_cls: np.ndarray,
    gt_xyxy: np.ndarray, gt_cls: np.ndarray, iou_threshold: float = 0.5,
) -> np.ndarray:
    """Index of the GT each prediction matched (-1: false positive), by descending score."""
    matched = np.full(len(pred_xyxy), -1, dtype=np.int64)
    if len(pred_xyxy) == 0 or len(gt_xyxy) == 0:
        return matched
    iou = box_iou(pred_xyxy, gt_xyxy)
    iou[np.asarray(pred_cls)[:, None] != np.asarray(gt_cls)[None, :]] = 0.0
    taken = np.zeros(len(gt_xyxy), dtype=bool)
    for i in np.argsort(-np.asarray(pred_conf), kind="stable"):
        cand = np.where(~taken, iou[i], 0.0)
        j = int(np.argmax(cand))
        if cand[j] >= iou_threshold:
            matched[i], taken[j] = j, True
    return matched


def average_precision(scores: np.ndarray, tp: np.ndarray, n_gt: int) -> float:
    """All-point interpolated AP of one class (NaN without GT)."""
    if n_gt == 0:
        return float("nan")
    if len(scores) == 0:
        return 0.0
    order = np.argsort(-scores, kind="stable")
    tp = tp[order].astype(np.float64)
    ctp, cfp = np.cumsum(tp), np.cumsum(1 - tp)
    recall = ctp / n_gt
    precision = ctp / np.maximum(ctp + cfp, 1e-12)
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[1.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    idx = np.nonzero(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[idx + 1] - mrec[idx]) * mpre[idx + 1]))


@dataclass
class DetectionEval:
    """Accumulates predictions vs GT over images; ``summary()`` gives P, R at
    ``conf_threshold`` and AP@``iou_threshold`` per class / mean."""

    n_classes: int
    iou_threshold: float = 0.5
    conf_threshold: float = 0.25
    _scores: dict = field(default_factory=lambda: defaultdict(list))
    _tp: dict = field(default_factory=lambda: defaultdict(list))
    _n_gt: np.ndarray | None = None
    images: int = 0
    top_k: int = 100
    _agnostic_hits: int = 0

    def add(self, pred: Detections, gt_xyxy: np.ndarray, gt_cls: np.ndarray) -> None:
        """One image: predictions (any confidence) and its GT boxes."""
        if self._n_gt is None:
            self._n_gt = np.zeros(self.n_classes, dtype=np.int64)
        gt_cls = np.asarray(gt_cls, dtype=np.int64)
        for c in gt_cls:
            self._n_gt[c] += 1
        m = match_greedy(pred.xyxy, pred.conf, pred.cls, gt_xyxy, gt_cls, self.iou_threshold)
        # class-agnostic recall of the top_k boxes (COCO-style AR@k at one IoU): sensitive to
        # box quality early in training, before class scores are calibrated
        top = np.argsort(-pred.conf, kind="stable")[: self.top_k]
        agn = match_greedy(pred.xyxy[top], pred.conf[top], np.zeros(len(top)), gt_xyxy,
                           np.zeros(len(gt_cls)), self.iou_threshold)
        self._agnostic_hits += int((agn >= 0).sum())
        for c, s, ok in zip(pred.cls, pred.conf, m >= 0, strict=True):
            self._scores[int(c)].append(float(s))
            self._tp[int(c)].append(bool(ok))
        self.images += 1

    def summary(self) -> dict[str, float]:
        """``precision``, ``recall`` (at conf_threshold, all classes), ``map50``, ``ap50/<c>``,
        ``ar100`` (class-agnostic recall of the 100 best boxes per image)."""
        n_gt = self._n_gt if self._n_gt is not None else np.zeros(self.n_classes, np.int64)
        out: dict[str, float] = {}
        aps = []
        tp_all = fp_all = 0
        for c in range(self.n_classes):
            s = np.asarray(self._scores.get(c, []), dtype=np.float64)
            t = np.asarray(self._tp.get(c, []), dtype=bool)
            ap = average_precision(s, t, int(n_gt[c]))
            out[f"ap50/{c}"] = ap
            if not np.isnan(ap):
                aps.append(ap)
            keep = s >= self.conf_threshold
            tp_all += int(t[keep].sum())
            fp_all += int((~t[keep]).sum())
        total_gt = int(n_gt.sum())
        out["map50"] = float(np.mean(aps)) if aps else float("nan")
        out["precision"] = tp_all / (tp_all + fp_all) if tp_all + fp_all else float("nan")
        out["recall"] = tp_all / total_gt if total_gt else float("nan")
        out[f"ar{self.top_k}"] = self._agnostic_hits / total_gt if total_gt else float("nan")
        out["gt_boxes"] = float(total_gt)
        out["images"] = float(self.images)
        return out


class TrackingEval:
    """CLEAR-MOT / ID metrics with ``motmetrics``, one accumulator per sequence."""

    def __init__(self, iou_threshold: float = 0.5) -> None:
        import motmetrics as mm

        self._mm = mm
        self.iou_threshold = iou_threshold
        self._acc: dict[str, object] = {}
        self._gt_index: dict[object, int] = {}  # GT ids (e.g. instance tokens) -> ints

    def update(
        self, sequence: str, gt_ids: Sequence, gt_xyxy: np.ndarray, hyp: Detections
    ) -> None:
        """One frame of ``sequence``: GT ids/boxes and tracked detections (untracked ignored)."""
        acc = self._acc.get(sequence)
        if acc is None:
            acc = self._acc[sequence] = self._mm.MOTAccumulator(auto_id=True)
        tracked = hyp.track_id != TRACK_ID_NONE
        hyp_xyxy = hyp.xyxy[tracked]
        hyp_ids = [int(t) for t in hyp.track_id[tracked]]
        dist = 1.0 - box_iou(gt_xyxy, hyp_xyxy)
        dist[dist > 1.0 - self.iou_threshold] = np.nan
        gt_int = [self._gt_index.setdefault(g, len(self._gt_index)) for g in gt_ids]
        acc.update(gt_int, hyp_ids, dist)

    def id_persistence(self, min_frames: int = 5) -> tuple[float, int]:
        """(fraction, count) of GT objects matched in >= ``min_frames`` frames whose matches all
        carry ONE track id (no switch, no re-start under a new id)."""
        kept = total = 0
        for acc in self._acc.values():
            ev = acc.mot_events
            m = ev[ev["Type"].isin(["MATCH", "SWITCH"])]
            for _, grp in m.groupby("OId"):
                if len(grp) < min_frames:
                    continue
                total += 1
                kept += int(grp["HId"].nunique() == 1)
        return (kept / total if total else float("nan")), total

    def summary(self) -> dict[str, float]:
        """``mota``, ``idf1``, ``id_switches``, ``num_frames``, ``gt_objects``, ... overall."""
        mm = self._mm
        if not self._acc:
            return {}
        mh = mm.metrics.create()
        metrics = ["mota", "motp", "idf1", "num_switches", "num_frames", "num_unique_objects",
                   "mostly_tracked", "num_fragmentations", "precision", "recall"]
        names = list(self._acc)
        df = mh.compute_many([self._acc[n] for n in names], metrics=metrics, names=names,
                             generate_overall=True)
        row = df.loc["OVERALL"]
        return {
            "mota": float(row["mota"]),
            "idf1": float(row["idf1"]),
            "id_switches": float(row["num_switches"]),
            "fragmentations": float(row["num_fragmentations"]),
            "num_frames": float(row["num_frames"]),
            "gt_objects": float(row["num_unique_objects"]),
            "mostly_tracked": float(row["mostly_tracked"]),
            "precision": float(row["precision"]),
            "recall": float(row["recall"]),
            "id_persistence": self.id_persistence()[0],
        }


def drop_ignored(pred: Detections, gt_xyxy: np.ndarray, ignore_xyxy: np.ndarray,
                 iou_threshold: float = 0.5) -> Detections:
    """Remove predictions that only match ignored GT (e.g. boxes too small to evaluate)."""
    if len(pred) == 0 or len(ignore_xyxy) == 0:
        return pred
    hits_ignored = box_iou(pred.xyxy, ignore_xyxy).max(axis=1) >= iou_threshold
    if len(gt_xyxy):
        hits_ignored &= box_iou(pred.xyxy, gt_xyxy).max(axis=1) < iou_threshold
    return pred.select(~hits_ignored)


@dataclass
class SceneEvalResult:
    """Output of :func:`evaluate_on_scenes`."""

    detection: dict[str, float]
    tracking: dict[str, float]
    sets: int
    seconds: float


def evaluate_sets(
    detector,
    sequences: Iterable[tuple[str, Iterable[list[tuple[str, np.ndarray, object]]]]],
    conf_threshold: float = 0.25,
    min_height_px: float = 0.0,
    tracker_config=None,
    iou_threshold: float = 0.5,
) -> SceneEvalResult:
    """Detection + tracking quality of ``detector`` (a :class:`BatchedDetector`).

    ``sequences``: (name, sets) pairs; each set is a list of (camera, H x W x 3 RGB, GTFrame)
    that goes through ONE batched call. A fresh ByteTrack per sequence runs per camera exactly as
    detector_node does (fed down to its low threshold, reporting
    :func:`~lss_bev_ros.detection.tracking.publishable`). The detector's own ``conf`` should be
    low (e.g. 0.01) so AP sees the whole score range; P/R use ``conf_threshold``. GT boxes lower
    than ``min_height_px`` are ignored: neither missed nor matched.
    """
    import time

    from lss_bev_ros.detection.pipeline import DetectionPipeline
    from lss_bev_ros.detection.tracking import TrackerConfig

    t0 = time.perf_counter()
    det_eval = DetectionEval(len(detector.names), iou_threshold, conf_threshold)
    trk_eval = TrackingEval(iou_threshold)
    cfg = tracker_config or TrackerConfig()
    n_sets = 0
    for name, sets in sequences:
        pipe = None
        for cam_set in sets:
            if pipe is None:  # a fresh tracker per sequence, as detector_node after a restart
                pipe = DetectionPipeline(detector, [c for c, _, _ in cam_set], conf_threshold,
                                         tracking=True, tracker_config=cfg)
            res = pipe.run([(c, im) for c, im, _ in cam_set])
            for (cam, _, g), d, tracked in zip(cam_set, res.raw, res.published, strict=True):
                h = g.xyxy[:, 3] - g.xyxy[:, 1]
                valid = h >= min_height_px
                gxy, gcls = g.xyxy[valid], g.cls[valid]
                gids = [i for i, v in zip(g.instance, valid, strict=True) if v]
                ignored = g.xyxy[~valid]
                det_eval.add(drop_ignored(d, gxy, ignored, iou_threshold), gxy, gcls)
                hyp = drop_ignored(tracked, gxy, ignored, iou_threshold)
                trk_eval.update(f"{name}/{cam}", gids, gxy, hyp)
            n_sets += 1
    return SceneEvalResult(det_eval.summary(), trk_eval.summary(), n_sets,
                           time.perf_counter() - t0)


def nuscenes_sequences(nusc, scene_names: Sequence[str], cameras: Sequence[str],
                       gt_config=None) -> Iterator[tuple[str, Iterator[list]]]:
    """(scene name, key-frame sets) of a nuScenes root, for :func:`evaluate_sets`."""
    import cv2

    from lss_bev_ros.detection.gt import camera_gt, scenes_by_name

    scenes = scenes_by_name(nusc)

    def sets(tok: str) -> Iterator[list]:
        while tok:
            sample = nusc.get("sample", tok)
            out = []
            for c in cameras:
                g = camera_gt(nusc, sample["data"][c], gt_config)
                out.append((c, cv2.cvtColor(cv2.imread(str(g.image_path)), cv2.COLOR_BGR2RGB),
                            g))
            yield out
            tok = sample["next"]

    for name in scene_names:
        yield name, sets(nusc.get("scene", scenes[name])["first_sample_token"])


def rendered_sequences(seed: int, scene_indices: Sequence[int], cameras: Sequence[str],
                       rate_hz: float = 10.0, duration_s: float = 4.5, gt_config=None
                       ) -> Iterator[tuple[str, Iterator[list]]]:
    """(name, sets) of scenes rendered at camera rate (see :mod:`.sequences`)."""
    from lss_bev_ros.detection.sequences import render_sequence

    for i in scene_indices:
        frames = render_sequence(seed, i, cameras, rate_hz, duration_s, gt_config)
        yield f"seed{seed}-scene{i}", ([(f.camera, f.rgb, f.gt) for f in fs] for fs in frames)


def evaluate_on_scenes(detector, nusc, scene_names: Sequence[str], cameras: Sequence[str],
                       conf_threshold: float = 0.25, min_height_px: float = 0.0,
                       tracker_config=None, gt_config=None, iou_threshold: float = 0.5
                       ) -> SceneEvalResult:
    """:func:`evaluate_sets` on the key frames of nuScenes scenes."""
    return evaluate_sets(detector, nuscenes_sequences(nusc, scene_names, cameras, gt_config),
                         conf_threshold, min_height_px, tracker_config, iou_threshold)
