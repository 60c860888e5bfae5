"""The /eval dashboard in real headless Chromium: the page must render *data* (KPIs, tables and
charts filled from /eval.json by its JavaScript, live MJPEG previews decoded), not only HTML.

Needs /usr/bin/chromium (``apt-get install -y chromium``; ``tools/bootstrap.sh --with-browser``).
Set LSS_WEB_SCREENSHOT_DIR to keep the screenshot for a look.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from web_testutil import CHROMIUM, Chromium

from lss_bev_ros.conversions.grid import GridSpec
from lss_bev_ros.visualization import NOT_SCORED_SWATCH, UNSEEN_RGB
from lss_bev_ros.web import DashboardServer
from lss_bev_ros.web.views import BevView

if os.environ.get("LSS_SKIP_BROWSER_TESTS") == "1":  # explicit opt-out only, never silent
    pytest.skip("LSS_SKIP_BROWSER_TESTS=1", allow_module_level=True)

PAGE_STATE = """(() => {
  const q = s => document.querySelector(s);
  const canvas = q('#chart-quality');
  const ctx = canvas.getContext('2d');
  const px = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  let coloured = 0;
  for (let i = 0; i < px.length; i += 4) {
    if (px[i + 3] > 0 && Math.max(px[i], px[i + 1], px[i + 2]) - Math.min(px[i], px[i + 1],
        px[i + 2]) > 60) coloured++;
  }
  return JSON.stringify({
    iou: q('#kpi-iou').textContent,
    iouMean: q('#kpi-iou-sub').textContent,
    frames: q('#kpi-frames').textContent,
    backend: q('#kpi-backend').textContent,
    backendSub: q('#kpi-backend-sub').textContent,
    status: q('#status').textContent,
    qualityPoints: Number(canvas.dataset.points),
    qualityColoured: coloured,
    latencyPoints: Number(q('#chart-latency').dataset.points),
    stageCharts: [...document.querySelectorAll('#stage-charts .card')].map(c => ({
      id: c.id, points: Number(c.querySelector('canvas').dataset.points),
      legend: c.querySelector('.legend').textContent})),
    pipelines: [...document.querySelectorAll('#table-pipelines tbody tr')].map(
      r => [...r.cells].map(c => c.textContent)),
    streams: [...document.querySelectorAll('#table-streams tbody tr')].map(
      r => [...r.cells].map(c => c.textContent)),
    images: [...document.querySelectorAll('#live img')].map(
      i => [i.getAttribute('src'), i.naturalWidth, i.naturalHeight]),
    bevImages: [...document.querySelectorAll('#bev-views img')].map(
      i => [i.getAttribute('src'), i.naturalWidth, i.naturalHeight]),
    bevLegend: [...document.querySelectorAll('#legend-bev span')].map(
      s => [s.textContent, s.dataset.rgb || null]),
  });
})()"""

# RGB of the pixel (x, y) of the /fused picture as Chromium decoded it
FUSED_PIXEL = """((x, y) => {
  const img = [...document.querySelectorAll('#bev-views img')].find(
    i => i.getAttribute('src').startsWith('/fused'));
  const c = document.createElement('canvas');
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  const ctx = c.getContext('2d');
  ctx.drawImage(img, 0, 0);
  return [...ctx.getImageData(x - 4, y - 4, 9, 9).data].reduce(
    (acc, v, i) => { acc[i % 4] += v / 81; return acc; }, [0, 0, 0, 0]).slice(0, 3);
})"""


def _fused_picture() -> np.ndarray:
    """The /fused picture dashboard_node draws for a fused grid whose left half is unknown."""
    grid = GridSpec()
    prob = np.zeros((grid.nx, grid.ny), np.float32)
    known = np.ones_like(prob, bool)
    known[:, 100:] = False  # y > 0: left in the picture
    view = BevView("none", title="fused", unknown_label="unknown (-1)")
    view.add_grid(1.0, prob, known, grid)
    img = view.render(scale=2)
    assert img is not None
    return img


@pytest.fixture
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} missing: install it with `apt-get install -y chromium` "
                    "(tools/bootstrap.sh --with-browser), or set LSS_SKIP_BROWSER_TESTS=1")
    b = Chromium(width=1400, height=1500)
    try:
        yield b
    finally:
        b.close()


def _fill(srv: DashboardServer, n: int) -> None:
    for i in range(n):
        iou = 0.3 + 0.1 * math.sin(i / 5)
        srv.update_metrics({"iou": iou, "precision": iou + 0.2, "recall": iou + 0.1,
                            "mean_iou": 0.3, "mean_precision": 0.5, "mean_recall": 0.4,
                            "frame_count": i + 1, "unmatched_count": 1,
                            "latency_p50_ms": 120.0, "latency_p90_ms": 180.0,
                            "latency_p99_ms": 240.0, "reference_description": "LiDAR test"})
        srv.update_timing("bev", "torch", {"preprocess": 3.0, "geometry": 1.0,
                                           "camera_encoder": 40.0, "voxel_pooling": 8.0,
                                           "bev_encoder": 25.0}, total_ms=80.0,
                          latency_ms=110.0 + i, node_latency_ms=95.5, frames_processed=i + 1,
                          frames_dropped=2, node="bev_node")
        srv.update_timing("detector", "onnxruntime", {"inference": 30.0, "tracking": 1.5},
                          latency_ms=60.0, frames_processed=i + 1, frames_dropped=0,
                          node="detector_node")


def test_eval_dashboard_renders_live_data_in_chromium(browser, tmp_path):
    srv = DashboardServer(port=0, streams=("cam", "bev", "fused")).start()
    srv.update_jpeg_stream("fused", _fused_picture())
    stop = threading.Event()
    bev = np.zeros((200, 200, 3), np.uint8)
    bev[80:120, 90:110] = (255, 255, 255)

    def stream():  # a live BEV stream, as the node would publish
        i = 0
        while not stop.wait(0.1):
            i += 1
            srv.update_jpeg_stream("bev", np.roll(bev, i, axis=0))

    pub = threading.Thread(target=stream)
    try:
        _fill(srv, 40)
        srv.update_metrics({"iou": 0.4321})
        pub.start()
        browser.open(srv.url + "/eval")
        browser.wait_for("Number(document.body.dataset.updates || 0) >= 2", timeout=60)
        browser.wait_for("[...document.querySelectorAll('#live img, #bev-views img')].length"
                         " === 3 && [...document.querySelectorAll('#live img, #bev-views img')]"
                         ".every(i => i.naturalWidth > 0)", timeout=30)
        state = json.loads(browser.evaluate(PAGE_STATE))

        assert state["status"] == "live"
        assert state["iou"] == "0.432" and state["iouMean"] == "mean 0.300"
        assert state["frames"] == "40" and state["backend"] == "torch"
        assert "detector: onnxruntime" in state["backendSub"]
        assert state["qualityPoints"] == 4 * 41 - 3  # iou/prec/rec/mean_iou; last point iou-only
        assert state["qualityColoured"] > 150  # lines really drawn (grid and text are grey)
        assert state["latencyPoints"] == 80
        charts = {c["id"]: c for c in state["stageCharts"]}
        assert set(charts) == {"stages-bev", "stages-detector"}
        assert charts["stages-bev"]["points"] == 40
        assert "camera_encoder 40.00 ms" in charts["stages-bev"]["legend"]
        rows = {r[0]: r for r in state["pipelines"]}
        assert rows["bev"][1:5] == ["bev_node", "torch", "40", "2"]
        assert rows["bev"][6:8] == ["149.0", "95.5"]  # latency (last frame), in-node latency
        assert rows["detector"][2] == "onnxruntime"
        streams = {r[0]: r for r in state["streams"]}
        assert set(streams) == {"/cam", "/bev", "/fused"}
        imgs = {src.split("?")[0]: (w, h) for src, w, h in state["images"]}
        assert list(imgs) == ["/cam"] and imgs["/cam"][0] > 0  # MJPEG decoded by Chromium
        # the BEV card: single frame and fused side by side, then the legend of their colours
        bev_imgs = [(src.split("?")[0], w, h) for src, w, h in state["bevImages"]]
        assert bev_imgs == [("/bev", 200, 200), ("/fused", 400, 400)]
        legend = dict(state["bevLegend"])
        assert legend["not scored (ref unknown)"] == ",".join(map(str, NOT_SCORED_SWATCH))
        assert legend["unknown: no camera (/bev), -1 (/fused)"] == ",".join(map(str, UNSEEN_RGB))
        assert {"occupancy p 0..1", "TP pred+ref", "FP pred only", "FN ref only"} <= set(legend)
        unknown = browser.evaluate(f"{FUSED_PIXEL}(100, 200)")  # left half: unknown
        free = browser.evaluate(f"{FUSED_PIXEL}(300, 200)")
        assert np.abs(np.array(unknown) - UNSEEN_RGB).max() < 10, unknown
        assert np.abs(np.array(free) - UNSEEN_RGB).max() > 20, free

        # live: new data shows up without reloading the page
        srv.update_metrics({"iou": 0.9876, "frame_count": 41})
        browser.wait_for("document.querySelector('#kpi-iou').textContent === '0.988'",
                         timeout=20)
        srv.update_metrics({"reference_kind": "lidar_visibility", "observed_fraction": 0.264,
                            "mean_observed_fraction": 0.3})
        browser.wait_for("document.querySelector('#kpi-observed').textContent === '26 %'",
                         timeout=20)
        assert browser.evaluate("document.querySelector('#kpi-iou-label').textContent") == (
            "IoU vs LiDAR-visibility")
        assert "scored on 26 % of cells" in browser.evaluate(
            "document.querySelector('#kpi-iou-sub').textContent")
        assert srv.stream_stats()["bev"]["clients_connected"] >= 1

        shot = browser.screenshot(tmp_path / "eval.png")
        img = cv2.imread(str(shot))
        assert img is not None and img.shape[1] >= 1000 and img.std() > 10
        keep = os.environ.get("LSS_WEB_SCREENSHOT_DIR")
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            shutil.copy(shot, Path(keep) / "eval.png")
    finally:
        stop.set()
        if pub.is_alive():
            pub.join()
        srv.stop()


def test_dashboard_page_reports_a_dead_server(browser):
    srv = DashboardServer(port=0).start()
    browser.open(srv.url + "/eval?live=0&period_ms=200")
    browser.wait_for("document.querySelector('#status').textContent === 'live'", timeout=60)
    assert browser.evaluate("document.querySelector('#live-card').style.display") == "none"
    srv.stop()
    text = browser.wait_for(
        "document.querySelector('#status').textContent.startsWith('disconnected') && "
        "document.querySelector('#status').textContent", timeout=30)
    assert "disconnected" in text
