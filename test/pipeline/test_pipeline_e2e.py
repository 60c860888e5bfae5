"""End to end over real DDS, started like the demo (one YAML, one process, multi-threaded
executor): frame_player_node plays synthetic nuScenes frames (6 images + camera infos + LiDAR +
GT boxes) -> bev_node -> eval_node; an independent subscriber checks the OccupancyGrid and the
BevMetrics. With the trained small checkpoint the reported IoU must clearly beat an untrained
model."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from nav_msgs.msg import OccupancyGrid
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo

from lss_bev_ros import pipeline
from lss_bev_ros.msg import BevMetrics

REPO = Path(__file__).resolve().parents[2]
CHECKPOINT = REPO / "models" / "lss_small_synth.pt"


def _params_file(tmp_path: Path, synth_root: Path, weights: str, frames: int,
                 reference: str = "lidar_in_boxes") -> Path:
    rig = str(tmp_path / "rig.yaml")
    doc = {
        "frame_player_node": {"ros__parameters": {
            "dataroot": str(synth_root), "rate_hz": 0.5, "loop": False, "max_frames": frames,
            "image_type": "compressed", "image_scale": 0.25, "rig_file_out": rig}},
        "bev_node": {"ros__parameters": {
            "rig_file": rig, "weights": weights, "input_type": "compressed",
            "missing_timeout_s": 3.0, "qos_reliable": True, "qos_depth": 10}},
        "eval_node": {"ros__parameters": {
            "rig_file": rig, "reference": reference, "stamp_tolerance_s": 0.1,
            "qos_reliable": True}},
    }
    p = tmp_path / "pipeline.yaml"
    p.write_text(yaml.safe_dump(doc, sort_keys=False))  # order = start order
    return p


class _Listener:
    def __init__(self, ctx):
        self.node = Node("e2e_listener", context=ctx)
        self.grids: list[OccupancyGrid] = []
        self.metrics: list[BevMetrics] = []
        self.cam_stamps: list = []
        self.node.create_subscription(OccupancyGrid, "/bev/occupancy", self.grids.append, 10)
        self.node.create_subscription(BevMetrics, "/bev/metrics", self.metrics.append, 10)
        self.node.create_subscription(CameraInfo, "/cameras/cam_front/camera_info",
                                      lambda m: self.cam_stamps.append(m.header.stamp), 10)
        self.ex = SingleThreadedExecutor(context=ctx)
        self.ex.add_node(self.node)

    def spin_until(self, pred, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.ex.spin_once(timeout_sec=0.05)
            if pred():
                return True
        return pred()

    def close(self) -> None:
        self.ex.shutdown()
        self.node.destroy_node()


def _run(ctx, params: Path, frames: int, timeout: float) -> tuple[_Listener, dict]:
    """Run the pipeline until ``frames`` metrics arrived (or timeout); returns the listener and
    the nodes' diagnostics counters."""
    listener = _Listener(ctx)
    pipe = pipeline.start(params)
    try:
        assert set(pipe.nodes) == {"frame_player_node", "bev_node", "eval_node"}
        assert all(n.active for n in pipe.nodes.values()), "a node did not activate"
        listener.spin_until(lambda: len(listener.metrics) >= frames, timeout)
        listener.spin_until(lambda: False, 0.5)  # late messages
        counters = {name: dict(n.diag.counters) for name, n in pipe.nodes.items()}
    finally:
        pipe.stop()
        listener.close()
    return listener, counters


def test_pipeline_end_to_end_grid_and_metrics(ros_context, tmp_path, synth_root):
    params = _params_file(tmp_path, synth_root, "", frames=3)
    lis, counters = _run(ros_context, params, 2, 120.0)
    assert lis.grids, f"no OccupancyGrid received; counters {counters}"
    assert lis.metrics, f"no BevMetrics received; counters {counters}"
    for g in lis.grids:
        assert g.header.frame_id == "base_link"
        assert (g.info.width, g.info.height) == (200, 200)
        assert math.isclose(g.info.resolution, 0.5)
        assert (g.info.origin.position.x, g.info.origin.position.y) == (-50.0, -50.0)
        assert len(g.data) == 40000
        # stamped with the *input* stamp: exactly the stamp the player gave the camera frames
        assert g.header.stamp in lis.cam_stamps, (g.header.stamp, lis.cam_stamps)
        data = np.asarray(g.data, dtype=np.int8)
        assert data.min() >= -1 and data.max() <= 100 and (data == -1).any()
    m = lis.metrics[-1]
    assert m.reference_kind == BevMetrics.REFERENCE_LIDAR_IN_BOXES
    assert m.header.stamp in [g.header.stamp for g in lis.grids]
    assert m.frame_count == len(lis.metrics)
    assert m.true_positive_cells + m.false_negative_cells > 0, "empty reference: no vehicles?"
    assert 0.0 <= m.mean_iou <= 1.0 and m.latency_p50_ms > 0
    assert counters["frame_player_node"]["frames_published"] >= 2
    assert counters["bev_node"]["frames_processed"] >= 2
    assert counters["eval_node"]["evaluated"] == len(lis.metrics)


@pytest.mark.slow
def test_trained_checkpoint_iou_clearly_beats_untrained(ros_context, tmp_path, synth_root):
    if not CHECKPOINT.is_file():
        pytest.fail(f"{CHECKPOINT.relative_to(REPO)} is missing: train it with lss-bev-train "
                    "(the small synthetic checkpoint) before running this test")
    results = {}
    for label, weights in (("trained", str(CHECKPOINT)), ("untrained", "")):
        d = tmp_path / label
        d.mkdir()
        params = _params_file(d, synth_root, weights, frames=4, reference="gt_boxes")
        lis, counters = _run(ros_context, params, 4, 150.0)
        assert len(lis.metrics) >= 2, f"{label}: only {len(lis.metrics)} metrics; {counters}"
        results[label] = lis.metrics[-1].mean_iou
    print(f"mean IoU trained {results['trained']:.3f} vs untrained {results['untrained']:.3f}")
    # "clearly above": at least twice the untrained IoU and 0.1 (absolute) better
    assert results["trained"] >= max(2.0 * results["untrained"], results["untrained"] + 0.1), \
        results
