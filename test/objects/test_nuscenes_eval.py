"""Submission writer + devkit scoring on a tiny generated dataset (real DetectionEval /
TrackingEval, real NuScenes loader)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from lss_bev_ros.objects.nuscenes_eval import (
    VAL_SPLIT,
    EgoPose,
    SampleIndex,
    SubmissionWriter,
    ground_truth_frames,
    score_submission,
    write_custom_splits,
)
from lss_bev_ros.objects.types import Object3D, ObjectsFrame


def _val_index(nusc) -> SampleIndex:
    return SampleIndex.from_nuscenes(nusc, ["synth-0001"])


def _scored_gt(nusc) -> dict[str, list[Object3D]]:
    """GT objects the devkit keeps (with LiDAR points): perfect predictions."""
    idx = _val_index(nusc)
    gt = ground_truth_frames(nusc, idx.tokens)
    keep = {}
    for tok, objs in gt.items():
        anns = [nusc.get("sample_annotation", a) for a in nusc.get("sample", tok)["anns"]]
        with_pts = {nusc.getind("instance", a["instance_token"]) for a in anns
                    if a["num_lidar_pts"] > 0}
        keep[tok] = [o for o in objs if o.track_id in with_pts]
    return keep


def _score(nusc, frames: dict[str, list[Object3D]], out: Path):
    idx = _val_index(nusc)
    w = SubmissionWriter(detection_source="tracked")
    for tok in idx.tokens:
        w.add(tok, ObjectsFrame(0.0, [], frames[tok], "map", {}, {}), idx.poses[tok])
    det, trk = w.write(out)
    return score_submission(nusc, det, trk, out / "eval", eval_set=VAL_SPLIT)


def test_perfect_predictions_score_map_and_amota_near_one(eval_nusc, tmp_path) -> None:
    s = _score(eval_nusc, _scored_gt(eval_nusc), tmp_path)
    assert s.mAP > 0.95 and s.NDS > 0.95
    assert s.AMOTA > 0.95 and s.IDS == 0


def test_predictions_shifted_by_1_5_m_score_lower_map(eval_nusc, tmp_path) -> None:
    frames = {t: [replace(o, x=o.x + 1.5) for o in objs]
              for t, objs in _scored_gt(eval_nusc).items()}
    s = _score(eval_nusc, frames, tmp_path)
    assert s.mAP < 0.7
    assert s.tp_errors["trans_err"] == pytest.approx(1.5, abs=0.05)


def test_track_ids_swapped_midway_count_id_switches(eval_nusc, tmp_path) -> None:
    gt = _scored_gt(eval_nusc)
    toks = list(_val_index(eval_nusc).tokens)
    frames = dict(gt)
    for tok in toks[len(toks) // 2:]:
        objs = gt[tok]
        ids = [o.track_id for o in objs]
        frames[tok] = [replace(o, track_id=ids[(i + 1) % len(ids)]) for i, o in enumerate(objs)]
    s = _score(eval_nusc, frames, tmp_path)
    assert s.IDS > 0


def test_writer_puts_base_link_objects_into_the_global_frame() -> None:
    ob = Object3D(10.0, 0.0, 0.8, 4.5, 1.9, 1.6, 0.0, True, "car", 0.9, 0.8, np.eye(2),
                  vx=2.0, vy=0.0)
    w = SubmissionWriter()
    w.add("tok", ObjectsFrame(0.0, [ob], [], "base_link", {}, {}),
          EgoPose(100.0, 50.0, np.pi / 2, 0.1))
    rec = w.detections["tok"][0]
    np.testing.assert_allclose(rec["translation"], [100.0, 60.0, 0.9], atol=1e-9)
    np.testing.assert_allclose(rec["velocity"], [0.0, 2.0], atol=1e-9)
    np.testing.assert_allclose(rec["size"], [1.9, 4.5, 1.6])
    np.testing.assert_allclose(rec["rotation"], [np.cos(np.pi / 4), 0, 0, np.sin(np.pi / 4)])
    assert rec["attribute_name"] == "vehicle.moving"


def test_sample_index_maps_a_lidar_stamp_to_its_sample_token(eval_nusc) -> None:
    idx = _val_index(eval_nusc)
    tok = idx.tokens[2]
    sd = eval_nusc.get("sample_data", eval_nusc.get("sample", tok)["data"]["LIDAR_TOP"])
    assert idx.token_at(sd["timestamp"] * 1e-6 + 0.005) == tok
    assert idx.token_at(sd["timestamp"] * 1e-6 + 0.2) is None  # key frames are 0.5 s apart


def test_custom_splits_refuse_a_predefined_split_name(tmp_path) -> None:
    with pytest.raises(ValueError, match="predefined"):
        write_custom_splits(tmp_path, "v1.0-mini", {"mini_val": ["synth-0001"]})
