"""Shared pytest set-up: keep DDS on this machine, a distinct ROS domain per test session,
helpers for real-DDS tests (a fresh rclpy context per test), and the ``ros`` marker: the tests
that .ci/run repeats on the second ROS 2 distro (``pytest -m ros``)."""

from __future__ import annotations

import ast
import functools
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
FIRST_PARTY = ("lss_bev_ros", "rosbag_tools")
ROS_TOP_MODULES = {"rclpy", "builtin_interfaces", "rosidl_runtime_py", "ament_index_python"}


def _import_names(node: ast.AST) -> set[str]:
    """Modules one import statement names: ``from a.b import c`` gives a.b and a.b.c."""
    if isinstance(node, ast.Import):
        return {a.name for a in node.names}
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        return {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return set()


@functools.cache
def _imported(path: Path, at_import_time: bool = False) -> frozenset[str]:
    """Modules that import statements in ``path`` name: at any level (lazy imports in functions
    too), or with ``at_import_time`` only those that run when the module is imported."""
    out: set[str] = set()
    todo: list[ast.AST] = [ast.parse(path.read_text(), str(path))]
    while todo:
        node = todo.pop()
        out |= _import_names(node)
        for child in ast.iter_child_nodes(node):
            if not (at_import_time and isinstance(
                    child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))):
                todo.append(child)
    return frozenset(out)


def _is_ros_module(name: str) -> bool:
    """rclpy, a ROS interface package (``*_msgs``, ``*_interfaces``) or our own messages."""
    top = name.split(".", maxsplit=1)[0]
    return (top in ROS_TOP_MODULES or top.endswith(("_msgs", "_interfaces"))
            or name == "lss_bev_ros.msg" or name.startswith("lss_bev_ros.msg."))


def _names_any_of(names: frozenset[str] | set[str], modules: frozenset[str] | set[str]) -> bool:
    """Whether one of ``names`` is one of ``modules`` or inside one (a package's __init__ runs)."""
    return any(".".join(n.split(".")[:i]) in modules
               for n in names for i in range(1, n.count(".") + 2))


@functools.cache
def _ros_glue_modules() -> frozenset[str]:
    """Our modules that touch ROS: those that import it themselves (at any level), and those
    that import one of these when they are imported (module level, transitively). A lazy import
    of a ROS-touching module inside a function does not spread (visualization's colour table)."""
    paths = {}
    for root in FIRST_PARTY:
        for p in (REPO / root).rglob("*.py"):
            paths[".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")] = p
    glue = {m for m, p in paths.items() if any(map(_is_ros_module, _imported(p)))}
    grown = True
    while grown:
        new = {m for m, p in paths.items()
               if m not in glue and _names_any_of(_imported(p, True), glue)}
        glue |= new
        grown = bool(new)
    return frozenset(glue)


@functools.cache
def touches_ros(test_file: Path) -> bool:
    """A test module touches ROS when it, or a helper module of its own directory that it
    imports (``from web_testutil import ...``), imports rclpy, a ROS interface package, our
    messages, or one of our modules that does (see _ros_glue_modules)."""
    names = set(_imported(test_file))
    for name in list(names):
        helper = test_file.parent / f"{name.split('.', maxsplit=1)[0]}.py"
        if helper != test_file and helper.is_file():
            names |= _imported(helper)
    return any(map(_is_ros_module, names)) or _names_any_of(names, _ros_glue_modules())


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``ros`` every test that touches ROS (touches_ros), requests ``ros_context``, or is
    marked so by its module (launch/config/install-space agreement checks)."""
    for item in items:
        if "ros_context" in getattr(item, "fixturenames", ()) or touches_ros(item.path):
            item.add_marker(pytest.mark.ros)


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
