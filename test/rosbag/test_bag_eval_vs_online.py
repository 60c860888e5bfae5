"""Offline ``lss-bev-bag eval`` metrics equal the online eval_node's on the same bag.

Online: the real node set (bev_node + eval_node, started by ``lss_bev_ros.pipeline`` from one
parameter file, in this process) fed by ``BagPlayer`` over real DDS; the test subscribes to
``/bev/metrics``. Offline: the shared ``offline`` report (same weights, threshold, reference).
bev_node drops frames when inference is slower than the input (latest wins), so the comparison
is per grid stamp over the frames the online pipeline evaluated.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from replay_testutil import replay_and_collect

from lss_bev_ros.calibration import NUSCENES_CAMERAS
from rosbag_tools.bagio import GT_BOXES_TOPIC, LIDAR_TOPIC, camera_topics, rig_path_for_bag

pytestmark = pytest.mark.slow
EVAL_TOPICS = [t for c in NUSCENES_CAMERAS for t in camera_topics(c)] + [LIDAR_TOPIC,
                                                                         GT_BOXES_TOPIC]


def _params(path: Path, bag: Path, weights: Path, thr: float, reference: str) -> Path:
    rig = str(rig_path_for_bag(bag))
    path.write_text(yaml.safe_dump({
        "bev_node": {"ros__parameters": {
            "rig_file": rig, "weights": str(weights), "threshold": thr, "warmup": False,
            "qos_reliable": True, "qos_depth": 10, "missing_timeout_s": 60.0,
            "publish_image": False}},  # decode_reduction: auto in both, must agree
        "eval_node": {"ros__parameters": {
            "rig_file": rig, "reference": reference, "threshold": thr, "qos_reliable": True}},
    }))
    return path


def test_offline_metrics_equal_online_eval_node(ros_context, synth_bag: Path, lss_weights,
                                                offline, tmp_path: Path) -> None:
    from lss_bev_ros import pipeline
    from lss_bev_ros.msg import BevMetrics

    report, _ = offline
    weights, thr = lss_weights
    reference = report.summary["reference"]
    pipe = pipeline.start(_params(tmp_path / "p.yaml", synth_bag, weights, thr, reference))
    bev = pipe.nodes["bev_node"]
    assert bev.active and pipe.nodes["eval_node"].active
    # 5 s of wall time between frames: room for CPU inference on a loaded machine
    got = replay_and_collect(ros_context, pipe, synth_bag, EVAL_TOPICS, BevMetrics,
                             "/bev/metrics", 0.1, lambda g: len(g) >= bev.frames_processed,
                             settle_s=5.0)
    processed = bev.frames_processed

    print(f"online pipeline evaluated {len(got)} of {len(report.frames)} frames")
    assert processed >= 2, "online pipeline processed fewer than 2 frames"
    assert len(got) == processed  # every grid the node published was evaluated
    offline_by_stamp = {round(f.stamp, 6): f for f in report.frames}
    ious = []
    for m in got:
        stamp = round(m.header.stamp.sec + m.header.stamp.nanosec * 1e-9, 6)
        f = offline_by_stamp[stamp]  # KeyError = a grid stamp the offline run never produced
        assert m.reference_kind == 2 and m.threshold == pytest.approx(thr)
        assert abs(int(m.true_positive_cells) - f.tp) <= 2, (m, f)
        assert abs(int(m.false_positive_cells) - f.fp) <= 2, (m, f)
        assert abs(int(m.false_negative_cells) - f.fn) <= 2, (m, f)
        for a, b in ((m.iou, f.iou), (m.precision, f.precision), (m.recall, f.recall)):
            assert (np.isnan(a) and np.isnan(b)) or a == pytest.approx(b, abs=1e-3)
        ious.append(f.iou)
        assert m.mean_iou == pytest.approx(np.nanmean(ious), abs=1e-3)
    assert got[-1].frame_count == len(got) and got[-1].unmatched_count == 0
