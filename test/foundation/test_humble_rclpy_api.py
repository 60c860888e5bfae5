"""The package keeps to rclpy APIs that ROS 2 Humble has (no Humble wheels exist to run it here).

Static check (ast) of ``lss_bev_ros/`` and ``rosbag_tools/`` against the rclpy APIs added after
Humble. The lists come from diffing the public names, methods and parameters of ros2/rclpy
branch ``humble`` (b488272, 2024-11-25) against ``jazzy`` (85415f7) and ``rolling`` (ba72a01,
2024-12), plus the installed Kilted wheel (rclpy 9.1.2); see docs/ROS_DISTROS.md for how.
A use guarded by ``hasattr(obj, "name")`` / ``getattr(obj, "name", default)`` in the same module
is allowed (feature detection, e.g. the pre/post-set parameter callbacks in nodes/common.py).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCANNED = ("lss_bev_ros", "rosbag_tools")

# modules that Humble's rclpy does not have: module -> where it comes from / Humble's equivalent
POST_HUMBLE_MODULES: dict[str, str] = {
    "rclpy.event_handler": "Iron (Humble: rclpy.qos_event)",
    "rclpy.clock_type": "Iron (Humble: rclpy.clock.ClockType)",
    "rclpy.destroyable": "Jazzy",
    "rclpy.logging_service": "Iron",
    "rclpy.parameter_client": "Iron",
    "rclpy.parameter_event_handler": "Iron",
    "rclpy.service_introspection": "Iron",
    "rclpy.type_description_service": "Iron",
    "rclpy.type_hash": "Iron",
    "rclpy.experimental": "Kilted (EventsExecutor)",
    "rclpy.subscription_content_filter_options": "Kilted",
}
# module-level names that Humble's module lacks: (module, name) -> first distro
POST_HUMBLE_NAMES: dict[tuple[str, str], str] = {
    ("rclpy", "InitContextManager"): "Kilted",
    ("rclpy.parameter", "parameter_dict_from_yaml_file"): "Iron",
    ("rclpy.parameter", "get_parameter_value"): "Iron (module function)",
    ("rclpy.qos", "qos_profile_best_available"): "Iron",
    ("rclpy.qos", "DeadlineBestAvailable"): "Iron",
    ("rclpy.qos", "LivelinessLeaseDurationeBestAvailable"): "Iron",
    ("rclpy.qos_overriding_options", "QoSProfileAttributes"): "Jazzy",
    ("rclpy.logging", "get_logger_level"): "Iron",
    ("rclpy.timer", "TimerInfo"): "Kilted",
    ("rclpy.subscription", "MessageInfo"): "Jazzy",
}
# method / attribute names that no Humble rclpy class has (checked with git grep -w on humble)
POST_HUMBLE_ATTRS: dict[str, str] = {
    "add_pre_set_parameters_callback": "Node, Iron",
    "add_post_set_parameters_callback": "Node, Iron",
    "remove_pre_set_parameters_callback": "Node, Iron",
    "remove_post_set_parameters_callback": "Node, Iron",
    "count_clients": "Node, Iron",
    "count_services": "Node, Iron",
    "get_fully_qualified_node_names": "Node, Jazzy",
    "wait_for_node": "Node, Jazzy",
    "configure_introspection": "Client/Service, Iron",
    "get_publisher_count": "Subscription, Jazzy",
    "topic_type_hash": "TopicEndpointInfo, Iron",
    "track_node": "Context, Kilted",
    "untrack_node": "Context, Kilted",
    "get_logger_level": "rclpy.logging, Iron",
}
# keyword arguments newer than Humble: (callee name, keyword) -> first distro
POST_HUMBLE_KWARGS: dict[tuple[str, str], str] = {
    ("create_timer", "autostart"): "Jazzy",
    ("Timer", "autostart"): "Jazzy",
    ("call", "timeout_sec"): "Jazzy (Client.call)",
    ("Node", "enable_logger_service"): "Iron",
    ("LifecycleNode", "enable_logger_service"): "Iron",
    ("create_node", "enable_logger_service"): "Iron",
    ("set_logger_level", "detailed_error"): "Iron",
}
# calls whose result is a context manager only after Humble: ``with rclpy.init(): ...``
POST_HUMBLE_WITH_CALLS: dict[str, str] = {
    "init": "Kilted (rclpy.init returns InitContextManager)",
    "Context": "Jazzy",
    "Executor": "Jazzy", "SingleThreadedExecutor": "Jazzy", "MultiThreadedExecutor": "Jazzy",
    "Node": "Kilted", "LifecycleNode": "Kilted", "create_node": "Kilted",
    "create_publisher": "Kilted", "create_subscription": "Kilted", "create_timer": "Kilted",
    "create_service": "Kilted", "create_client": "Kilted",
}


def _name(node: ast.expr) -> str | None:
    """Last name of a callee: ``f`` -> f, ``a.b.f`` -> f."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _dotted(node: ast.expr) -> str | None:
    """``rclpy.a.b`` as a string, None for anything that is not a plain dotted name."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return ".".join([node.id, *reversed(parts)])
    return None


def _feature_checked(tree: ast.AST) -> set[str]:
    """Names given as a string to hasattr()/getattr() in the module (guarded uses)."""
    out = set()
    for n in ast.walk(tree):
        if (isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
                and n.func.id in ("hasattr", "getattr") and len(n.args) >= 2
                and isinstance(n.args[1], ast.Constant) and isinstance(n.args[1].value, str)):
            out.add(n.args[1].value)
    return out


def _module_hit(module: str) -> str | None:
    for m, why in POST_HUMBLE_MODULES.items():
        if module == m or module.startswith(m + "."):
            return f"module {m} ({why})"
    return None


def post_humble_uses(source: str, filename: str = "<src>") -> list[str]:
    """Uses of rclpy APIs newer than Humble in ``source``, as ``line: what (since)`` strings."""
    tree = ast.parse(source, filename)
    guarded = _feature_checked(tree)
    hits: list[str] = []
    for n in ast.walk(tree):
        found: list[str] = []
        if isinstance(n, ast.Import):
            found += [h for a in n.names if (h := _module_hit(a.name))]
        elif isinstance(n, ast.ImportFrom) and n.module and n.level == 0:
            if h := _module_hit(n.module):
                found.append(h)
            for a in n.names:
                if h := _module_hit(f"{n.module}.{a.name}"):
                    found.append(h)
                if (n.module, a.name) in POST_HUMBLE_NAMES:
                    found.append(f"{n.module}.{a.name} ({POST_HUMBLE_NAMES[n.module, a.name]})")
        elif isinstance(n, ast.Attribute):
            dotted = _dotted(n)
            if dotted and dotted.startswith("rclpy."):
                mod, _, name = dotted.rpartition(".")
                if (mod, name) in POST_HUMBLE_NAMES:
                    found.append(f"{dotted} ({POST_HUMBLE_NAMES[mod, name]})")
                elif h := _module_hit(dotted):
                    found.append(h)
            if n.attr in POST_HUMBLE_ATTRS and n.attr not in guarded:
                found.append(f".{n.attr} ({POST_HUMBLE_ATTRS[n.attr]})")
        elif isinstance(n, ast.Call):
            callee = _name(n.func)
            for kw in n.keywords:
                if (callee, kw.arg) in POST_HUMBLE_KWARGS:
                    found.append(f"{callee}({kw.arg}=) ({POST_HUMBLE_KWARGS[callee, kw.arg]})")
        elif isinstance(n, (ast.With, ast.AsyncWith)):
            for item in n.items:
                if isinstance(item.context_expr, ast.Call):
                    callee = _name(item.context_expr.func)
                    if callee in POST_HUMBLE_WITH_CALLS:
                        found.append(f"with {callee}(...) ({POST_HUMBLE_WITH_CALLS[callee]})")
        hits += [f"{filename}:{getattr(n, 'lineno', 0)}: {f}" for f in found]
    return sorted(set(hits))


def _package_sources() -> list[Path]:
    return sorted(p for root in SCANNED for p in (REPO / root).rglob("*.py"))


def test_package_uses_no_rclpy_api_newer_than_humble() -> None:
    sources = _package_sources()
    assert len(sources) > 20, "the scan found too few files"
    hits = [h for p in sources
            for h in post_humble_uses(p.read_text(), str(p.relative_to(REPO)))]
    assert not hits, "rclpy APIs that ROS 2 Humble lacks (guard with hasattr or avoid):\n" + \
        "\n".join(hits)


SNIPPETS = (
    [f"import {m}\n" for m in POST_HUMBLE_MODULES]
    + [f"from {m} import {n}\n" for m, n in POST_HUMBLE_NAMES]
    + [f"import rclpy\nx = {m}.{n}\n" for m, n in POST_HUMBLE_NAMES]
    + [f"node.{a}(f)\n" for a in POST_HUMBLE_ATTRS]
    + [f"x.{c}(a, {k}=1)\n" for c, k in POST_HUMBLE_KWARGS]
    + [f"with rclpy.{c}() as x:\n    pass\n" for c in POST_HUMBLE_WITH_CALLS]
)


@pytest.mark.parametrize("snippet", SNIPPETS)
def test_each_listed_post_humble_api_is_detected(snippet: str) -> None:
    assert post_humble_uses(snippet), f"not detected: {snippet!r}"


def test_humble_apis_and_guarded_uses_are_not_flagged() -> None:
    humble_ok = (
        "import rclpy\nfrom rclpy.qos_event import PublisherEventCallbacks\n"
        "from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor\n"
        "from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn\n"
        "rclpy.init(context=ctx, domain_id=3)\nrclpy.ok(context=ctx)\nctx.try_shutdown()\n"
        "pub.wait_for_all_acked(d)\nclock.sleep_for(d)\nnode.get_logger().warning('w')\n"
        "node.declare_parameter('a', 1, ignore_override=True)\nnode.create_timer(1.0, cb)\n"
        "if hasattr(node, 'add_post_set_parameters_callback'):\n"
        "    node.add_post_set_parameters_callback(cb)\n"
        "with lock:\n    pass\n"
    )
    assert post_humble_uses(humble_ok) == []
