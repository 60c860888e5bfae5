"""A PNG decompression bomb over real DDS (issue 13, item 6): dashboard_node, in its own process,
refuses the 20000 x 20000 image from its header, counts it, and keeps showing good images."""

from __future__ import annotations

import array
import sys
from pathlib import Path

import cv2
import numpy as np
from fuzz_testutil import stamp, wait_for
from sensor_msgs.msg import CompressedImage

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "core"))
from test_image_decompression_bomb import png_bomb


def _compressed(data: bytes, t: float, fmt: str) -> CompressedImage:
    m = CompressedImage(format=fmt)
    m.header.stamp, m.header.frame_id = stamp(t), "cam_front"
    m.data = array.array("B", data)
    return m


def test_png_bomb_is_refused_and_counted_by_dashboard_node(listener, start_nodes):
    nodes = start_nodes({"dashboard_node": {"ros__parameters": {
        "port": 0, "render_always": True, "reference": "none", "cameras": ["CAM_FRONT"],
        "qos_reliable": True, "render_rate_hz": 5.0}}})
    pub = listener.publisher(CompressedImage, "/cameras/cam_front/image_raw/compressed",
                             depth=5)
    assert wait_for(lambda: pub.get_subscription_count() >= 1
                    and listener.values("dashboard_node"), 60.0), nodes.log()[-3000:]
    pub.publish(_compressed(png_bomb(), 100.0, "png"))
    assert wait_for(lambda: listener.count("dashboard_node", "bad_image") >= 1, 10.0), (
        listener.values("dashboard_node"), nodes.log()[-3000:])
    assert "limit" in listener.values("dashboard_node")["last_error.bad_image"]
    frames = int(listener.values("dashboard_node").get("cam.frames_published", "0"))
    good = cv2.imencode(".jpg", np.full((90, 160, 3), 120, np.uint8))[1].tobytes()
    pub.publish(_compressed(good, 100.5, "jpeg"))
    assert wait_for(lambda: int(listener.values("dashboard_node").get(
        "cam.frames_published", "0")) > frames, 10.0), listener.values("dashboard_node")
    assert nodes.alive() and "Traceback" not in nodes.log()
