"""DashboardServer against hostile clients on 127.0.0.1 (issue 13, item 5): bounded query values,
stream slots freed when clients leave, slowloris connections dropped, resets logged in one line.
Every client loop here is bounded in count and time."""

from __future__ import annotations

import http.client
import logging
import socket
import struct
import time

import numpy as np
import pytest
from web_testutil import MjpegReader, get

from lss_bev_ros.web import DashboardServer
from lss_bev_ros.web.server import MAX_CLIENT_FPS, MIN_CLIENT_FPS


def _status_or_none(url: str) -> int | None:
    """HTTP status of GET ``url``, None while the server still closes new connections (its
    connection count drops asynchronously after clients leave)."""
    try:
        return get(url, timeout=5.0)[0]
    except (OSError, http.client.HTTPException):
        return None


def _wait(pred, timeout: float, period: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(period)
    return pred()


def _closed_by_server(sock: socket.socket) -> bool:
    """True once the server closed or reset ``sock`` (non-blocking check)."""
    try:
        sock.setblocking(False)
        return sock.recv(4096) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def _reset(sock: socket.socket) -> None:
    """Close with an RST instead of a FIN (SO_LINGER 0)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


@pytest.fixture
def server():
    srv = DashboardServer(port=0, max_clients=2, header_timeout_s=1.0).start()
    srv.update_jpeg_stream("bev", np.full((60, 80, 3), 90, np.uint8))
    try:
        yield srv
    finally:
        srv.stop()


@pytest.mark.parametrize("value", ["0.0001", "1e-9", "1e9", "-1", "nan", "inf"])
def test_out_of_range_max_fps_is_rejected_with_400(server, value):
    status, _, body = get(f"{server.url}/bev?max_fps={value}", timeout=5.0)
    assert status == 400
    assert b"max_fps" in body
    assert server.stream_stats()["bev"]["clients_connected"] == 0


def test_in_range_max_fps_streams(server):
    reader = MjpegReader(f"{server.url}/bev?max_fps={MIN_CLIENT_FPS}", timeout=5.0)
    try:
        assert reader.status == 200
        reader.next_frame()
    finally:
        reader.close()


def test_server_wide_fps_cap_is_clamped_into_range():
    srv = DashboardServer(port=0, max_fps=1e-4)
    assert srv.max_fps == MIN_CLIENT_FPS
    srv.configure(max_fps=1e6)
    assert srv.max_fps == MAX_CLIENT_FPS


def test_slot_of_a_client_that_left_is_freed_promptly(server):
    # two slow-rate clients take both slots, read a frame and leave while the fps cap waits
    readers = [MjpegReader(f"{server.url}/bev?max_fps=0.2", timeout=5.0) for _ in range(2)]
    for r in readers:
        assert r.status == 200
        r.next_frame()
    assert get(f"{server.url}/bev", timeout=5.0)[0] == 503  # full
    t_left = time.monotonic()
    for r in readers:
        r.close()
    assert _wait(lambda: server.stream_stats()["bev"]["clients_connected"] == 0, 3.0), (
        server.stream_stats())
    assert time.monotonic() - t_left < 3.0  # not the 5 s of the fps cap
    reader = MjpegReader(f"{server.url}/bev", timeout=5.0)
    try:
        assert reader.status == 200
    finally:
        reader.close()


def test_slowloris_connections_are_dropped_after_the_header_timeout(server):
    socks = []
    for _ in range(20):
        s = socket.create_connection(("127.0.0.1", server.port), timeout=5.0)
        s.sendall(b"GET /eval.json HTTP/1.1\r\n")
        socks.append(s)
    t0 = time.monotonic()
    dropped: set[int] = set()
    # a header line every 0.3 s, for at most 4 s: the server must drop them all after ~1 s
    while len(dropped) < len(socks) and time.monotonic() - t0 < 4.0:
        for i, s in enumerate(socks):
            if i in dropped:
                continue
            if _closed_by_server(s):
                dropped.add(i)
                continue
            try:
                s.setblocking(True)
                s.sendall(f"X-Slow-{i}: {time.monotonic():.3f}\r\n".encode())
            except OSError:
                dropped.add(i)
        time.sleep(0.3)
    elapsed = time.monotonic() - t0
    for s in socks:
        s.close()
    assert len(dropped) == len(socks), f"{len(socks) - len(dropped)} slow connections held"
    assert elapsed < 3.0
    assert get(f"{server.url}/eval.json", timeout=5.0)[0] == 200  # still serving


def test_connections_beyond_the_limit_are_refused_and_service_recovers():
    srv = DashboardServer(port=0, max_clients=1, max_connections=4, header_timeout_s=2.0).start()
    try:
        idle = [socket.create_connection(("127.0.0.1", srv.port), timeout=5.0)
                for _ in range(4)]
        assert _wait(lambda: len(srv._connections) == 4, 3.0)
        extra = socket.create_connection(("127.0.0.1", srv.port), timeout=5.0)
        extra.sendall(b"GET /eval.json HTTP/1.1\r\nHost: x\r\n\r\n")
        assert extra.recv(100) == b""  # closed unanswered
        assert srv.connections_refused >= 1
        for s in [*idle, extra]:
            s.close()
        assert _wait(lambda: _status_or_none(f"{srv.url}/eval.json") == 200, 5.0)
    finally:
        srv.stop()


def test_client_resets_are_logged_as_one_line_without_tracebacks(server, caplog, capfd):
    caplog.set_level(logging.INFO, logger="lss_bev_ros.web.server")
    for i in range(10):  # reset mid-request, and reset while streaming
        s = socket.create_connection(("127.0.0.1", server.port), timeout=5.0)
        s.sendall(b"GET /eval.json HTTP/1.1\r\nHost: x\r\n")
        time.sleep(0.02)
        _reset(s)
        if i % 2:
            r = MjpegReader(f"{server.url}/bev", timeout=5.0)
            r.next_frame()
            _reset(r.sock)
            assert _wait(lambda: server.stream_stats()["bev"]["clients_connected"] == 0, 3.0)
    assert _wait(lambda: server.client_errors >= 5, 5.0), server.client_errors
    err = capfd.readouterr().err
    assert "Traceback" not in err and "ConnectionResetError" not in err
    ended = [r for r in caplog.records if "ended" in r.getMessage() or "gone" in r.getMessage()
             or "left" in r.getMessage()]
    assert ended and all("\n" not in r.getMessage() and r.exc_info is None for r in ended)
    assert get(f"{server.url}/eval.json", timeout=5.0)[0] == 200
