"""Multi-camera stamp synchronisation and the latest-wins hand-off to an inference thread.

``message_filters`` (ApproximateTime) is not installable from PyPI; :class:`StampSynchronizer` is
the replacement every node and the offline evaluation use. Times are seconds (float) of the
messages' header stamps; no wall clock is involved, so live input, a paused / slowed / CPU-starved
replay and an offline pass over a bag give the same sets.

How a camera is judged (each judgement names the camera and is returned as a :class:`SyncEvent`):

* **ok**: its images lie within ``tolerance`` of the others' stamps; every set waits for it.
* **late**: its image for a set had not arrived when the set's deadline passed (the stamp clock
  ``missing_timeout`` beyond the set's stamp): the set went on without it (``camera_late`` when
  the image turns up afterwards). A camera that delivers before the deadline is never masked.
* **offset**: it delivers, but for ``OFFSET_AFTER_SETS`` consecutive sets its nearest stamp was
  the same amount (more than ``tolerance``) away from the set's: a clock offset or a constant
  delay. Sets no longer wait for it; it is back as soon as one of its stamps agrees again. A
  stamp more than ``time_jump`` ahead of the others (a camera clock a day off) is an offset at
  once, and never moves the stamp clock.
* **missing**: it has sent nothing while the others' stamps moved on by ``missing_timeout`` and a
  set went on without it. Sets no longer wait for it; it is back with its next image.

The stamp clock (:attr:`StampSynchronizer.stamp_clock`) is the upper median of the cameras'
newest stamps, so one camera with a wrong clock cannot drag it. A stamp more than ``time_jump``
older than a camera's own newest means that camera restarted; when more than half of the cameras
did (a looped or restarted bag) synchronisation restarts (``time_jump`` event) instead of
rejecting everything as out of order. With ``allow_partial`` False (policy "wait") only complete
sets are emitted.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from typing import Generic, TypeVar

T = TypeVar("T")

OFFSET_AFTER_SETS = 3
"""Consecutive sets a delivering camera must miss by the same stamp offset to be an *offset*."""

RECENT_SETS = 16
"""Stamps of the last emitted sets kept to recognise a late image or a camera back in step."""


class CameraState(Enum):
    """How the synchroniser currently treats one camera (see the module docstring)."""

    OK = "ok"
    OFFSET = "offset"
    MISSING = "missing"


@dataclass
class SyncStats:
    """Counters of the synchroniser (all since construction; survive :meth:`restart`)."""

    received: int = 0
    emitted_sets: int = 0
    partial_sets: int = 0
    out_of_order: int = 0  # stamp not newer than the camera's last one (small step back)
    late: int = 0  # image arrived after its set had gone on without it
    unknown_source: int = 0
    evicted: int = 0  # queued messages that never became part of a set
    superseded_sets: int = 0  # older pending sets dropped because a newer one completed
    time_jumps: int = 0


@dataclass(frozen=True)
class SyncEvent:
    """Something a caller should report: ``kind`` is the diagnostics key."""

    kind: str  # out_of_order | camera_late | camera_offset | camera_missing | camera_back |
    #            time_jump | unknown_source | camera_restarted
    source: str  # the camera at fault ("" for the whole rig)
    message: str


@dataclass(frozen=True)
class SyncedSet(Generic[T]):
    """One synchronised set: ``items[name]`` for every present camera."""

    stamp: float  # reference stamp (s): the newest stamp in the set
    items: dict[str, T]
    stamps: dict[str, float]
    missing: tuple[str, ...] = ()  # cameras of the rig not in this set

    @property
    def spread(self) -> float:
        """Max minus min stamp in the set (s)."""
        s = list(self.stamps.values())
        return max(s) - min(s) if s else 0.0


@dataclass
class _Camera(Generic[T]):
    queue: deque[tuple[float, T]] = field(default_factory=deque)
    head: float = -math.inf  # newest accepted stamp (s)
    arrival_clock: float | None = None  # stamp clock when it last delivered
    state: CameraState = CameraState.OK
    offsets: deque[float] = field(default_factory=lambda: deque(maxlen=OFFSET_AFTER_SETS))
    offset_s: float = 0.0  # the estimated offset while state is OFFSET
    deltas: deque[float] = field(default_factory=lambda: deque(maxlen=8))  # stamp steps (s)
    ahead: bool = False  # offset because its images arrive stamped ahead of the others'
    restarted: bool = False  # its stamps jumped back by more than time_jump, alone so far
    held: deque[tuple[float, T]] = field(default_factory=deque)  # its messages since then


class StampSynchronizer(Generic[T]):
    """Group the images of ``names`` whose header stamps lie within ``tolerance`` seconds.

    Call :meth:`add_stamped` for every message; it returns the newest set completed by it (an
    older pending set superseded by a newer complete one is dropped and counted). Read what
    happened with :meth:`pop_events`. Thread-safe.
    """

    def __init__(
        self,
        names: list[str] | tuple[str, ...],
        tolerance: float = 0.05,
        queue_size: int = 64,
        missing_timeout: float = 1.0,
        allow_partial: bool = False,
        time_jump: float = 5.0,
    ) -> None:
        if not names:
            raise ValueError("need at least one source")
        if len(set(names)) != len(names):
            raise ValueError(f"source names must be unique: {list(names)}")
        if tolerance < 0 or queue_size < 1 or missing_timeout <= 0 or time_jump <= 0:
            raise ValueError("tolerance >= 0, queue_size >= 1, missing_timeout > 0 and "
                             "time_jump > 0 required")
        self.names = tuple(names)
        self.tolerance = float(tolerance)
        self.queue_size = int(queue_size)
        self.missing_timeout = float(missing_timeout)
        self.allow_partial = bool(allow_partial)
        self.time_jump = float(time_jump)
        self.stats = SyncStats()
        self._lock = threading.Lock()
        self._events: list[SyncEvent] = []
        self._reset_state()

    def _reset_state(self) -> None:
        self._cams: dict[str, _Camera[T]] = {n: _Camera() for n in self.names}
        self._recent: deque[float] = deque(maxlen=RECENT_SETS)  # emitted set stamps
        self._last_emitted = -math.inf
        self._first_clock: float | None = None
        self.stamp_clock = -math.inf

    # ---- state ---------------------------------------------------------------------------
    def restart(self) -> None:
        """Forget all queued messages and camera judgements (counters are kept)."""
        with self._lock:
            self._reset_state()

    def states(self) -> dict[str, CameraState]:
        """Current judgement per camera."""
        with self._lock:
            return {n: c.state for n, c in self._cams.items()}

    def missing_sources(self) -> tuple[str, ...]:
        """Cameras judged missing (sent nothing while the others moved on)."""
        with self._lock:
            return tuple(n for n, c in self._cams.items() if c.state is CameraState.MISSING)

    def offset_sources(self) -> dict[str, float]:
        """Cameras judged offset -> their estimated stamp offset (s, + = ahead)."""
        with self._lock:
            return {n: c.offset_s for n, c in self._cams.items()
                    if c.state is CameraState.OFFSET}

    def pop_events(self) -> list[SyncEvent]:
        """Events since the last call (oldest first)."""
        with self._lock:
            out, self._events = self._events, []
            return out

    # ---- input ---------------------------------------------------------------------------
    def add_stamped(self, name: str, stamp: float, item: T) -> SyncedSet[T] | None:
        """Offer one message stamped ``stamp`` (s); returns the newest set it completed."""
        with self._lock:
            self.stats.received += 1
            return self._add(name, float(stamp), item)

    def _add(self, name: str, stamp: float, item: T) -> SyncedSet[T] | None:
        cam = self._cams.get(name)
        if cam is None:
            self.stats.unknown_source += 1
            self._event("unknown_source", name, f"{name}: not one of {list(self.names)}")
            return None
        if not math.isfinite(stamp):
            self.stats.out_of_order += 1
            self._event("out_of_order", name, f"{name}: non-finite stamp {stamp}")
            return None
        if stamp < cam.head - self.time_jump:
            return self._jumped_back(name, cam, stamp, item)
        if stamp <= cam.head:
            self.stats.out_of_order += 1
            self._event("out_of_order", name, f"{name}: stamp {stamp:.6f} is not newer than "
                        f"its previous {cam.head:.6f}; dropped")
            return None
        if cam.head > -math.inf:
            cam.deltas.append(stamp - cam.head)
        # stamped ahead of the others by more than a wait and more than 1.5 frame periods (a
        # camera that is merely first with a new frame is up to one period ahead)
        ahead = stamp - self._clock(exclude=name)
        if math.isfinite(ahead) and ahead > max(self.missing_timeout, 1.5 * self._period()):
            self._offset_sample(name, cam, ahead, arrival=True)  # stamped in the future
        elif cam.ahead:
            cam.ahead = False  # no longer ahead of the others: may rejoin
        cam.head = stamp
        self.stamp_clock = self._clock()
        cam.arrival_clock = self.stamp_clock
        if self._first_clock is None:
            self._first_clock = self.stamp_clock
        if cam.restarted:  # its clock jumped back alone: held until the others follow
            cam.held.append((stamp, item))
            behind = stamp - self._clock(exclude=name)
            if math.isfinite(behind):
                self._offset_sample(name, cam, behind)
            return None
        if cam.state is CameraState.MISSING:
            cam.state = CameraState.OK
            cam.offsets.clear()
            self._event("camera_back", name, f"{name}: images again")
        if stamp <= self._last_emitted:
            self._late(name, cam, stamp)
            return None
        cam.queue.append((stamp, item))
        out = self._emit_all()
        self._evict()
        return out

    def _evict(self) -> None:
        """Drop what can no longer join a set: older than the wait, or over ``queue_size``."""
        horizon = self.stamp_clock - self.missing_timeout - self.tolerance
        for cam in self._cams.values():
            while cam.queue and (cam.queue[0][0] < horizon or len(cam.queue) > self.queue_size):
                cam.queue.popleft()
                self.stats.evicted += 1

    # ---- internals (lock held) -------------------------------------------------------------
    def _event(self, kind: str, source: str, message: str) -> None:
        self._events.append(SyncEvent(kind, source, message))

    def _clock(self, exclude: str | None = None, restarted: bool = True) -> float:
        """Upper median of the newest stamps (of cameras other than ``exclude``; without the
        cameras whose clock jumped back unless ``restarted``)."""
        heads = sorted(c.head for n, c in self._cams.items()
                       if n != exclude and c.head > -math.inf and (restarted or not c.restarted))
        return heads[len(heads) // 2] if heads else -math.inf

    def _period(self) -> float:
        """Median frame period of the cameras (s; 0 before any)."""
        d = sorted(x for c in self._cams.values() for x in c.deltas)
        return d[len(d) // 2] if d else 0.0

    def _jumped_back(self, name: str, cam: _Camera[T], stamp: float, item: T
                     ) -> SyncedSet[T] | None:
        """``name``'s stamp went back by more than ``time_jump`` from its newest."""
        others = self._clock(exclude=name, restarted=False)
        if others > -math.inf and abs(stamp - others) <= self.time_jump:
            # back in step with the others (they restarted first): a fresh start for it
            self._cams[name] = _Camera()
            return self._add(name, stamp, item)
        fresh: _Camera[T] = _Camera(restarted=True)
        self._cams[name] = fresh
        fresh.held = deque([*cam.held, (stamp, item)], maxlen=self.queue_size)
        restarted = [n for n, c in self._cams.items() if c.restarted]
        if 2 * len(restarted) <= len(self.names):
            self._event("camera_restarted", name, (
                f"{name}: stamp {stamp:.3f} is {cam.head - stamp:.1f} s older than its previous "
                "one while most cameras went on; held until they follow (a looped bag) or "
                "judged as an offset"))
            fresh.head = stamp
            return None
        self.stats.time_jumps += 1
        self._event("time_jump", "", (
            f"stamps of {len(restarted)} of {len(self.names)} cameras went back by more than "
            f"{self.time_jump:g} s (bag looped or restarted): synchronisation restarted"))
        replay = sorted(((s, n, it) for n in restarted for s, it in self._cams[n].held),
                        key=lambda e: e[0])
        self._reset_state()
        newest: SyncedSet[T] | None = None
        for s, n, it in replay:
            newest = self._add(n, s, it) or newest
        return newest

    def _late(self, name: str, cam: _Camera[T], stamp: float) -> None:
        """An image not newer than the last emitted set: late for its set, or out of step."""
        near = [s for s in self._recent if abs(s - stamp) <= self.tolerance]
        lateness = self.stamp_clock - stamp
        if near and cam.state is CameraState.OFFSET and not cam.ahead \
                and lateness <= self.missing_timeout:
            cam.state = CameraState.OK  # in step (and in time) again: waited for from now on
            cam.offsets.clear()
            self._event("camera_back", name, f"{name}: stamps agree with the others again")
        elif near:
            self.stats.late += 1
            self._offset_sample(name, cam, stamp - self.stamp_clock)
            self._event("camera_late", name, (
                f"{name}: image stamped {stamp:.3f} arrived after its set had gone on without "
                f"it ({self.stamp_clock - stamp:.2f} s of stamps later; the wait is "
                f"missing_timeout {self.missing_timeout:g} s)"))
        else:
            self.stats.out_of_order += 1
            self._event("out_of_order", name, f"{name}: stamp {stamp:.6f} is older than the "
                        f"last set ({self._last_emitted:.6f}) and matches none; dropped")

    def _set_offset(self, name: str, cam: _Camera[T], offset: float) -> None:
        cam.state = CameraState.OFFSET
        cam.offsets.clear()
        cam.offset_s = offset
        self._event("camera_offset", name, (
            f"{name}: its stamps are {offset:+.3f} s off the other cameras' (sync_tolerance_s "
            f"{self.tolerance:g}): a clock offset or a constant delay; sets go on without it "
            "until its stamps agree again"))

    def _expected(self) -> list[str]:
        return [n for n, c in self._cams.items() if c.state is CameraState.OK]

    def _emit_all(self) -> SyncedSet[T] | None:
        newest: SyncedSet[T] | None = None
        while (s := self._try_emit()) is not None:
            if newest is not None:
                self.stats.superseded_sets += 1
            newest = s
        return newest

    def _try_emit(self) -> SyncedSet[T] | None:
        expected = self._expected()
        if not expected:
            return None
        partial_ok = self.allow_partial or len(expected) == len(self.names)
        refs = sorted({s for n in expected for s, _ in self._cams[n].queue}, reverse=True)
        for ref in refs:
            chosen = self._match(ref, expected)
            if len(chosen) == len(expected) and partial_ok:
                return self._emit(chosen, ref)
            if self.stamp_clock - ref <= self.missing_timeout:
                continue  # still waiting for this one
            if self.allow_partial and 2 * len(chosen) > len(expected):
                return self._emit(chosen, ref)
            if not self.allow_partial:  # policy wait: say who is waited for
                for n in expected:
                    if n not in chosen:
                        self._judge_absent(n, self._cams[n], ref, offsets=False)
                return None
        return None

    def _match(self, ref: float, names: list[str]) -> dict[str, tuple[float, T]]:
        chosen: dict[str, tuple[float, T]] = {}
        for n in names:
            q = self._cams[n].queue
            if q:
                best = min(q, key=lambda e: abs(e[0] - ref))
                if abs(best[0] - ref) <= self.tolerance:
                    chosen[n] = best
        return chosen

    def _emit(self, chosen: dict[str, tuple[float, T]], ref: float) -> SyncedSet[T]:
        absent = [n for n in self._expected() if n not in chosen]
        back = [n for n, c in self._cams.items() if c.state is not CameraState.OK
                and not c.ahead]
        for n, e in self._match(ref, back).items():  # an excluded camera in step again
            chosen[n] = e
            self._cams[n].state = CameraState.OK
            self._cams[n].offsets.clear()
            self._event("camera_back", n, f"{n}: stamps agree with the others again")
        stamp = max(s for s, _ in chosen.values())
        for n, cam in self._cams.items():
            before = len(cam.queue)
            cam.queue = deque(e for e in cam.queue if e[0] > stamp)
            self.stats.evicted += max(0, before - len(cam.queue) - (1 if n in chosen else 0))
            if n in chosen:
                cam.offsets.clear()
        for n in absent:
            self._judge_absent(n, self._cams[n], stamp)
        self._last_emitted = stamp
        self._recent.append(stamp)
        self.stats.emitted_sets += 1
        missing = tuple(n for n in self.names if n not in chosen)
        if missing:
            self.stats.partial_sets += 1
        return SyncedSet(stamp=stamp, items={n: e[1] for n, e in chosen.items()},
                         stamps={n: e[0] for n, e in chosen.items()}, missing=missing)

    def _judge_absent(self, name: str, cam: _Camera[T], stamp: float,
                      offsets: bool = True) -> None:
        """``name`` was waited for and missed the set at ``stamp``: missing, offset or late."""
        silent_since = cam.arrival_clock if cam.arrival_clock is not None else self._first_clock
        if cam.head < stamp - self.tolerance and silent_since is not None \
                and self.stamp_clock - silent_since > self.missing_timeout:
            cam.state = CameraState.MISSING
            self._event("camera_missing", name, (
                f"{name}: no image while the others' stamps moved on by "
                f"{self.stamp_clock - silent_since:.2f} s (> missing_timeout "
                f"{self.missing_timeout:g} s); "
                + ("sets go on without it" if self.allow_partial else "waiting for it")))
            return
        ahead = [s for s, _ in cam.queue if s > stamp] + ([cam.head] if cam.head > stamp else [])
        if offsets and ahead:
            self._offset_sample(name, cam, min(ahead) - stamp)

    def _offset_sample(self, name: str, cam: _Camera[T], offset: float,
                       arrival: bool = False) -> None:
        """One observation of how far ``name``'s stamps are off the others': + ahead (of a
        set when it left, or of the stamp clock on arrival), - behind the stamp clock (late)."""
        cam.offsets.append(offset)
        if len(cam.offsets) < OFFSET_AFTER_SETS or cam.state is not CameraState.OK:
            return
        lo, hi = min(cam.offsets), max(cam.offsets)
        far = max(self.missing_timeout, 1.5 * self._period())
        ahead = (arrival and lo > far) or (lo > self.tolerance and hi - lo <= 2 * self.tolerance)
        if ahead or hi < -self.missing_timeout:
            self._set_offset(name, cam, sum(cam.offsets) / len(cam.offsets))
            cam.ahead = ahead and arrival


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
