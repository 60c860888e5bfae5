"""Fixtures of the hostile-input tests: a test-side DDS listener and node processes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fuzz_testutil import Listener, NodeProcess


@pytest.fixture
def listener(ros_context: Any) -> Iterator[Listener]:
    lis = Listener(ros_context)
    try:
        yield lis
    finally:
        lis.close()


@pytest.fixture
def start_nodes(tmp_path: Path) -> Iterator[Callable[[dict[str, Any]], NodeProcess]]:
    procs: list[NodeProcess] = []

    def start(params: dict[str, Any]) -> NodeProcess:
        procs.append(NodeProcess(params, tmp_path))
        return procs[-1]

    try:
        yield start
    finally:
        for p in procs:
            p.stop()
