"""``rosbag_tools.demo``: the parameter file it derives from config/pipeline.yaml, and one tiny
end-to-end run (synthetic data -> bag -> live replay through the node set -> report)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lss_bev_ros.pipeline import resolve
from rosbag_tools.demo import DEFAULT_PARAMS, demo_params, run_demo


def test_demo_params_from_pipeline_yaml(tmp_path: Path) -> None:
    rig = tmp_path / "bag.rig.yaml"
    out, per_node = demo_params(DEFAULT_PARAMS, rig, tmp_path / "p.yaml", 18081,
                                tmp_path / "w.pt", detector=False)
    assert "frame_player_node" not in per_node and "detector_node" not in per_node
    doc = yaml.safe_load(out.read_text())
    for name, section in doc.items():
        params = section["ros__parameters"]
        if "rig_file" in params:
            assert params["rig_file"] == str(rig), name
    assert doc["dashboard_node"]["ros__parameters"]["port"] == 18081
    assert doc["dashboard_node"]["ros__parameters"]["host"] == "127.0.0.1"
    assert doc["bev_node"]["ros__parameters"]["weights"] == str(tmp_path / "w.pt")
    # the generated file is a valid pipeline parameter file (every key declared)
    names = [n for n, _, _ in resolve(out)]
    assert names == list(per_node)  # the pipeline.yaml order, the player left out


@pytest.mark.slow
def test_demo_end_to_end(tmp_path: Path) -> None:
    # 6 key frames at half speed: DDS discovery on a loaded CPU can take over a second, and the
    # evaluation needs a grid and the LiDAR/boxes of the same stamp
    res = run_demo(tmp_path / "demo", duration=0.0, port=0, rate=0.5, samples=6,
                   detector=False)
    assert (res.bag / "metadata.yaml").is_file() and res.rig.is_file()
    assert res.online.get("frame_count", 0) >= 1, "no /bev/metrics from the live pipeline"
    assert res.offline["frames_evaluated"] == 6
    for name in ("summary.txt", "frames.csv", "iou_over_time.png", "latency_hist.png",
                 "replay.mp4"):
        assert (res.report_dir / name).is_file(), name
