"""DashboardServer over real sockets: endpoints, MJPEG parsing, slow clients, limits, shutdown."""

from __future__ import annotations

import json
import socket
import threading
import time

import cv2
import numpy as np
import pytest
from web_testutil import MjpegReader, get

from lss_bev_ros.web import DashboardServer


@pytest.fixture
def server():
    srv = DashboardServer(port=0, jpeg_quality=80).start()
    try:
        yield srv
    finally:
        srv.stop()


def _frame(i: int, h: int = 120, w: int = 160) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    img[:, :, 0] = (i * 37) % 256
    img[:, :, 1] = 255 - (i * 37) % 256
    cv2.putText(img, str(i), (10, h // 2), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (255, 255, 255), 2)
    return img


def _wait(pred, timeout=10.0, period=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(period)
    return pred()


def test_binds_loopback_by_default_and_reports_port():
    srv = DashboardServer(port=0).start()
    try:
        assert srv.host == "127.0.0.1"
        assert srv.url.startswith("http://127.0.0.1:") and srv.port > 0
        assert srv._httpd.socket.getsockname()[0] == "127.0.0.1"
        # the port is taken now: a second server fails with a clear message
        with pytest.raises(OSError, match=f"127.0.0.1:{srv.port}"):
            DashboardServer(port=srv.port).start()
    finally:
        srv.stop()
    assert not srv.running


def test_endpoints(server):
    server.update_jpeg_stream("bev", _frame(1))
    server.update_metrics({"iou": 0.25, "precision": float("nan"), "recall": 0.5})
    server.update_timing("bev", "torch", {"geometry": 1.0, "bev_encoder": 3.0}, latency_ms=12.0)
    status, headers, body = get(server.url + "/eval.json")
    assert status == 200 and headers["content-type"] == "application/json"
    data = json.loads(body)  # strict JSON (NaN -> null)
    assert data["metrics"] == {"iou": 0.25, "precision": None, "recall": 0.5}
    assert data["timing"]["bev"]["backend"] == "torch"
    assert set(data["streams"]) == {"cam", "bev"}
    assert data["server"]["jpeg_quality"] == 80
    status, headers, body = get(server.url + "/eval")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b"<canvas" in body and b"/eval.json" in body
    assert b"http://" not in body and b"https://" not in body  # self-contained: no CDN
    status, _, body = get(server.url + "/")
    assert status == 200 and b"/bev" in body and b"/cam" in body
    status, headers, body = get(server.url + "/bev.jpg?quality=50")
    assert status == 200 and headers["content-type"] == "image/jpeg"
    img = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    assert img.shape == (120, 160, 3)
    assert get(server.url + "/nope")[0] == 404
    assert get(server.url + "/nope.jpg")[0] == 404
    status, _, body = get(server.url + "/bev?quality=500")
    assert status == 400 and b"quality" in body
    assert get(server.url + "/eval.json?history=abc")[0] == 400
    assert len(json.loads(get(server.url + "/eval.json?history=0")[2])["metrics_history"]) == 0


def test_invalid_input_is_rejected_clearly(server):
    with pytest.raises(ValueError, match="H x W x 3 uint8"):
        server.update_jpeg_stream("bev", np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match="H x W x 3 uint8"):
        server.update_jpeg_stream("bev", np.zeros((10, 10, 3), np.float32))
    with pytest.raises(ValueError, match="invalid stream name"):
        server.update_jpeg_stream("eval", _frame(0))
    with pytest.raises(ValueError, match="invalid stream name"):
        server.update_jpeg_stream("../x", _frame(0))
    with pytest.raises(ValueError, match="not a JPEG"):
        server.update_jpeg_bytes("bev", b"PNG...")
    with pytest.raises(ValueError):
        DashboardServer(jpeg_quality=0)


def test_bev_multipart_stream_decodes_frames(server):
    """Read /bev as a browser would: parse the multipart boundaries, decode >= 2 JPEGs."""
    server.update_jpeg_stream("bev", _frame(0), stamp=12.5)
    reader = MjpegReader(server.url + "/bev")
    try:
        assert reader.status == 200
        assert reader.headers["content-type"].startswith("multipart/x-mixed-replace")
        assert reader.boundary == b"lssbevframe"
        seqs, colors = [], []
        headers, img = reader.next_frame()  # the current frame right away
        seqs.append(int(headers["x-frame-seq"]))
        assert headers["x-timestamp"] == "12.500000"
        colors.append(img[5, 5])
        for i in range(1, 4):
            server.update_jpeg_stream("bev", _frame(i))
            headers, img = reader.next_frame()
            assert img.shape == (120, 160, 3)
            seqs.append(int(headers["x-frame-seq"]))
            colors.append(img[5, 5])
        assert seqs == sorted(seqs) and len(set(seqs)) == 4
        # frames carry the published content (BGR from cv2: channel 2 = our R = i * 37)
        assert [abs(int(c[2]) - (i * 37) % 256) < 12 for i, c in enumerate(colors)] == [True] * 4
    finally:
        reader.close()
    assert _wait(lambda: server.stream_stats()["bev"]["clients_connected"] == 0)
    st = server.stream_stats()["bev"]
    assert st["frames_sent"] >= 4 and st["connections_total"] == 1


def test_idle_stream_repeats_last_frame():
    srv = DashboardServer(port=0, resend_s=0.2).start()
    try:
        reader = MjpegReader(srv.url + "/cam")  # placeholder frame, nothing new published
        h1, img1 = reader.next_frame()
        h2, img2 = reader.next_frame()  # repeat arrives after resend_s
        assert h1["x-frame-seq"] == h2["x-frame-seq"] and img1.shape == img2.shape
        reader.close()
    finally:
        srv.stop()


def test_slow_client_does_not_block_updates_or_other_clients():
    """A client that reads nothing for seconds only stalls its own thread; the producer keeps
    swapping frames in, another client keeps getting the newest frames, and the slow one skips
    to the newest frame (drops counted) once it reads again."""
    srv = DashboardServer(port=0, jpeg_quality=95, send_timeout_s=30.0).start()
    big = np.random.default_rng(0).integers(0, 255, (1080, 1920, 3), dtype=np.uint8)
    try:
        srv.update_jpeg_stream("cam", big)
        slow = MjpegReader(srv.url + "/cam", rcvbuf=4096)  # reads the headers, then nothing
        assert _wait(lambda: srv.stream_stats()["cam"]["clients_connected"] == 1)
        fast = MjpegReader(srv.url + "/cam")
        fast.next_frame()
        n_pub = 30
        published = []

        def producer():
            for i in range(n_pub):
                frame = big.copy()
                frame[:40, :40] = i  # distinct frames
                published.append(srv.update_jpeg_stream("cam", frame, stamp=float(i)))
                time.sleep(0.05)

        prod = threading.Thread(target=producer)
        prod.start()
        fast_seqs: list[int] = []
        deadline = time.monotonic() + 30.0
        while time.monotonic() < deadline:
            h, _ = fast.next_frame()
            fast_seqs.append(int(h["x-frame-seq"]))
            if not prod.is_alive() and fast_seqs[-1] == published[-1]:
                break
        prod.join(10.0)
        assert not prod.is_alive(), "producer blocked"
        assert len(published) == n_pub
        assert fast_seqs[-1] == published[-1]  # the other client got the newest frame
        assert len(set(fast_seqs)) >= 5
        stats = {c["id"]: c for c in srv.stream_stats()["cam"]["clients"]}
        slow_stats = min(stats.values(), key=lambda c: c["id"])
        assert slow_stats["frames_sent"] <= 4, slow_stats  # stuck in its own send
        # the slow client wakes up: it gets the newest frame next, not the backlog
        slow.sock.settimeout(20.0)
        seqs = []
        while not seqs or seqs[-1] != published[-1]:
            h, img = slow.next_frame()
            seqs.append(int(h["x-frame-seq"]))
            assert img.shape == (1080, 1920, 3)
        assert len(seqs) <= 6, seqs  # a few buffered frames, then the newest one
        stats = {c["id"]: c for c in srv.stream_stats()["cam"]["clients"]}
        assert stats[slow_stats["id"]]["frames_dropped"] >= n_pub // 2
        slow.close()
        fast.close()
    finally:
        srv.stop()


def test_adaptive_quality_lowers_quality_for_a_slow_link():
    srv = DashboardServer(port=0, jpeg_quality=90, adaptive=True, min_quality=30,
                          adaptive_target_ms=5.0).start()
    big = np.random.default_rng(1).integers(0, 255, (720, 1280, 3), dtype=np.uint8)
    stop = threading.Event()

    def producer():
        i = 0
        while not stop.wait(0.02):
            i += 1
            f = big.copy()
            f[:8, :8] = i % 256
            srv.update_jpeg_stream("bev", f)

    prod = threading.Thread(target=producer)
    prod.start()
    try:
        assert _wait(lambda: srv.stream_stats()["bev"]["frames_published"] > 2)  # no placeholder
        fast = MjpegReader(srv.url + "/bev?adaptive=0")
        slow = MjpegReader(srv.url + "/bev", rcvbuf=4096)
        sizes = []
        for _ in range(12):  # a slow reader: small reads with pauses
            _, body = slow.next_part()
            sizes.append(len(body))
            fast.next_part()
            time.sleep(0.05)
        clients = srv.stream_stats()["bev"]["clients"]
        q = {c["id"]: c["quality"] for c in clients}
        assert max(q.values()) == 90  # adaptive=0 client keeps the configured quality
        assert min(q.values()) < 90
        assert sizes[-1] < 0.8 * sizes[0], sizes  # lower quality -> smaller frames
        fast.close()
        slow.close()
    finally:
        stop.set()
        prod.join()
        srv.stop()


def test_runtime_configure_reaches_connected_clients(server):
    server.update_jpeg_stream("bev", np.random.default_rng(2).integers(
        0, 255, (240, 320, 3), dtype=np.uint8))
    reader = MjpegReader(server.url + "/bev?max_fps=50")
    try:
        _, hi = reader.next_part()
        server.configure(jpeg_quality=20)
        _, lo = reader.next_part()  # the idle repeat, now at the new quality
        assert len(lo) < len(hi) * 0.7
        assert server.stream_stats()["bev"]["clients"][0]["quality"] == 20
        with pytest.raises(ValueError):
            server.configure(jpeg_quality=101)
    finally:
        reader.close()


def test_max_clients_and_stop_disconnects_everyone():
    srv = DashboardServer(port=0, max_clients=2).start()
    a = MjpegReader(srv.url + "/cam")
    b = MjpegReader(srv.url + "/bev", rcvbuf=4096)
    a.next_frame()
    b.next_frame()
    status, _, body = get(srv.url + "/cam")
    assert status == 503 and b"too many" in body
    assert get(srv.url + "/eval.json")[0] == 200  # non-stream endpoints still served
    t0 = time.monotonic()
    srv.stop()
    assert time.monotonic() - t0 < 5.0
    assert not srv._connections
    for r in (a, b):
        r.sock.settimeout(5.0)
        with pytest.raises((ConnectionError, OSError)):
            _drain(r)
        r.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", srv.port), timeout=1.0)


def test_head_and_snapshot_before_first_frame():
    srv = DashboardServer(port=0, streams=()).start()
    try:
        srv.hub.slot("cam")  # a known stream without frames
        assert get(srv.url + "/cam.jpg")[0] == 503
        import urllib.request

        req = urllib.request.Request(srv.url + "/eval.json", method="HEAD")
        with urllib.request.urlopen(req, timeout=5) as r:
            assert r.status == 200 and r.read() == b""
            assert int(r.headers["Content-Length"]) > 10
    finally:
        srv.stop()


def _drain(reader: MjpegReader) -> None:
    """Read parts until the server closes the stream (raises ConnectionError/OSError)."""
    for _ in range(10_000):
        reader.next_part()


def test_restart_after_stop_keeps_frames_and_state():
    srv = DashboardServer(port=0).start()
    try:
        srv.update_jpeg_stream("bev", _frame(3))
        srv.update_metrics({"iou": 0.5})
        port = srv.port
        srv.stop()
        srv.start()  # lifecycle deactivate -> activate
        assert srv.port == port
        assert json.loads(get(srv.url + "/eval.json")[2])["metrics"]["iou"] == 0.5
        reader = MjpegReader(srv.url + "/bev")
        _, img = reader.next_frame()
        assert img.shape == (120, 160, 3)
        reader.close()
    finally:
        srv.stop()
