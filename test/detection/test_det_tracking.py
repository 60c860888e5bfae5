"""MultiCameraTracker (real ultralytics BYTETracker) and the evaluation helpers."""

from __future__ import annotations

import numpy as np
import pytest

from lss_bev_ros.detection.evaluate import (
    DetectionEval,
    TrackingEval,
    average_precision,
    box_iou,
    match_greedy,
)
from lss_bev_ros.detection.tracking import MultiCameraTracker, TrackerConfig
from lss_bev_ros.detection.types import TRACK_ID_NONE, Detections

SIZE = (900, 1600)


def _dets(boxes, conf=0.9, cls=0) -> Detections:
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    return Detections(boxes, np.full(len(boxes), conf), np.full(len(boxes), cls), SIZE)


def _two_objects(t: int) -> list[list[float]]:
    """Two boxes moving right at 8 px / frame (object A) and down-left (object B)."""
    return [[100 + 8 * t, 200, 200 + 8 * t, 280], [900 - 5 * t, 400 + 3 * t, 1000 - 5 * t,
                                                   520 + 3 * t]]


def test_ids_persist_and_survive_occlusion():
    tr = MultiCameraTracker(["CAM_FRONT"], TrackerConfig(track_buffer=10))
    ids_a, ids_b = [], []
    for t in range(20):
        boxes = _two_objects(t)
        if 8 <= t < 11:  # A occluded for three frames
            boxes = boxes[1:]
        out = tr.update("CAM_FRONT", _dets(boxes))
        assert len(out) == len(boxes)
        if t == 0:
            # first frame: ByteTrack confirms tracks immediately
            assert np.all(out.track_id != TRACK_ID_NONE)
        if len(boxes) == 2:
            ids_a.append(int(out.track_id[0]))
        ids_b.append(int(out.track_id[-1]))
    assert len(set(ids_a)) == 1, f"object A changed id: {ids_a}"
    assert len(set(ids_b)) == 1, f"object B changed id: {ids_b}"
    assert ids_a[0] != ids_b[0]
    assert tr.active_tracks("CAM_FRONT") == 2


def test_lost_track_expires_after_buffer():
    tr = MultiCameraTracker(["c"], TrackerConfig(track_buffer=2))
    first = tr.update("c", _dets([[100, 100, 200, 200]])).track_id[0]
    for _ in range(6):
        tr.update("c", _dets([]))
    out = tr.update("c", _dets([[100, 100, 200, 200]]))
    # a new (unconfirmed) track: not reported until it is matched a second time
    assert out.track_id[0] == TRACK_ID_NONE
    again = tr.update("c", _dets([[101, 100, 201, 200]])).track_id[0]
    assert again not in (TRACK_ID_NONE, first)


def test_cameras_are_independent_and_low_scores_do_not_start_tracks():
    tr = MultiCameraTracker(["a", "b"])
    ida = tr.update("a", _dets([[10, 10, 60, 60]])).track_id[0]
    idb = tr.update("b", _dets([[500, 500, 560, 560]])).track_id[0]
    assert ida == idb == 1  # ids are per camera
    assert tr.update("b", _dets([[500, 500, 560, 560]])).track_id[0] == idb
    weak = MultiCameraTracker(["a"])
    out = weak.update("a", _dets([[10, 10, 60, 60]], conf=0.05))
    assert out.track_id[0] == TRACK_ID_NONE
    with pytest.raises(KeyError):
        tr.update("nope", _dets([]))


def test_tracker_config_from_ultralytics_yaml():
    cfg = TrackerConfig.from_yaml(track_buffer=7)
    assert cfg.track_buffer == 7
    assert 0 < cfg.match_thresh <= 1
    tr = MultiCameraTracker(["a"], cfg)
    tr.set_config(TrackerConfig(track_buffer=3))
    assert tr.config.track_buffer == 3


def test_iou_matching_and_ap():
    a = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float)
    assert box_iou(a, a).diagonal() == pytest.approx([1, 1])
    assert box_iou(a, a + 5)[0, 0] == pytest.approx(25 / 175)
    m = match_greedy(a, np.array([0.9, 0.8]), np.array([0, 1]), a, np.array([0, 0]))
    assert list(m) == [0, -1]  # class mismatch is a false positive
    assert average_precision(np.array([0.9, 0.8]), np.array([True, True]), 2) == 1.0
    assert average_precision(np.array([0.9, 0.8]), np.array([False, True]), 2) == 0.25
    assert np.isnan(average_precision(np.array([]), np.array([], bool), 0))


def test_detection_and_tracking_eval():
    ev = DetectionEval(n_classes=2)
    gt = np.array([[0, 0, 10, 10], [20, 20, 40, 40]], float)
    ev.add(_dets(gt, cls=0), gt, np.array([0, 0]))
    ev.add(_dets([[100, 100, 110, 110]], cls=0), gt, np.array([0, 0]))
    s = ev.summary()
    assert s["recall"] == pytest.approx(0.5)
    assert s["precision"] == pytest.approx(2 / 3)
    assert 0 < s["map50"] < 1
    assert s["ar100"] == pytest.approx(0.5)

    te = TrackingEval()
    for t in range(5):
        boxes = np.array(_two_objects(t), float)
        hyp = _dets(boxes).with_track_ids(np.array([1, 2]) if t < 3 else np.array([1, 3]))
        te.update("seq", ["A", "B"], boxes, hyp)
    r = te.summary()
    assert r["id_switches"] == 1
    assert r["mota"] == pytest.approx(1 - 1 / 10)
    frac, n = te.id_persistence(min_frames=5)
    assert n == 2 and frac == pytest.approx(0.5)  # A kept id 1, B went 2 -> 3
