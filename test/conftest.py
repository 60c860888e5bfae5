"""Shared pytest set-up: keep DDS on this machine, a distinct ROS domain per test session,
and helpers for real-DDS tests (a fresh rclpy context per test)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
if "LSS_TEST_DOMAIN_FIXED" not in os.environ:
    # distinct per session so parallel runs (CI, developers) never see each other
    os.environ["ROS_DOMAIN_ID"] = str(10 + os.getpid() % 200)
os.environ.setdefault("YOLO_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def ros_context() -> Iterator[object]:
    """A fresh, initialised rclpy Context, shut down after the test."""
    import rclpy
    from rclpy.context import Context

    ctx = Context()
    rclpy.init(context=ctx)
    try:
        yield ctx
    finally:
        if ctx.ok():
            rclpy.shutdown(context=ctx)


def spin_until(executor, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Spin ``executor`` until ``predicate()`` is true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)
        if predicate():
            return True
    return predicate()


@pytest.fixture
def spin() -> Callable[..., bool]:
    return spin_until


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO
