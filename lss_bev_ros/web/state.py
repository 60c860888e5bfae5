"""Thread-safe shared state of the live view: latest frame per stream, metrics, timing.

Producers (the dashboard node, offline tools) only swap references under a short lock; JPEG
encoding happens lazily in the client threads that need a frame, once per (frame, quality), so a
stream nobody watches costs nothing and a slow client never holds up a producer.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lss_bev_ros.conversions.image import encode_jpeg

# Metric keys that get a history point (the quality chart).
HISTORY_KEYS = ("iou", "precision", "recall", "mean_iou", "mean_precision", "mean_recall")


def json_safe(value: Any) -> Any:
    """Recursively replace NaN/inf by None and numpy scalars/arrays by Python values."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | deque):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


class StreamFrame:
    """One published frame: an RGB image encoded on demand, or fixed JPEG bytes."""

    __slots__ = ("_jpegs", "published_mono", "rgb", "seq", "shape", "stamp")

    def __init__(
        self,
        seq: int,
        rgb: np.ndarray | None = None,
        jpeg: bytes | None = None,
        stamp: float | None = None,
    ) -> None:
        if (rgb is None) == (jpeg is None):
            raise ValueError("give exactly one of rgb or jpeg")
        self.seq = seq
        self.rgb = rgb  # H x W x 3 uint8 RGB, never mutated after publication
        self.stamp = stamp  # input stamp (s) when known
        self.published_mono = time.monotonic()
        self.shape = tuple(rgb.shape) if rgb is not None else None
        self._jpegs: dict[int, bytes] = {} if jpeg is None else {-1: jpeg}

    def jpeg(self, quality: int) -> bytes:
        """JPEG bytes at ``quality`` (1..100), cached; fixed-JPEG frames ignore ``quality``."""
        if self.rgb is None:
            return self._jpegs[-1]
        data = self._jpegs.get(quality)
        if data is None:
            # encode outside any lock: cv2 releases the GIL, two clients may race and both encode
            data = encode_jpeg(self.rgb, quality)
            data = self._jpegs.setdefault(quality, data)
        return data


@dataclass
class ClientStats:
    """Counters of one connected MJPEG client (updated only by its own thread)."""

    client_id: int
    stream: str
    peer: str
    connected_mono: float = field(default_factory=time.monotonic)
    frames_sent: int = 0
    frames_dropped: int = 0  # frames published while this client was busy (never sent to it)
    frames_resent: int = 0  # repeats of an unchanged frame (idle stream keep-alive)
    bytes_sent: int = 0
    quality: int = 0
    last_send_ms: float = 0.0
    ema_send_ms: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.client_id,
            "stream": self.stream,
            "peer": self.peer,
            "connected_s": round(time.monotonic() - self.connected_mono, 2),
            "frames_sent": self.frames_sent,
            "frames_dropped": self.frames_dropped,
            "frames_resent": self.frames_resent,
            "bytes_sent": self.bytes_sent,
            "quality": self.quality,
            "last_send_ms": round(self.last_send_ms, 3),
            "ema_send_ms": round(self.ema_send_ms, 3),
        }


class StreamSlot:
    """Latest-wins slot of one named stream with its connected clients."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.cond = threading.Condition()
        self.frame: StreamFrame | None = None
        self.seq = 0
        self.clients: dict[int, ClientStats] = {}
        self.closed_totals = {"frames_sent": 0, "frames_dropped": 0, "bytes_sent": 0}
        self.connections = 0
        self.last_request_mono = -1e9  # last snapshot (.jpg) request

    def publish(
        self, rgb: np.ndarray | None = None, jpeg: bytes | None = None, stamp: float | None = None
    ) -> int:
        """Swap in a new frame and wake the clients; returns its sequence number."""
        with self.cond:
            self.seq += 1
            self.frame = StreamFrame(self.seq, rgb=rgb, jpeg=jpeg, stamp=stamp)
            self.cond.notify_all()
            return self.seq

    def wait_newer(
        self, after_seq: int, timeout: float, stop: threading.Event | None = None
    ) -> StreamFrame | None:
        """Newest frame with ``seq > after_seq``, waiting up to ``timeout`` s (None on timeout)."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.frame is None or self.frame.seq <= after_seq:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (stop is not None and stop.is_set()):
                    return None
                self.cond.wait(remaining)
            return self.frame

    def wake(self) -> None:
        with self.cond:
            self.cond.notify_all()

    def add_client(self, client: ClientStats) -> None:
        with self.cond:
            self.clients[client.client_id] = client
            self.connections += 1

    def remove_client(self, client: ClientStats) -> None:
        with self.cond:
            if self.clients.pop(client.client_id, None) is not None:
                self.closed_totals["frames_sent"] += client.frames_sent
                self.closed_totals["frames_dropped"] += client.frames_dropped
                self.closed_totals["bytes_sent"] += client.bytes_sent

    def stats(self) -> dict[str, Any]:
        with self.cond:
            clients = [c.as_dict() for c in self.clients.values()]
            totals = dict(self.closed_totals)
            frame = self.frame
            published = self.seq
            connections = self.connections
        for c in clients:
            for k in totals:
                totals[k] += c[k]
        return {
            "name": self.name,
            "frames_published": published,
            "frame_shape": list(frame.shape) if frame is not None and frame.shape else None,
            "last_frame_age_s": (
                round(time.monotonic() - frame.published_mono, 3) if frame is not None else None
            ),
            "clients_connected": len(clients),
            "connections_total": connections,
            "clients": clients,
            **totals,
        }


class StreamHub:
    """All named streams (created on first publish or first client)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._slots: dict[str, StreamSlot] = {}

    def slot(self, name: str) -> StreamSlot:
        with self._lock:
            s = self._slots.get(name)
            if s is None:
                s = self._slots[name] = StreamSlot(name)
            return s

    def get(self, name: str) -> StreamSlot | None:
        with self._lock:
            return self._slots.get(name)

    def names(self) -> list[str]:
        with self._lock:
            return list(self._slots)

    def slots(self) -> list[StreamSlot]:
        with self._lock:
            return list(self._slots.values())


class DashboardState:
    """Metrics, per-pipeline timing and free-form info for ``/eval`` and ``/eval.json``."""

    def __init__(self, history_len: int = 300) -> None:
        if history_len < 1:
            raise ValueError(f"history_len must be >= 1, got {history_len}")
        self.history_len = int(history_len)
        self._lock = threading.Lock()
        self._t0 = time.monotonic()
        self._wall0 = time.time()
        self.metrics: dict[str, Any] = {}
        self.metrics_updates = 0
        self.metrics_history: deque[dict[str, Any]] = deque(maxlen=self.history_len)
        self.timing: dict[str, dict[str, Any]] = {}
        self.info: dict[str, Any] = {}

    def now(self) -> float:
        """Seconds since this state was created (the charts' time axis)."""
        return time.monotonic() - self._t0

    def update_metrics(self, metrics: dict[str, Any]) -> None:
        """Merge one evaluation result (iou, precision, recall, mean_*, frame_count, ...).

        Latest values are replaced; a history point is appended when any of
        :data:`HISTORY_KEYS` is present. Optional ``stamp`` (input stamp, s) is kept with it.
        """
        t = self.now()
        clean = json_safe(dict(metrics))
        point = {k: clean[k] for k in HISTORY_KEYS if k in clean}
        with self._lock:
            self.metrics.update(clean)
            self.metrics_updates += 1
            if point:
                point["t"] = round(t, 3)
                if "stamp" in clean:
                    point["stamp"] = clean["stamp"]
                self.metrics_history.append(point)

    def update_timing(
        self,
        pipeline: str,
        backend: str,
        stages_ms: dict[str, float],
        *,
        total_ms: float | None = None,
        latency_ms: float | None = None,
        node_latency_ms: float | None = None,
        frames_processed: int | None = None,
        frames_dropped: int | None = None,
        node: str = "",
        stamp: float | None = None,
    ) -> None:
        """Record one processed frame of ``pipeline`` (e.g. ``bev``, ``detector``)."""
        t = self.now()
        stages = {str(k): float(v) for k, v in stages_ms.items()}
        if total_ms is None:
            total_ms = sum(stages.values())
        with self._lock:
            entry = self.timing.get(pipeline)
            if entry is None:
                entry = self.timing[pipeline] = {
                    "history": deque(maxlen=self.history_len),
                    "updates": 0,
                }
            entry.update(
                backend=backend,
                node=node,
                stages_ms=stages,
                total_ms=float(total_ms),
                latency_ms=None if latency_ms is None else float(latency_ms),
                node_latency_ms=None if node_latency_ms is None else float(node_latency_ms),
                updated_t=round(t, 3),
            )
            if frames_processed is not None:
                entry["frames_processed"] = int(frames_processed)
            if frames_dropped is not None:
                entry["frames_dropped"] = int(frames_dropped)
            entry["updates"] += 1
            entry["history"].append(
                {
                    "t": round(t, 3),
                    "stamp": stamp,
                    "stages": {k: round(v, 3) for k, v in stages.items()},
                    "total_ms": round(float(total_ms), 3),
                    "latency_ms": None if latency_ms is None else round(float(latency_ms), 3),
                }
            )

    def update_info(self, info: dict[str, Any]) -> None:
        """Merge free-form key/values shown in the dashboard's info table."""
        clean = json_safe(dict(info))
        with self._lock:
            self.info.update(clean)

    def snapshot(self, history: int | None = None) -> dict[str, Any]:
        """JSON-ready copy; ``history`` limits every history list to its last N points."""
        n = self.history_len if history is None else max(0, int(history))
        with self._lock:
            timing = {}
            for name, e in self.timing.items():
                d = {k: v for k, v in e.items() if k != "history"}
                d["history"] = list(e["history"])[-n:] if n else []
                timing[name] = d
            snap = {
                "uptime_s": round(self.now(), 3),
                "server_start_unix": self._wall0,
                "metrics": dict(self.metrics),
                "metrics_updates": self.metrics_updates,
                "metrics_history": list(self.metrics_history)[-n:] if n else [],
                "timing": timing,
                "info": dict(self.info),
            }
        return json_safe(snap)
