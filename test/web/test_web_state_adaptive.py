"""Pure tests of the live view's state and per-client quality control (no sockets, no ROS)."""

from __future__ import annotations

import json
import threading
import time

import cv2
import numpy as np
import pytest

from lss_bev_ros.web.adaptive import AdaptiveQuality
from lss_bev_ros.web.state import DashboardState, StreamFrame, StreamSlot, json_safe


# ---- AdaptiveQuality ---------------------------------------------------------------------------
def test_adaptive_quality_drops_when_sends_are_slow_and_recovers_slowly():
    aq = AdaptiveQuality(quality=80, min_quality=30, max_quality=80, target_send_ms=50.0)
    qs = [aq.update(200.0) for _ in range(10)]
    assert qs[0] == 70 and qs == sorted(qs, reverse=True)
    assert aq.quality == 30  # floor
    # fast again: climbs back, one step per `patience` good frames, never above max
    ups = [aq.update(1.0) for _ in range(200)]
    assert aq.quality == 80
    first_raise = next(i for i, q in enumerate(ups) if q > 30)
    assert first_raise >= aq.patience - 1  # not on the first fast frame


def test_adaptive_quality_disabled_keeps_quality_and_validates():
    aq = AdaptiveQuality(quality=62, min_quality=62, max_quality=62, enabled=False, step=1)
    assert [aq.update(1e4) for _ in range(5)] == [62] * 5
    assert aq.ema_send_ms is not None and aq.ema_send_ms > 1000
    with pytest.raises(ValueError, match="min_quality"):
        AdaptiveQuality(min_quality=90, max_quality=50)
    with pytest.raises(ValueError, match="target_send_ms"):
        AdaptiveQuality(target_send_ms=0)


def test_adaptive_quality_holds_inside_the_band():
    aq = AdaptiveQuality(quality=60, min_quality=30, max_quality=90, target_send_ms=50.0)
    for _ in range(50):
        aq.update(40.0)  # below target but above target * headroom: no change
    assert aq.quality == 60


# ---- frames and slots --------------------------------------------------------------------------
def _noise(h=120, w=160, seed=0):
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


def test_stream_frame_encodes_lazily_once_per_quality():
    rgb = _noise()
    f = StreamFrame(1, rgb=rgb)
    assert f._jpegs == {}  # nothing encoded at publication
    hi = f.jpeg(90)
    assert f.jpeg(90) is hi  # cached
    lo = f.jpeg(30)
    assert len(lo) < len(hi)
    dec = cv2.imdecode(np.frombuffer(hi, np.uint8), cv2.IMREAD_COLOR)
    assert dec.shape == rgb.shape
    fixed = StreamFrame(2, jpeg=b"\xff\xd8abc")
    assert fixed.jpeg(10) == fixed.jpeg(90) == b"\xff\xd8abc"
    with pytest.raises(ValueError):
        StreamFrame(3)


def test_slot_is_latest_wins_and_wait_times_out():
    slot = StreamSlot("bev")
    assert slot.wait_newer(0, 0.05) is None
    for i in range(3):
        slot.publish(rgb=_noise(seed=i))
    f = slot.wait_newer(0, 0.05)
    assert f is not None and f.seq == 3  # the newest, intermediate ones are skipped
    assert slot.wait_newer(3, 0.05) is None

    got = []

    def waiter():
        got.append(slot.wait_newer(3, 5.0))

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.05)
    slot.publish(rgb=_noise(seed=9))
    t.join(5.0)
    assert got and got[0] is not None and got[0].seq == 4


# ---- dashboard state ---------------------------------------------------------------------------
def test_dashboard_state_history_json_and_limits():
    st = DashboardState(history_len=5)
    for i in range(8):
        st.update_metrics({"iou": 0.1 * i, "precision": float("nan"), "frame_count": i,
                           "stamp": 100.0 + i})
    st.update_metrics({"reference_description": "lidar"})  # no chart key -> no history point
    st.update_timing("bev", "torch", {"geometry": 1.0, "camera_encoder": np.float32(2.5)},
                     latency_ms=30.0, frames_processed=7, frames_dropped=1, node="bev_node")
    st.update_timing("bev", "torch", {"geometry": 1.5}, total_ms=9.0)
    st.update_info({"cameras": ["CAM_FRONT"], "bad": float("inf")})
    snap = st.snapshot()
    text = json.dumps(snap, allow_nan=False)  # strict JSON: NaN/inf became null
    assert "NaN" not in text
    assert len(snap["metrics_history"]) == 5
    assert snap["metrics_history"][-1]["iou"] == pytest.approx(0.7)
    assert snap["metrics_history"][-1]["precision"] is None
    assert snap["metrics_history"][-1]["stamp"] == 107.0
    assert snap["metrics"]["reference_description"] == "lidar"
    assert snap["metrics"]["frame_count"] == 7
    bev = snap["timing"]["bev"]
    assert bev["backend"] == "torch" and bev["updates"] == 2
    assert bev["frames_processed"] == 7 and bev["frames_dropped"] == 1
    assert bev["total_ms"] == 9.0 and bev["history"][0]["total_ms"] == 3.5
    assert bev["history"][0]["stages"]["camera_encoder"] == 2.5
    assert snap["info"] == {"cameras": ["CAM_FRONT"], "bad": None}
    short = st.snapshot(history=2)
    assert len(short["metrics_history"]) == 2 and len(short["timing"]["bev"]["history"]) == 2
    assert st.snapshot(history=0)["metrics_history"] == []
    with pytest.raises(ValueError):
        DashboardState(history_len=0)


def test_json_safe_handles_numpy_and_bytes():
    out = json_safe({"a": np.arange(3), "b": np.float64("nan"), "c": b"x", 1: (np.int64(2),)})
    assert out == {"a": [0, 1, 2], "b": None, "c": "x", "1": [2]}
