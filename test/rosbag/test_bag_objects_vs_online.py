"""Live ``/objects/tracked`` recorded during a replay and ``lss-bev-bag eval --objects`` of the
same bag agree per stamp: the same track ids, positions within 5 cm.

Online: bev_node + detector_node + objects_node (one process, ``lss_bev_ros.pipeline``) fed by
``BagPlayer`` over real DDS, slowly enough for CPU inference (no set dropped). Offline: the
same cores fed from the bag (``rosbag_tools.objects_eval``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from replay_testutil import replay_and_collect, stamp_of

from lss_bev_ros.calibration import NUSCENES_CAMERAS
from rosbag_tools.bagio import (
    ODOM_TOPIC,
    camera_topics,
    rig_path_for_bag,
)

pytestmark = pytest.mark.slow
TOPICS = [t for c in NUSCENES_CAMERAS for t in camera_topics(c)] + [ODOM_TOPIC]
POSITION_TOL_M = 0.05


def _params(path: Path, bag: Path, weights: Path, thr: float) -> Path:
    rig = str(rig_path_for_bag(bag))
    path.write_text(yaml.safe_dump({
        "bev_node": {"ros__parameters": {
            "rig_file": rig, "weights": str(weights), "threshold": thr, "warmup": False,
            "qos_reliable": True, "qos_depth": 10, "publish_image": False,
            "torch_threads": 1}},
        "detector_node": {"ros__parameters": {
            "input_type": "compressed", "imgsz": 416, "qos_reliable": True, "qos_depth": 10,
            "rig_file": rig, "publish_annotated": False, "cpu_threads": 1}},
        "objects_node": {"ros__parameters": {
            "rig_file": rig, "qos_reliable": True, "input_wait_s": 30.0,
            "max_pending": 10}},
    }, sort_keys=False))
    return path


def _tracks(frame_objects) -> dict[int, np.ndarray]:
    return {int(o.id): np.array([o.kinematics.pose_with_covariance.pose.position.x,
                                 o.kinematics.pose_with_covariance.pose.position.y])
            for o in frame_objects}


def test_live_tracked_objects_equal_offline_objects_per_stamp(
        ros_context, synth_bag: Path, lss_weights, tmp_path: Path) -> None:
    from lss_bev_ros import pipeline
    from lss_bev_ros.msg import TrackedObjects
    from rosbag_tools.evaluate import EvalOptions, ReplayEvaluator

    weights, thr = lss_weights
    runner = ReplayEvaluator(synth_bag, EvalOptions(
        weights=weights, threshold=thr, progress=False, n_sample_images=0, torch_threads=1,
        objects=True, fusion=True, write_report=False, reference="gt_boxes"))
    runner.run()
    offline = {round(st, 6): f for st, f in runner.objects.run.frames}
    assert len(offline) >= 4 and any(f.tracked for f in offline.values())
    # the fused grid got the previous frame's tracks, as fusion_node takes /objects/tracked
    assert runner.fusion.stats.objects_moved > 0, runner.fusion.stats

    pipe = pipeline.start(_params(tmp_path / "p.yaml", synth_bag, weights, thr))
    msgs = replay_and_collect(ros_context, pipe, synth_bag, TOPICS, TrackedObjects,
                              "/objects/tracked", 0.1, lambda g: len(g) >= len(offline),
                              settle_s=0.0, timeout_s=120.0)
    got = {stamp_of(m): m for m in msgs}
    assert set(got) <= set(offline), sorted(set(got) - set(offline))
    assert len(got) >= len(offline) - 1, f"live published {len(got)} of {len(offline)} frames"
    worst = 0.0
    for stamp, msg in got.items():
        live = _tracks(msg.objects)
        off = {o.track_id: np.array([o.x, o.y]) for o in offline[stamp].tracked}
        assert set(live) == set(off), (stamp, sorted(live), sorted(off))
        for tid, xy in live.items():
            worst = max(worst, float(np.abs(xy - off[tid]).max()))
    print(f"objects live vs offline: {len(got)} frames, worst position difference {worst:.4f} m")
    assert worst <= POSITION_TOL_M
