"""Where ROS-free cores report rejected input: counters, values and last errors per key.

A node's ``/diagnostics`` reporter (``lss_bev_ros.nodes.common.DiagnosticsReporter``) is a
:class:`CountingDiagnostics` that also logs and publishes; offline tools use this one as is.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol


class DiagnosticsSink(Protocol):
    """Where the pipeline reports (``lss_bev_ros.nodes.common.DiagnosticsReporter`` is one)."""

    def count(self, key: str, n: int = 1) -> None: ...

    def set(self, key: str, value: Any) -> None: ...

    def error(self, key: str, message: str, throttle_s: float = 2.0) -> None: ...


class CountingDiagnostics:
    """A :class:`DiagnosticsSink` that only counts (offline tools, tests)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counters: dict[str, int] = {}
        self.values: dict[str, str] = {}
        self.last_error: dict[str, str] = {}

    def count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.counters[key] = self.counters.get(key, 0) + n

    def set(self, key: str, value: Any) -> None:
        with self._lock:
            self.values[key] = value if isinstance(value, str) else f"{value}"

    def error(self, key: str, message: str, throttle_s: float = 2.0) -> None:
        with self._lock:
            self.counters[key] = self.counters.get(key, 0) + 1
            self.last_error[key] = message


__all__ = ["CountingDiagnostics", "DiagnosticsSink"]
