"""StageTimer."""

from __future__ import annotations

import time

import pytest

from lss_bev_ros.lss.timing import STAGES, StageTimer


def test_stage_timer_orders_and_accumulates() -> None:
    timer = StageTimer(cuda_sync=False)
    with timer.stage("geometry"):
        time.sleep(0.01)
    with timer.stage("camera_encoder"):
        time.sleep(0.02)
    with timer.stage("geometry"):
        time.sleep(0.01)
    res = timer.results()
    assert list(res) == ["geometry", "camera_encoder"]
    assert res["geometry"] == pytest.approx(20.0, abs=15.0)
    assert res["camera_encoder"] >= 19.0
    timer.reset()
    assert timer.results() == {}


def test_stage_timer_records_on_exception() -> None:
    timer = StageTimer(cuda_sync=False)
    with pytest.raises(RuntimeError), timer.stage("bev_encoder"):
        raise RuntimeError("boom")
    assert "bev_encoder" in timer.results()


def test_stage_names() -> None:
    assert STAGES == ("geometry", "camera_encoder", "voxel_pooling", "bev_encoder")
