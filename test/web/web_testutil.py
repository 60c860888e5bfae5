"""Test helpers for the live view: an independent MJPEG reader and a headless-Chromium driver.

The Chromium driver speaks the DevTools protocol over ``--remote-debugging-pipe`` (JSON messages
terminated by NUL on fds 3/4), so no websocket library is needed and nothing listens on a port.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import cv2
import numpy as np

CHROMIUM = os.environ.get("LSS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-extensions", "--disable-default-apps", "--mute-audio", "--no-default-browser-check",
    "--disable-dev-shm-usage",
]


# ---- MJPEG ------------------------------------------------------------------------------------
class MjpegReader:
    """Minimal multipart/x-mixed-replace client on a raw socket (independent of the server)."""

    def __init__(self, url: str, timeout: float = 10.0, rcvbuf: int | None = None) -> None:
        parts = urlsplit(url)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((parts.hostname, parts.port))
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n".encode())
        self.buf = b""
        self.status, self.headers = self._read_head()
        ctype = self.headers.get("content-type", "")
        self.boundary = None
        if "boundary=" in ctype:
            self.boundary = ctype.split("boundary=", 1)[1].strip().strip('"').encode()

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("stream closed")
        self.buf += chunk

    def _read_until(self, sep: bytes) -> bytes:
        while sep not in self.buf:
            self._fill()
        out, self.buf = self.buf.split(sep, 1)
        return out

    def _read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _read_head(self) -> tuple[int, dict[str, str]]:
        head = self._read_until(b"\r\n\r\n").decode("latin-1").split("\r\n")
        status = int(head[0].split()[1])
        headers = {}
        for line in head[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        return status, headers

    def next_part(self) -> tuple[dict[str, str], bytes]:
        """Next part: (part headers, body bytes)."""
        assert self.boundary is not None, f"not a multipart stream: {self.headers}"
        while True:
            line = self._read_until(b"\r\n")
            if line == b"--" + self.boundary:
                break
            assert line == b"", f"garbage between parts: {line[:80]!r}"
        _, headers = self._part_headers()
        body = self._read_exact(int(headers["content-length"]))
        return headers, body

    def _part_headers(self) -> tuple[int, dict[str, str]]:
        raw = self._read_until(b"\r\n\r\n").decode("latin-1").split("\r\n")
        headers = {}
        for line in raw:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        return 0, headers

    def next_frame(self) -> tuple[dict[str, str], np.ndarray]:
        """Next part decoded with cv2 -> (headers, H x W x 3 BGR)."""
        headers, body = self.next_part()
        img = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
        assert img is not None, f"part of {len(body)} bytes is not a decodable JPEG"
        return headers, img

    def close(self) -> None:
        self.sock.close()


def get(url: str, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """Plain HTTP GET with urllib (status, lower-case headers, body); no raise on 4xx/5xx."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


# ---- Chromium over the DevTools pipe ----------------------------------------------------------
class CdpError(RuntimeError):
    pass


class Chromium:
    """Headless Chromium driven through ``--remote-debugging-pipe``."""

    def __init__(self, width: int = 1400, height: int = 1500) -> None:
        if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
            raise FileNotFoundError(
                f"{CHROMIUM} not found: install it with `apt-get install -y chromium` "
                "(tools/bootstrap.sh --with-browser)"
            )
        self.profile = tempfile.mkdtemp(prefix="lss-chromium-")
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        cmd = [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}",
               f"--window-size={width},{height}", "--remote-debugging-pipe", "about:blank"]
        # bash (dash lacks fds > 9) maps our pipe ends onto fds 3 (commands in) and 4 (replies out)
        self.proc = subprocess.Popen(
            ["/bin/bash", "-c", f'exec "$0" "$@" 3<&{to_chrome_r} 4>&{from_chrome_w}', *cmd],
            pass_fds=(to_chrome_r, from_chrome_w),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._next_id = 0
        self._rbuf = b""
        self.session: str | None = None

    def _send(self, method: str, params: dict | None = None, session: str | None = None) -> int:
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_chrome, json.dumps(msg).encode() + b"\0")
        return self._next_id

    def _recv(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while b"\0" not in self._rbuf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no DevTools reply")
            r, _, _ = select.select([self._from_chrome], [], [], left)
            if r:
                chunk = os.read(self._from_chrome, 1 << 20)
                if not chunk:
                    raise CdpError(f"chromium exited (rc={self.proc.poll()})")
                self._rbuf += chunk
        raw, self._rbuf = self._rbuf.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method: str, params: dict | None = None, timeout: float = 30.0,
             session: str | None = "default") -> dict:
        sess = self.session if session == "default" else session
        mid = self._send(method, params, sess)
        deadline = time.monotonic() + timeout
        while True:
            msg = self._recv(max(0.01, deadline - time.monotonic()))
            if msg.get("id") == mid:
                if "error" in msg:
                    raise CdpError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def open(self, url: str, timeout: float = 30.0) -> None:
        target = self.call("Target.createTarget", {"url": "about:blank"}, session=None)
        att = self.call("Target.attachToTarget",
                        {"targetId": target["targetId"], "flatten": True}, session=None)
        self.session = att["sessionId"]
        self.call("Page.enable")
        self.call("Runtime.enable")
        self.call("Page.navigate", {"url": url}, timeout=timeout)

    def evaluate(self, expression: str, timeout: float = 30.0) -> Any:
        res = self.call("Runtime.evaluate",
                        {"expression": expression, "returnByValue": True, "awaitPromise": True},
                        timeout=timeout)
        if "exceptionDetails" in res:
            raise CdpError(f"JS exception: {res['exceptionDetails']}")
        return res["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30.0, period: float = 0.2) -> Any:
        """Poll ``expression`` until truthy; returns its value."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                last = self.evaluate(expression)
            except CdpError as exc:  # page still loading: document.body may be null
                last = str(exc)[:200]
            else:
                if last:
                    return last
            time.sleep(period)
        raise TimeoutError(f"{expression!r} still falsy after {timeout} s (last {last!r})")

    def screenshot(self, path: Path) -> Path:
        res = self.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
        path.write_bytes(base64.b64decode(res["data"]))
        return path

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                with contextlib.suppress(CdpError, TimeoutError, OSError):
                    self.call("Browser.close", session=None, timeout=5.0)
                try:
                    self.proc.wait(5.0)
                except subprocess.TimeoutExpired:
                    os.killpg(self.proc.pid, 9)
                    self.proc.wait(5.0)
        finally:
            for fd in (self._to_chrome, self._from_chrome):
                with contextlib.suppress(OSError):
                    os.close(fd)
            shutil.rmtree(self.profile, ignore_errors=True)
