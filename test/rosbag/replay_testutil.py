"""One harness for the live-vs-offline tests: play a bag into a running node set over real DDS
and collect what one topic publishes (not a test module)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rclpy.executors import SingleThreadedExecutor

from rosbag_tools.play import BagPlayer


def replay_and_collect(ctx: Any, pipe: Any, bag: Path, topics: list[str], out_type: type,
                       out_topic: str, rate: float, done: Callable[[list[Any]], bool],
                       settle_s: float = 4.0, timeout_s: float = 180.0) -> list[Any]:
    """Play ``topics`` of ``bag`` at ``rate`` into ``pipe`` (a ``lss_bev_ros.pipeline``
    Pipeline, stopped afterwards) and return the ``out_type`` messages on ``out_topic``, once
    ``done(messages)`` holds and nothing arrived for ``settle_s`` (or after ``timeout_s``)."""
    import rclpy

    node = rclpy.create_node("replay_listener", context=ctx)
    play_node = rclpy.create_node("replay_player", context=ctx)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    got: list[Any] = []
    node.create_subscription(out_type, out_topic, got.append, 100)
    player = BagPlayer(play_node, bag, rate=rate, topics=topics, wait_for_subscribers_s=30.0)
    try:
        player.start()
        while player.running:
            ex.spin_once(timeout_sec=0.1)
        player.join(1.0)
        deadline = time.monotonic() + timeout_s
        last_change, n = time.monotonic(), -1
        while time.monotonic() < deadline:
            ex.spin_once(timeout_sec=0.1)
            if len(got) != n:
                n, last_change = len(got), time.monotonic()
            if done(got) and time.monotonic() - last_change > settle_s:
                break
    finally:
        player.stop()
        player.destroy()
        ex.shutdown()
        node.destroy_node()
        play_node.destroy_node()
        pipe.stop()
    return got


def stamp_of(msg: Any) -> float:
    """Header stamp (s), rounded to the microsecond for use as a key."""
    return round(msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9, 6)
