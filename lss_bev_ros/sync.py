"""Multi-camera stamp synchronisation and the latest-wins hand-off to an inference thread.

``message_filters`` (ApproximateTime) is not installable from PyPI; :class:`StampSynchronizer` is
the small replacement the nodes use. Times are seconds (float). ``now`` is passed in explicitly
(wall/ROS clock of the caller) so behaviour is deterministic and testable.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")


@dataclass
class SyncStats:
    """Counters of the synchroniser (all since construction)."""

    received: int = 0
    emitted_sets: int = 0
    partial_sets: int = 0
    out_of_order: int = 0  # stamp not newer than the last emitted set (or than its own queue)
    unknown_source: int = 0
    evicted: int = 0  # queued messages that never became part of a set


@dataclass(frozen=True)
class SyncedSet(Generic[T]):
    """One synchronised set: ``items[name]`` for every present source."""

    stamp: float  # reference stamp (s): the newest stamp in the set
    items: dict[str, T]
    stamps: dict[str, float]
    missing: tuple[str, ...] = ()

    @property
    def spread(self) -> float:
        """Max minus min stamp in the set (s)."""
        s = list(self.stamps.values())
        return max(s) - min(s) if s else 0.0


@dataclass
class _Source:
    queue: deque = field(default_factory=deque)
    last_arrival: float | None = None
    prev_arrival: float | None = None  # arrival before ``last_arrival``


class StampSynchronizer(Generic[T]):
    """Group messages of ``names`` whose header stamps lie within ``tolerance`` seconds.

    * A set is emitted as soon as every source has a message within tolerance of the newest
      candidate stamp; older queued messages are dropped (latest wins).
    * Messages whose stamp is not newer than the last emitted set are rejected (``out_of_order``).
    * A source with no arrival for ``missing_timeout`` seconds is *missing*. With
      ``allow_partial`` the others are emitted without it (``SyncedSet.missing``); otherwise
      nothing is emitted and :meth:`missing_sources` says who is waited for.
    * ``missing_needs_activity``: a silent source only counts as missing while the others keep
      arriving (one of them arrived again after having arrived more than ``missing_timeout``
      after the silent source's last message). Without it, after a pause of all sources longer
      than ``missing_timeout`` (paused bag, slow lock-step publisher) the first message to
      arrive is emitted alone and the rest of its set is then rejected as out of order.
    """

    def __init__(
        self,
        names: list[str] | tuple[str, ...],
        tolerance: float = 0.05,
        queue_size: int = 4,
        missing_timeout: float = 1.0,
        allow_partial: bool = False,
        missing_needs_activity: bool = False,
    ) -> None:
        if not names:
            raise ValueError("need at least one source")
        if tolerance < 0 or queue_size < 1 or missing_timeout <= 0:
            raise ValueError("tolerance >= 0, queue_size >= 1, missing_timeout > 0 required")
        self.names = tuple(names)
        self.tolerance = float(tolerance)
        self.queue_size = int(queue_size)
        self.missing_timeout = float(missing_timeout)
        self.allow_partial = bool(allow_partial)
        self.missing_needs_activity = bool(missing_needs_activity)
        self.stats = SyncStats()
        self._src = {n: _Source() for n in self.names}
        self._last_emitted = float("-inf")
        self._lock = threading.Lock()
        self._started: float | None = None
        self.stamp_clock = float("-inf")  # newest stamp offered through add_stamped (s)

    def missing_sources(self, now: float) -> tuple[str, ...]:
        """Sources with no arrival within ``missing_timeout`` of ``now``."""
        with self._lock:
            return self._missing(now)

    def _missing(self, now: float) -> tuple[str, ...]:
        if self._started is None:
            return ()
        out = []
        for n, s in self._src.items():
            ref = s.last_arrival if s.last_arrival is not None else self._started
            if now - ref <= self.missing_timeout:
                continue
            if self.missing_needs_activity and not any(
                o.prev_arrival is not None and o.prev_arrival - ref > self.missing_timeout
                for m, o in self._src.items() if m != n
            ):
                continue
            out.append(n)
        return tuple(out)

    def add(self, name: str, stamp: float, item: T, now: float) -> SyncedSet[T] | None:
        """Offer one message; returns a set when one completes."""
        with self._lock:
            self.stats.received += 1
            if self._started is None:
                self._started = now
            src = self._src.get(name)
            if src is None:
                self.stats.unknown_source += 1
                return None
            src.prev_arrival, src.last_arrival = src.last_arrival, now
            if stamp <= self._last_emitted or (src.queue and stamp <= src.queue[-1][0]):
                self.stats.out_of_order += 1
                return None
            src.queue.append((stamp, item))
            while len(src.queue) > self.queue_size:
                src.queue.popleft()
                self.stats.evicted += 1
            return self._try_emit(now)

    def add_stamped(self, name: str, stamp: float, item: T) -> SyncedSet[T] | None:
        """:meth:`add` clocked by the stamps themselves: ``now`` is the newest stamp offered so
        far (:attr:`stamp_clock`), so wall time, CPU load and a paused or slowed replay play no
        part in who counts as missing (pair with ``missing_needs_activity``)."""
        with self._lock:
            self.stamp_clock = max(self.stamp_clock, stamp)
            now = self.stamp_clock
        return self.add(name, stamp, item, now)

    def poll(self, now: float) -> SyncedSet[T] | None:
        """Emit a partial set if a source has gone missing (call periodically)."""
        with self._lock:
            return self._try_emit(now)

    def _try_emit(self, now: float) -> SyncedSet[T] | None:
        missing = self._missing(now) if self.allow_partial else ()
        active = [n for n in self.names if n not in missing]
        if not active or any(not self._src[n].queue for n in active):
            return None
        # Candidate reference stamps: newest first, over all active queues.
        candidates = sorted({s for n in active for s, _ in self._src[n].queue}, reverse=True)
        for ref in candidates:
            chosen: dict[str, tuple[float, Any]] = {}
            for n in active:
                best = min(self._src[n].queue, key=lambda e, r=ref: abs(e[0] - r))
                if abs(best[0] - ref) > self.tolerance:
                    break
                chosen[n] = best
            else:
                return self._emit(ref, chosen, missing)
        return None

    def _emit(self, ref: float, chosen: dict, missing: tuple[str, ...]) -> SyncedSet[T]:
        stamp = max(s for s, _ in chosen.values())
        for n, q in ((n, self._src[n].queue) for n in self.names):
            before = len(q)
            kept = deque(e for e in q if e[0] > stamp)
            used = 1 if n in chosen else 0
            self.stats.evicted += max(0, before - len(kept) - used)
            self._src[n].queue = kept
        self._last_emitted = stamp
        self.stats.emitted_sets += 1
        if missing:
            self.stats.partial_sets += 1
        return SyncedSet(
            stamp=stamp,
            items={n: e[1] for n, e in chosen.items()},
            stamps={n: e[0] for n, e in chosen.items()},
            missing=missing,
        )


class LatestSlot(Generic[T]):
    """Single-slot, latest-wins hand-off between a producer (callbacks) and a consumer thread.

    ``put`` never blocks; an item not yet taken is replaced and counted in ``dropped``.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self._has = False
        self._closed = False
        self.put_count = 0
        self.dropped = 0

    def put(self, item: T) -> bool:
        """Store ``item``; returns True when it replaced an unconsumed one."""
        with self._cond:
            replaced = self._has
            if replaced:
                self.dropped += 1
            self._item, self._has = item, True
            self.put_count += 1
            self._cond.notify()
            return replaced

    def take(self, timeout: float | None = None) -> T | None:
        """Wait up to ``timeout`` s for an item; None on timeout or when closed."""
        with self._cond:
            if not self._has and not self._closed:
                self._cond.wait(timeout)
            if not self._has:
                return None
            item, self._item, self._has = self._item, None, False
            return item

    def close(self) -> None:
        """Wake any waiting consumer; subsequent ``take`` returns None when empty."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
