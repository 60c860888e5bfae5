"""MJPEG + dashboard HTTP server (standard library only; no ROS).

Endpoints (``<stream>`` is any published stream name, by default ``cam`` and ``bev``):

* ``/``               index with live previews and links
* ``/<stream>``       ``multipart/x-mixed-replace`` MJPEG; query ``quality=1..100`` (fixes the
                      quality for this client), ``adaptive=0|1``, ``max_fps=0`` (no cap) or
                      ``MIN_CLIENT_FPS..MAX_CLIENT_FPS``; other values get a 400
* ``/<stream>.jpg``   latest frame as one JPEG (503 until one exists)
* ``/eval``           HTML dashboard (metrics chart, per-stage latency charts, backends, counts)
* ``/eval.json``      the dashboard's data; query ``history=N`` limits history lists

Threading: one thread per connection (``ThreadingHTTPServer``). Producers call
:meth:`DashboardServer.update_jpeg_stream`, which only swaps a reference (latest wins) and
notifies; every MJPEG client thread then takes the *newest* frame, encodes it at its own quality
(cached per frame and quality) and sends it. Frames published while a client is still sending
are skipped for that client and counted as its ``frames_dropped``. A client that stops reading
only blocks its own thread, until ``send_timeout_s`` disconnects it.

Hostile clients are bounded: a client that closes its connection frees its stream slot within
about ``_POLL_S`` (its socket is polled while the thread waits for frames or for the fps cap);
a request whose line and headers have not fully arrived ``header_timeout_s`` after the
connection (or the previous response) is dropped (slowloris); at most ``max_connections``
connections are served at once (extra ones are closed unanswered); a client reset is logged
as one line, never a traceback.

Example (offline tool)::

    server = DashboardServer("127.0.0.1", 8080, jpeg_quality=80, adaptive=True)
    server.start()
    server.update_jpeg_stream("bev", bev_rgb)
    server.update_metrics({"iou": 0.31, "precision": 0.5, "recall": 0.45})
    print(server.url)
    server.stop()
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import math
import select
import socket
import sys
import threading
import time
from collections.abc import Iterable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import cv2
import numpy as np

from lss_bev_ros.web.adaptive import AdaptiveQuality
from lss_bev_ros.web.page import DASHBOARD_HTML, index_html
from lss_bev_ros.web.state import ClientStats, DashboardState, StreamHub, json_safe

log = logging.getLogger(__name__)

BOUNDARY = "lssbevframe"
MIN_CLIENT_FPS = 0.1
"""Lowest ``max_fps`` a client may ask for (one frame per 10 s); 0 means no cap."""
MAX_CLIENT_FPS = 120.0
_POLL_S = 0.5  # how often a waiting stream thread checks whether its client left
_RESERVED = {"", "eval", "eval.json", "favicon.ico", "index.html"}


def _placeholder(name: str, size: tuple[int, int] = (240, 426)) -> np.ndarray:
    """Dark H x W x 3 RGB frame saying that ``name`` has no data yet."""
    img = np.full((*size, 3), 24, np.uint8)
    cv2.putText(img, f"/{name}: waiting for data", (16, size[0] // 2), cv2.FONT_HERSHEY_SIMPLEX,
                0.6, (200, 200, 200), 1, cv2.LINE_AA)
    return img


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, addr: tuple[str, int], dashboard: DashboardServer) -> None:
        self.address_family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        self.dashboard = dashboard
        super().__init__(addr, _Handler)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        """Refuse (close unanswered) connections beyond ``max_connections``."""
        dash = self.dashboard
        with dash._clients_lock:
            full = len(dash._connections) >= dash.max_connections
        if full:
            dash.connections_refused += 1
            log.warning("dashboard: %d connections open (max_connections), refusing %s",
                        dash.max_connections, client_address[0])
        return not full

    def handle_error(self, request: Any, client_address: Any) -> None:
        """One log line for clients that reset or time out; a traceback only for real bugs."""
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):  # ConnectionResetError, BrokenPipeError, TimeoutError...
            self.dashboard.client_errors += 1
            log.info("client %s: connection ended: %s", client_address[0],
                     type(exc).__name__)
        else:
            log.exception("dashboard: error while serving %s", client_address[0])


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer
    server_version = "lss_bev_ros-dashboard"
    sys_version = ""

    # ---- plumbing ------------------------------------------------------------------------
    def setup(self) -> None:
        dash = self.server.dashboard
        # socket timeout for each read / write; the whole request head has its own deadline
        self.timeout = min(dash.send_timeout_s, dash.header_timeout_s)
        super().setup()
        dash._track(self.connection, add=True)

    def handle_one_request(self) -> None:
        """Read and answer one request; the request line and headers must arrive within
        ``header_timeout_s`` (the reaper shuts the socket down otherwise)."""
        dash = self.server.dashboard
        self.connection.settimeout(min(dash.send_timeout_s, dash.header_timeout_s))
        dash._head_deadline(self.connection, time.monotonic() + dash.header_timeout_s)
        try:
            super().handle_one_request()
        except OSError as exc:  # reset / timeout while reading the request: one line
            dash.client_errors += 1
            log.info("client %s: connection ended: %s", self.client_address[0],
                     type(exc).__name__)
            self.close_connection = True
        finally:
            dash._head_deadline(self.connection, None)

    def parse_request(self) -> bool:
        ok = super().parse_request()
        dash = self.server.dashboard
        dash._head_deadline(self.connection, None)  # head complete
        self.connection.settimeout(dash.send_timeout_s)  # a slow reader of the answer
        return ok

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass  # the client left before the last bytes were flushed
        finally:
            self.server.dashboard._track(self.connection, add=False)

    def client_gone(self) -> bool:
        """Whether the client closed or reset its connection (it sends nothing after the
        request, so a readable socket with no data is EOF)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            if not readable:
                return False
            return self.connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except (OSError, ValueError):
            return True

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s - %s", self.address_string(), format % args)

    def _send_bytes(self, body: bytes, content_type: str, status: int = 200,
                    head_only: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if not head_only:
            self.wfile.write(body)

    def _error(self, status: int, text: str, head_only: bool = False) -> None:
        self._send_bytes((text + "\n").encode(), "text/plain; charset=utf-8", status, head_only)

    # ---- routing ---------------------------------------------------------------------------
    def do_HEAD(self) -> None:
        self._route(head_only=True)

    def do_GET(self) -> None:
        self._route(head_only=False)

    def _route(self, head_only: bool) -> None:
        dash = self.server.dashboard
        parts = urlsplit(self.path)
        path = parts.path.strip("/")
        query = parse_qs(parts.query)
        try:
            if path in ("", "index.html"):
                body = index_html(dash.hub.names()).encode()
                self._send_bytes(body, "text/html; charset=utf-8", head_only=head_only)
            elif path == "eval":
                self._send_bytes(DASHBOARD_HTML.encode(), "text/html; charset=utf-8",
                                 head_only=head_only)
            elif path == "eval.json":
                history = _int_arg(query, "history", None, 0, 100_000)
                body = json.dumps(dash.snapshot(history), allow_nan=False).encode()
                self._send_bytes(body, "application/json", head_only=head_only)
            elif path == "favicon.ico":
                self._send_bytes(b"", "image/x-icon", HTTPStatus.NO_CONTENT, head_only=True)
            elif path.endswith(".jpg") and dash.hub.get(path[:-4]) is not None:
                self._snapshot(path[:-4], query, head_only)
            elif dash.hub.get(path) is not None:
                if head_only:
                    self._error(HTTPStatus.OK, "mjpeg stream", head_only=True)
                else:
                    self._mjpeg(path, query)
            else:
                self._error(HTTPStatus.NOT_FOUND, f"not found: /{path}", head_only)
        except ValueError as exc:
            self._error(HTTPStatus.BAD_REQUEST, str(exc), head_only)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            self.close_connection = True

    def _snapshot(self, name: str, query: dict[str, list[str]], head_only: bool) -> None:
        dash = self.server.dashboard
        slot = dash.hub.slot(name)
        slot.last_request_mono = time.monotonic()
        frame = slot.frame
        if frame is None:
            self._error(HTTPStatus.SERVICE_UNAVAILABLE, f"no frame on /{name} yet", head_only)
            return
        quality = _int_arg(query, "quality", dash.jpeg_quality, 1, 100)
        self._send_bytes(frame.jpeg(quality), "image/jpeg", head_only=head_only)

    def _mjpeg(self, name: str, query: dict[str, list[str]]) -> None:
        dash = self.server.dashboard
        fixed_q = _int_arg(query, "quality", None, 1, 100)
        want_adaptive = _int_arg(query, "adaptive", None, 0, 1)
        fps_arg = _float_arg(query, "max_fps", None, 0.0, MAX_CLIENT_FPS)
        if fps_arg is not None and 0.0 < fps_arg < MIN_CLIENT_FPS:
            raise ValueError(f"query parameter max_fps={fps_arg} outside [{MIN_CLIENT_FPS}, "
                             f"{MAX_CLIENT_FPS}] (0: no cap)")
        if not dash._acquire_client():
            self._error(HTTPStatus.SERVICE_UNAVAILABLE,
                        f"too many stream clients (max {dash.max_clients})")
            return
        slot = dash.hub.slot(name)
        config_version = dash._config_version
        ctrl = dash._controller(fixed_q, want_adaptive)
        max_fps = dash.max_fps if fps_arg is None else fps_arg
        client = ClientStats(next(dash._ids), name, self.address_string(), quality=ctrl.quality)
        self.close_connection = True
        try:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.send_header("Cache-Control", "no-store, no-cache, must-revalidate")
            self.send_header("Pragma", "no-cache")
            self.send_header("Connection", "close")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            # The boundary goes *after* each part so browsers show a frame as soon as it has
            # arrived (Chromium renders a part only once the next boundary is seen).
            self.wfile.write(f"--{BOUNDARY}\r\n".encode())
            slot.add_client(client)
            log.info("client %d (%s) connected to /%s", client.client_id, client.peer, name)
            tail = f"\r\n--{BOUNDARY}\r\n".encode()
            last_seq: int | None = None
            last_sent: float | None = None
            now = time.monotonic
            next_allowed = 0.0
            while not dash._stop.is_set():
                if self.client_gone():
                    log.info("client %d on /%s left", client.client_id, name)
                    break
                wait = (_POLL_S if last_sent is None
                        else min(_POLL_S, last_sent + dash.resend_s - now()))
                frame = slot.wait_newer(last_seq or 0, max(0.0, wait), dash._stop)
                if config_version != dash._config_version:  # settings changed at run time
                    config_version = dash._config_version
                    ctrl = dash._controller(fixed_q, want_adaptive)
                    max_fps = dash.max_fps if fps_arg is None else fps_arg
                if frame is None:
                    # Nothing new: repeat the last frame every resend_s. Browsers only show a
                    # part once the next one starts, and a dead client is noticed this way.
                    if (last_seq is None or last_sent is None or slot.frame is None
                            or now() - last_sent < dash.resend_s):
                        continue
                    frame = slot.frame
                    client.frames_resent += 1
                elif last_seq is not None and frame.seq > last_seq + 1:
                    client.frames_dropped += frame.seq - last_seq - 1
                last_seq = frame.seq
                last_sent = now()
                data = frame.jpeg(ctrl.quality)
                client.quality = ctrl.quality  # quality of the last frame sent
                head = (
                    f"Content-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n"
                    f"X-Frame-Seq: {frame.seq}\r\n"
                    + (f"X-Timestamp: {frame.stamp:.6f}\r\n" if frame.stamp is not None else "")
                    + "\r\n"
                ).encode()
                t0 = time.perf_counter()
                self.wfile.write(head + data + tail)
                send_ms = (time.perf_counter() - t0) * 1e3
                client.frames_sent += 1
                client.bytes_sent += len(head) + len(data) + len(tail)
                client.last_send_ms = send_ms
                ctrl.update(send_ms)
                client.ema_send_ms = ctrl.ema_send_ms or 0.0
                if max_fps > 0:
                    next_allowed = max(next_allowed + 1.0 / max_fps, time.monotonic())
                    while (delay := next_allowed - time.monotonic()) > 0:  # in short slices
                        if dash._stop.wait(min(delay, _POLL_S)) or self.client_gone():
                            break
        except (BrokenPipeError, ConnectionResetError, TimeoutError, OSError) as exc:
            log.info("client %d on /%s gone: %s", client.client_id, name, type(exc).__name__)
        finally:
            slot.remove_client(client)
            dash._release_client()


def _int_arg(query: dict[str, list[str]], key: str, default: int | None, lo: int,
             hi: int) -> int | None:
    if key not in query:
        return default
    raw = query[key][-1]
    try:
        v = int(raw)
    except ValueError:
        raise ValueError(f"query parameter {key}={raw!r} is not an integer") from None
    if not lo <= v <= hi:
        raise ValueError(f"query parameter {key}={v} outside [{lo}, {hi}]")
    return v


def _bounded_fps(fps: float) -> float:
    """A server-wide fps cap: 0 (none) or clamped into [MIN_CLIENT_FPS, MAX_CLIENT_FPS]."""
    v = float(fps)
    if v <= 0 or math.isnan(v):
        return 0.0
    bounded = min(max(v, MIN_CLIENT_FPS), MAX_CLIENT_FPS)
    if bounded != v:
        log.warning("dashboard: max_fps %g clamped to %g", v, bounded)
    return bounded


def _float_arg(query: dict[str, list[str]], key: str, default: float | None, lo: float,
               hi: float) -> float | None:
    if key not in query:
        return default
    raw = query[key][-1]
    try:
        v = float(raw)
    except ValueError:
        raise ValueError(f"query parameter {key}={raw!r} is not a number") from None
    if not lo <= v <= hi:  # also rejects nan
        raise ValueError(f"query parameter {key}={v} outside [{lo}, {hi}]")
    return v


class DashboardServer:
    """Live MJPEG streams + evaluation dashboard over HTTP.

    ``host``: bind address (127.0.0.1 by default; anything else exposes the streams on that
    network). ``port`` 0 picks a free port (see :attr:`url` after :meth:`start`).
    ``jpeg_quality``: default (and, with ``adaptive``, maximum) JPEG quality per client;
    ``adaptive``: lower a client's quality while its smoothed send time exceeds
    ``adaptive_target_ms`` (never below ``min_quality``). ``max_fps`` > 0 caps frames per client.
    ``resend_s``: an idle stream repeats its last frame this often (browsers need the next part
    to show one; also detects dead clients).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8080,
        jpeg_quality: int = 80,
        adaptive: bool = False,
        *,
        min_quality: int = 30,
        adaptive_target_ms: float = 50.0,
        max_fps: float = 0.0,
        max_clients: int = 32,
        send_timeout_s: float = 20.0,
        resend_s: float = 1.0,
        history_len: int = 300,
        streams: Iterable[str] = ("cam", "bev"),
        header_timeout_s: float = 10.0,
        max_connections: int = 128,
    ) -> None:
        if not 1 <= int(jpeg_quality) <= 100:
            raise ValueError(f"jpeg_quality must be 1..100, got {jpeg_quality}")
        if not 1 <= int(min_quality) <= 100:
            raise ValueError(f"min_quality must be 1..100, got {min_quality}")
        if not 0 <= int(port) <= 65535:
            raise ValueError(f"port must be 0..65535, got {port}")
        if (max_clients < 1 or send_timeout_s <= 0 or adaptive_target_ms <= 0 or max_fps < 0
                or resend_s <= 0 or header_timeout_s <= 0 or max_connections < max_clients):
            raise ValueError("max_clients >= 1, send_timeout_s > 0, adaptive_target_ms > 0, "
                             "max_fps >= 0, resend_s > 0, header_timeout_s > 0, "
                             "max_connections >= max_clients required")
        self.host = host
        self.port = int(port)
        self.jpeg_quality = int(jpeg_quality)
        self.adaptive = bool(adaptive)
        self.min_quality = min(int(min_quality), self.jpeg_quality)
        self.adaptive_target_ms = float(adaptive_target_ms)
        self.max_fps = _bounded_fps(max_fps)
        self.max_clients = int(max_clients)
        self.max_connections = int(max_connections)
        self.header_timeout_s = float(header_timeout_s)
        self.connections_refused = 0  # beyond max_connections
        self.client_errors = 0  # resets, timeouts, slow request heads
        self._head_deadlines: dict[socket.socket, float] = {}
        self._reaper: threading.Thread | None = None
        self.send_timeout_s = float(send_timeout_s)
        self.resend_s = float(resend_s)
        self.hub = StreamHub()
        self.state = DashboardState(history_len)
        self._stop = threading.Event()
        self._ids = itertools.count(1)
        self._config_version = 0
        self._clients_lock = threading.Lock()
        self._active_clients = 0
        self._connections: set[socket.socket] = set()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        for name in streams:
            self._check_name(name)
            self.hub.slot(name).publish(rgb=_placeholder(name))

    # ---- lifecycle ---------------------------------------------------------------------------
    def start(self) -> DashboardServer:
        """Bind and serve in a background thread; raises OSError naming the address on failure."""
        if self._httpd is not None:
            return self
        try:
            httpd = _HTTPServer((self.host, self.port), self)
        except OSError as exc:
            raise OSError(exc.errno, f"cannot bind dashboard to {self.host}:{self.port}: "
                                     f"{exc.strerror}") from exc
        self._stop.clear()
        self._httpd = httpd
        self.port = httpd.server_address[1]
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.2},
            name=f"dashboard-http-{self.port}", daemon=True,
        )
        self._thread.start()
        self._reaper = threading.Thread(target=self._reap_slow_heads,
                                        name=f"dashboard-reaper-{self.port}", daemon=True)
        self._reaper.start()
        log.info("dashboard serving on %s", self.url)
        return self

    def stop(self, timeout: float = 3.0) -> None:
        """Stop serving, disconnect every client and wait (bounded) for their threads."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stop.set()
        for slot in self.hub.slots():
            slot.wake()
        httpd.shutdown()
        with self._clients_lock:
            conns = list(self._connections)
        for conn in conns:  # unblock clients stuck in sendall()/recv()
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._reaper is not None:
            self._reaper.join(timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._clients_lock:
                if not self._connections:
                    break
            time.sleep(0.02)

    def __enter__(self) -> DashboardServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._httpd is not None

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8080`` (the real port once started)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    # ---- producers -----------------------------------------------------------------------------
    @staticmethod
    def _check_name(name: str) -> None:
        if (not name or name in _RESERVED or name.endswith(".jpg")
                or not all(c.isalnum() or c in "_-" for c in name)):
            raise ValueError(f"invalid stream name {name!r} (letters, digits, _ and - only)")

    def update_jpeg_stream(self, name: str, rgb: np.ndarray, stamp: float | None = None,
                           copy: bool = True) -> int:
        """Publish ``rgb`` (H x W x 3 uint8 RGB) as the newest frame of ``/name``.

        Cheap and non-blocking: stores a reference (a copy unless ``copy=False``, then the
        caller must not modify the array afterwards) and wakes clients; encoding happens in the
        client threads. Returns the frame's sequence number.
        """
        self._check_name(name)
        arr = np.asarray(rgb)
        if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8 or arr.size == 0:
            raise ValueError(f"stream /{name}: expected H x W x 3 uint8 RGB, got "
                             f"{arr.shape} {arr.dtype}")
        arr = np.array(arr, copy=True, order="C") if copy else np.ascontiguousarray(arr)
        return self.hub.slot(name).publish(rgb=arr, stamp=stamp)

    def update_jpeg_bytes(self, name: str, jpeg: bytes, stamp: float | None = None) -> int:
        """Publish already-encoded JPEG bytes (sent as is, whatever the client's quality)."""
        self._check_name(name)
        if not jpeg.startswith(b"\xff\xd8"):
            raise ValueError(f"stream /{name}: data is not a JPEG (no SOI marker)")
        return self.hub.slot(name).publish(jpeg=bytes(jpeg), stamp=stamp)

    def update_metrics(self, metrics: dict[str, Any]) -> None:
        """Merge an evaluation result (see :meth:`DashboardState.update_metrics`)."""
        self.state.update_metrics(metrics)

    def update_timing(self, pipeline: str, backend: str, stages_ms: dict[str, float],
                      **kwargs: Any) -> None:
        """Record one frame's stage timing (see :meth:`DashboardState.update_timing`)."""
        self.state.update_timing(pipeline, backend, stages_ms, **kwargs)

    def update_info(self, info: dict[str, Any]) -> None:
        """Merge key/values shown in the dashboard's info table."""
        self.state.update_info(info)

    def configure(self, *, jpeg_quality: int | None = None, adaptive: bool | None = None,
                  min_quality: int | None = None, adaptive_target_ms: float | None = None,
                  max_fps: float | None = None) -> None:
        """Change streaming settings at run time; connected clients pick them up with their
        next frame (clients that fixed ``quality`` in the URL keep it)."""
        q = self.jpeg_quality if jpeg_quality is None else int(jpeg_quality)
        mq = self.min_quality if min_quality is None else int(min_quality)
        if not 1 <= q <= 100 or not 1 <= mq <= 100:
            raise ValueError(f"qualities must be 1..100, got {q} and {mq}")
        if adaptive_target_ms is not None and adaptive_target_ms <= 0:
            raise ValueError("adaptive_target_ms must be > 0")
        if max_fps is not None and max_fps < 0:
            raise ValueError("max_fps must be >= 0")
        self.jpeg_quality = q
        self.min_quality = min(mq, q)
        if adaptive is not None:
            self.adaptive = bool(adaptive)
        if adaptive_target_ms is not None:
            self.adaptive_target_ms = float(adaptive_target_ms)
        if max_fps is not None:
            self.max_fps = _bounded_fps(max_fps)
        self._config_version += 1

    def _controller(self, fixed_q: int | None, want_adaptive: int | None) -> AdaptiveQuality:
        """Quality controller of a new client (or after :meth:`configure`)."""
        if fixed_q is not None:
            return AdaptiveQuality(quality=fixed_q, min_quality=fixed_q, max_quality=fixed_q,
                                   target_send_ms=self.adaptive_target_ms, enabled=False, step=1)
        adaptive = self.adaptive if want_adaptive is None else bool(want_adaptive)
        return AdaptiveQuality(
            quality=self.jpeg_quality, min_quality=self.min_quality,
            max_quality=self.jpeg_quality, target_send_ms=self.adaptive_target_ms,
            enabled=adaptive, step=5 if adaptive else 1,
        )

    # ---- queries -------------------------------------------------------------------------------
    def wanted(self, name: str, within_s: float = 5.0) -> bool:
        """Whether ``/name`` has clients or its snapshot was fetched within ``within_s``."""
        slot = self.hub.get(name)
        if slot is None:
            return False
        return bool(slot.clients) or time.monotonic() - slot.last_request_mono < within_s

    def has_clients(self, name: str) -> bool:
        """Whether anyone is watching ``/name`` now (lets producers skip rendering)."""
        slot = self.hub.get(name)
        return slot is not None and bool(slot.clients)

    def stream_stats(self) -> dict[str, dict[str, Any]]:
        """Per-stream counters incl. per-client frames sent/dropped and bytes."""
        return {s.name: s.stats() for s in self.hub.slots()}

    def snapshot(self, history: int | None = None) -> dict[str, Any]:
        """Everything ``/eval.json`` serves."""
        snap = self.state.snapshot(history)
        snap["streams"] = self.stream_stats()
        snap["server"] = {
            "url": self.url,
            "jpeg_quality": self.jpeg_quality,
            "adaptive": self.adaptive,
            "min_quality": self.min_quality,
            "max_fps": self.max_fps,
            "clients_connected": self._active_clients,
            "connections_open": len(self._connections),
            "connections_refused": self.connections_refused,
            "client_errors": self.client_errors,
        }
        return json_safe(snap)

    # ---- internals -----------------------------------------------------------------------------
    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._clients_lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)
                self._head_deadlines.pop(conn, None)

    def _head_deadline(self, conn: socket.socket, deadline: float | None) -> None:
        """Set (or clear, None) the time by which ``conn``'s request head must be complete."""
        with self._clients_lock:
            if deadline is None:
                self._head_deadlines.pop(conn, None)
            else:
                self._head_deadlines[conn] = deadline

    def _reap_slow_heads(self) -> None:
        """Shut down connections whose request head is late (slowloris), every 0.2 s."""
        while not self._stop.wait(0.2):
            now = time.monotonic()
            with self._clients_lock:
                late = [c for c, t in self._head_deadlines.items() if now >= t]
                for c in late:
                    del self._head_deadlines[c]
            for conn in late:
                self.client_errors += 1
                with contextlib.suppress(OSError):
                    log.info("client %s: request head not complete after %.1f s, dropped",
                             conn.getpeername()[0], self.header_timeout_s)
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)

    def _acquire_client(self) -> bool:
        with self._clients_lock:
            if self._active_clients >= self.max_clients:
                return False
            self._active_clients += 1
            return True

    def _release_client(self) -> None:
        with self._clients_lock:
            self._active_clients -= 1
