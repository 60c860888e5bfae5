"""``lss-bev-bag play``: publish a rosbag2 bag into the live ROS 2 graph (rclpy).

Messages keep their recorded spacing scaled by ``1 / rate``. CDR bytes from the bag become rclpy
messages with ``rclpy.serialization.deserialize_message`` (exact, no pickle; a corrupt record is
reported, counted and skipped), or with ``raw=True`` go to the wire untouched via
``Publisher.publish(bytes)``. Topics recorded with transient-local QoS (``/tf_static``) are
published latched; ``clock=True`` publishes ``/clock`` (rosgraph_msgs/Clock) with bag time.
"""

from __future__ import annotations

import importlib
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message

from rosbag_tools.bagio import CLOCK_TOPIC, BagToolError, is_latched, iter_raw, open_bag


def message_class(msgtype: str) -> type:
    """``sensor_msgs/msg/Image`` -> the rclpy message class (clear error when not installed)."""
    parts = msgtype.split("/")
    if len(parts) == 2:  # pkg/Type (ROS 1 style)
        parts = [parts[0], "msg", parts[1]]
    if len(parts) != 3:
        raise BagToolError(f"cannot parse message type {msgtype!r}")
    pkg, sub, name = parts
    try:
        return getattr(importlib.import_module(f"{pkg}.{sub}"), name)
    except (ImportError, AttributeError) as exc:
        raise BagToolError(
            f"message type {msgtype} is not available in this ROS 2 environment ({exc}); "
            f"install its interface package or exclude the topic with --topics"
        ) from exc


@dataclass
class PlayStats:
    """What a play run did."""

    published: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    skipped_topics: dict[str, str] = field(default_factory=dict)
    loops: int = 0
    wall_s: float = 0.0
    bag_span_s: float = 0.0
    max_lag_ms: float = 0.0  # worst lateness of a publish versus its scheduled wall time

    @property
    def total(self) -> int:
        return sum(self.published.values())


class BagPlayer:
    """Replays a bag through publishers created on ``node``.

    ``run()`` blocks until the bag ends (or ``stop()``); ``start()`` runs it in a thread. The node
    must be spun by an executor elsewhere only if it also has subscriptions/timers: publishing
    needs no spinning.
    """

    def __init__(
        self,
        node: Node,
        bag: str | Path,
        rate: float = 1.0,
        loop: bool = False,
        topics: list[str] | None = None,
        clock: bool = False,
        clock_hz: float = 40.0,
        delay_s: float = 0.0,
        raw: bool = False,
        qos_depth: int = 10,
        wait_for_subscribers_s: float = 0.0,
    ) -> None:
        if not rate > 0:
            raise BagToolError(f"rate must be > 0, got {rate}")
        if clock and not clock_hz > 0:
            raise BagToolError(f"clock_hz must be > 0, got {clock_hz}")
        self.node = node
        self.bag = Path(bag)
        self.rate = float(rate)
        self.loop = loop
        self.topics = list(topics) if topics else None
        self.clock = clock
        self.clock_hz = clock_hz
        self.delay_s = delay_s
        self.raw = raw
        self.qos_depth = qos_depth
        self.wait_for_subscribers_s = wait_for_subscribers_s
        self.stats = PlayStats()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pubs: dict[str, tuple[object, type]] = {}
        self._clock_pub = None
        self._clock_cls = None
        self._last_clock_ns = 0
        self.error: BaseException | None = None

    # -------------------------------------------------------------------------------- control
    def start(self) -> threading.Thread:
        """Run in a background thread (exceptions are kept in ``self.error``)."""

        def target() -> None:
            try:
                self.run()
            except BaseException as exc:
                self.error = exc
                self.node.get_logger().error(f"bag play failed: {exc}")

        self._thread = threading.Thread(target=target, name="bag_player", daemon=True)
        self._thread.start()
        return self._thread

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> PlayStats:
        if self._thread is not None:
            self._thread.join(timeout)
        if self.error is not None:
            raise self.error
        return self.stats

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -------------------------------------------------------------------------------- internals
    def _qos(self, latched: bool) -> QoSProfile:
        return QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=1 if latched else self.qos_depth,
            reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE,
        )

    def _make_publishers(self, connections) -> None:
        log = self.node.get_logger()
        for conn in connections:
            if conn.topic in self._pubs or conn.topic in self.stats.skipped_topics:
                continue
            if self.topics is not None and conn.topic not in self.topics:
                continue
            try:
                cls = message_class(conn.msgtype)
            except BagToolError as exc:
                self.stats.skipped_topics[conn.topic] = str(exc)
                log.warning(f"skipping {conn.topic}: {exc}")
                continue
            pub = self.node.create_publisher(cls, conn.topic, self._qos(is_latched(conn)))
            self._pubs[conn.topic] = (pub, cls)
        if self.clock and self._clock_pub is None:
            from rosgraph_msgs.msg import Clock

            self._clock_cls = Clock
            self._clock_pub = self.node.create_publisher(Clock, CLOCK_TOPIC, 10)

    def _publish_clock(self, t_ns: int) -> None:
        """Publish bag time ``t_ns`` on /clock (never backwards within one loop)."""
        from builtin_interfaces.msg import Time

        t_ns = max(t_ns, self._last_clock_ns)
        self._last_clock_ns = t_ns
        msg = self._clock_cls()
        msg.clock = Time(sec=int(t_ns // 1_000_000_000), nanosec=int(t_ns % 1_000_000_000))
        self._clock_pub.publish(msg)

    def _wait_until(self, wall_target: float, bag_t0: int, wall0: float, t_next: int) -> bool:
        """Sleep until ``wall_target`` (monotonic s), publishing /clock (bag time, capped at the
        next message's ``t_next``); False when stopped."""
        period = 1.0 / self.clock_hz if self.clock else 0.05
        next_clock = time.monotonic()
        while True:
            now = time.monotonic()
            if self._stop.is_set():
                return False
            if self.clock and now >= next_clock:
                self._publish_clock(min(bag_t0 + int((now - wall0) * self.rate * 1e9), t_next))
                next_clock = now + period
            remaining = wall_target - now
            if remaining <= 0:
                return True
            self._stop.wait(min(remaining, max(next_clock - now, 0.0) if self.clock else period))

    def _wait_for_subscribers(self) -> None:
        deadline = time.monotonic() + self.wait_for_subscribers_s
        while time.monotonic() < deadline and not self._stop.is_set():
            if all(p.get_subscription_count() > 0 for p, _ in self._pubs.values()):
                return
            time.sleep(0.02)

    def run(self) -> PlayStats:
        """Play the bag (all loops); returns the statistics."""
        log = self.node.get_logger()
        start_wall = time.monotonic()
        with open_bag(self.bag) as reader:
            self._make_publishers(reader.connections)
            if not self._pubs:
                raise BagToolError(
                    f"nothing to play: none of {self.topics} in bag "
                    f"(has {sorted({c.topic for c in reader.connections})})"
                    if self.topics else "nothing to play: bag has no playable topics"
                )
            topics = list(self._pubs)
            if self.wait_for_subscribers_s > 0:
                self._wait_for_subscribers()
            if self.delay_s > 0:
                self._stop.wait(self.delay_s)
            while not self._stop.is_set():
                bag_t0: int | None = None
                wall0 = time.monotonic()
                self._last_clock_ns = 0  # a new loop may jump back, like ros2 bag play --loop
                for conn, t_ns, raw in iter_raw(reader, topics):
                    if bag_t0 is None:
                        bag_t0 = t_ns
                        wall0 = time.monotonic()
                    target = wall0 + (t_ns - bag_t0) * 1e-9 / self.rate
                    if not self._wait_until(target, bag_t0, wall0, t_ns):
                        break
                    lag = (time.monotonic() - target) * 1e3
                    self.stats.max_lag_ms = max(self.stats.max_lag_ms, lag)
                    if self.clock:
                        self._publish_clock(t_ns)
                    pub, cls = self._pubs[conn.topic]
                    try:
                        data = bytes(raw)
                        pub.publish(data if self.raw else deserialize_message(data, cls))
                    except Exception as exc:
                        self.stats.errors[conn.topic] = self.stats.errors.get(conn.topic, 0) + 1
                        log.warning(f"{conn.topic} @ {t_ns} ns: cannot publish record: {exc}")
                        continue
                    self.stats.published[conn.topic] = self.stats.published.get(conn.topic, 0) + 1
                    self.stats.bag_span_s = max(self.stats.bag_span_s, (t_ns - bag_t0) * 1e-9)
                self.stats.loops += 1
                if not self.loop or bag_t0 is None:
                    break
        self.stats.wall_s = time.monotonic() - start_wall
        return self.stats

    def flush(self, timeout_s: float = 2.0) -> bool:
        """Wait (up to ``timeout_s`` in all) until reliable subscribers acknowledged everything
        published; without it, a process that exits right after the last record can take that
        record with it (seen on a loaded machine). True when all was acknowledged."""
        from rclpy.duration import Duration

        deadline = time.monotonic() + timeout_s
        ok = True
        for pub, _ in list(self._pubs.values()):
            left = max(0.0, deadline - time.monotonic())
            try:
                ok = pub.wait_for_all_acked(Duration(nanoseconds=int(left * 1e9))) and ok
            except Exception:  # an RMW without the call: nothing to wait for
                return ok
        return ok

    def destroy(self) -> None:
        """Destroy the publishers this player created."""
        for pub, _ in self._pubs.values():
            self.node.destroy_publisher(pub)
        if self._clock_pub is not None:
            self.node.destroy_publisher(self._clock_pub)
        self._pubs.clear()
        self._clock_pub = None


def play_main(
    bag: str | Path,
    rate: float = 1.0,
    loop: bool = False,
    topics: list[str] | None = None,
    clock: bool = False,
    clock_hz: float = 40.0,
    delay_s: float = 0.0,
    raw: bool = False,
    wait_for_subscribers_s: float = 0.0,
) -> PlayStats:
    """CLI body: own rclpy context + node ``lss_bev_bag_player``; Ctrl-C stops cleanly."""
    import rclpy

    rclpy.init()
    node = rclpy.create_node("lss_bev_bag_player")
    player = BagPlayer(node, bag, rate=rate, loop=loop, topics=topics, clock=clock,
                       clock_hz=clock_hz, delay_s=delay_s, raw=raw,
                       wait_for_subscribers_s=wait_for_subscribers_s)
    try:
        player.start()
        while player.running:
            player._thread.join(0.2)
        stats = player.join()
        if not player.flush():
            node.get_logger().warning("not every reliable subscriber acknowledged the last "
                                      "records within 2 s")
        return stats
    except KeyboardInterrupt:
        player.stop()
        return player.join(5.0)
    finally:
        player.destroy()
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
