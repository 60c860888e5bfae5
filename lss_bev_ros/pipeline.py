"""Start a set of lss_bev_ros nodes from ONE ROS 2 parameter file, in ONE process.

    python -m lss_bev_ros.pipeline --params-file config/pipeline.yaml [--nodes a,b] [--duration S]

The YAML is the standard ROS 2 parameters file (what ``ros2 launch`` / ``--params-file`` read)::

    bev_node:
      ros__parameters:
        weights: models/lss_small_cpu_80x352_synth.pt
    /**:                      # optional: parameters for every node (only those it declares)
      ros__parameters: {...}

Its top-level node names select the nodes (``bev_node``, ``eval_node``, ``detector_node``,
``objects_node``, ``dashboard_node``, ``frame_player_node``; ``--nodes`` narrows the set). Every key
must be a parameter the node declares (``NodeClass.PARAMS``): typos fail loudly instead of being
ignored. Values are coerced to the declared type (``2`` -> ``2.0`` for a float parameter). The nodes
are created in file order, auto-started (configure + activate) in that order when their
``autostart`` parameter is true, and spun by one ``MultiThreadedExecutor``.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

NODE_NAMES: tuple[str, ...] = (
    "frame_player_node",
    "bev_node",
    "fusion_node",
    "detector_node",
    "objects_node",
    "eval_node",
    "dashboard_node",
)
"""Nodes the pipeline can start; module ``lss_bev_ros.nodes.<name>`` defines each one."""

WILDCARD_KEYS = ("/**", "**")


class PipelineConfigError(ValueError):
    """The parameter file or node selection is invalid."""


def node_class(name: str) -> type:
    """The node class of ``lss_bev_ros.nodes.<name>``: the PerceptionNode subclass defined
    there (it must expose ``PARAMS``)."""
    if name not in NODE_NAMES:
        raise PipelineConfigError(f"unknown node {name!r} (known: {', '.join(NODE_NAMES)})")
    from lss_bev_ros.nodes.common import PerceptionNode

    mod = importlib.import_module(f"lss_bev_ros.nodes.{name}")
    found = [c for _, c in inspect.getmembers(mod, inspect.isclass)
             if issubclass(c, PerceptionNode) and c is not PerceptionNode
             and c.__module__ == mod.__name__]
    if len(found) != 1:
        raise PipelineConfigError(f"lss_bev_ros.nodes.{name} defines {len(found)} node classes")
    return found[0]


def _node_key(key: str) -> str:
    """``/ns/bev_node`` or ``bev_node`` -> ``bev_node``."""
    return str(key).strip("/").split("/")[-1]


def load_params_file(path: str | Path) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Read a ROS 2 parameter file -> ({node name: params} in file order, wildcard params)."""
    p = Path(path)
    if not p.is_file():
        raise PipelineConfigError(f"parameter file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise PipelineConfigError(f"{p} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise PipelineConfigError(f"{p}: top level must be a mapping of node names")
    nodes: dict[str, dict[str, Any]] = {}
    wildcard: dict[str, Any] = {}
    for key, body in data.items():
        if not isinstance(body, dict) or "ros__parameters" not in body:
            raise PipelineConfigError(f"{p}: '{key}' needs a 'ros__parameters' mapping")
        params = body["ros__parameters"] or {}
        if not isinstance(params, dict):
            raise PipelineConfigError(f"{p}: '{key}.ros__parameters' must be a mapping")
        if key in WILDCARD_KEYS:
            wildcard.update(params)
        else:
            nodes[_node_key(key)] = _flatten(params)
    return nodes, _flatten(wildcard)


def _flatten(params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings -> dotted names (ROS 2 parameter-file semantics)."""
    out: dict[str, Any] = {}
    for k, v in params.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, name + "."))
        else:
            out[name] = v
    return out


def coerce(spec: Any, value: Any) -> Any:
    """``value`` converted to the type of ``spec.default`` (clear error when impossible)."""
    d = spec.default
    try:
        if isinstance(d, bool):
            if not isinstance(value, bool):
                raise TypeError
            return value
        if isinstance(d, int):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError
            return value
        if isinstance(d, float):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError
            return float(value)
        if isinstance(d, str):
            if not isinstance(value, str):
                raise TypeError
            return value
        if isinstance(d, list | tuple):
            if not isinstance(value, list | tuple):
                raise TypeError
            elem = type(d[0]) if d else str
            if elem is float:
                return [float(v) for v in value]
            if any(not isinstance(v, elem) or isinstance(v, bool) != (elem is bool)
                   for v in value):
                raise TypeError
            return list(value)
    except (TypeError, ValueError):
        raise PipelineConfigError(
            f"parameter {spec.name}: {value!r} is not a {type(d).__name__} "
            f"(default {d!r})") from None
    return value


def resolve(params_file: str | Path, nodes: Sequence[str] | None = None
            ) -> list[tuple[str, type, dict[str, Any]]]:
    """Validated (name, class, parameters) per node to start, in file order."""
    per_node, wildcard = load_params_file(params_file)
    selected = list(per_node) if not nodes else list(nodes)
    if not selected:
        raise PipelineConfigError(f"{params_file} names no nodes")
    missing = [n for n in selected if n not in per_node]
    if missing:
        raise PipelineConfigError(f"nodes {missing} have no section in {params_file}")
    out = []
    for name in [n for n in per_node if n in selected]:
        cls = node_class(name)
        specs = {s.name: s for s in cls.PARAMS}
        from lss_bev_ros.nodes.common import AUTOSTART

        specs.setdefault(AUTOSTART.name, AUTOSTART)
        values: dict[str, Any] = {k: coerce(specs[k], v) for k, v in wildcard.items()
                                  if k in specs}
        unknown = sorted(set(per_node[name]) - set(specs))
        if unknown:
            raise PipelineConfigError(
                f"{params_file}: {name} does not declare {unknown} (declared: {sorted(specs)})")
        for k, v in per_node[name].items():
            values[k] = coerce(specs[k], v)
            err = specs[k].check(values[k])
            if err:
                raise PipelineConfigError(f"{params_file}: {name}: {err}")
        out.append((name, cls, values))
    return out


def _overrides(values: dict[str, Any]) -> list:
    from rclpy.parameter import Parameter

    out = []
    for k, v in values.items():
        if isinstance(v, list) and not v:
            continue  # an empty array has no type: keep the declared default
        out.append(Parameter(k, value=v))
    return out


@dataclass
class Pipeline:
    """A running node set (see :func:`start`)."""

    context: Any
    executor: Any
    nodes: dict[str, Any] = field(default_factory=dict)
    thread: threading.Thread | None = None

    def stop(self) -> None:
        """Stop the executor and wait for its spin thread, then deactivate and destroy the nodes
        and shut the context down. The spin thread must be gone before a node deactivates or is
        destroyed: deactivating destroys subscriptions and timers, and a spin still building its
        wait set would touch such an entity (``InvalidHandle: cannot use Destroyable because
        destruction was requested``, raised in the spin thread from a QoS event handler). The
        lifecycle transitions need no spinning: ``trigger_deactivate`` runs the callbacks in this
        thread."""
        self.executor.shutdown(timeout_sec=5.0)
        if self.thread is not None:
            self.thread.join(timeout=10.0)
            if self.thread.is_alive():
                print("[pipeline] the spin thread did not stop within 10 s", file=sys.stderr)
        for node in reversed(list(self.nodes.values())):
            try:
                if getattr(node, "active", False):
                    node.trigger_deactivate()
            except Exception as exc:
                print(f"[pipeline] deactivating {node.get_name()} failed: {exc}",
                      file=sys.stderr)
        for node in self.nodes.values():
            node.destroy_node()
        if self.context.ok():
            self.context.try_shutdown()

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start(params_file: str | Path, nodes: Sequence[str] | None = None, *,
          spin_in_thread: bool = True, num_threads: int | None = None,
          ros_args: Sequence[str] | None = None) -> Pipeline:
    """Create, auto-start and spin the node set of ``params_file`` in this process.

    Uses its own rclpy Context (safe next to other contexts, e.g. in tests). With
    ``spin_in_thread`` the executor spins in a background thread; call :meth:`Pipeline.stop`.
    """
    import rclpy
    from rclpy.executors import MultiThreadedExecutor

    plan = resolve(params_file, nodes)
    context = rclpy.Context()
    rclpy.init(args=["pipeline", *(ros_args or [])], context=context)
    threads = num_threads or max(4, 2 * len(plan))
    executor = MultiThreadedExecutor(num_threads=threads, context=context)
    pipe = Pipeline(context, executor)
    try:
        for name, cls, values in plan:
            node = cls(context=context, parameter_overrides=_overrides(values))
            pipe.nodes[name] = node
            executor.add_node(node)
        for node in pipe.nodes.values():
            node.maybe_autostart()
    except BaseException:
        pipe.stop()
        raise
    if spin_in_thread:
        pipe.thread = threading.Thread(target=_spin, args=(executor,), name="pipeline_spin",
                                       daemon=True)
        pipe.thread.start()
    return pipe


def _spin(executor: Any) -> None:
    from lss_bev_ros.nodes.common import spin_until_shutdown

    spin_until_shutdown(executor)


def _summary(pipe: Pipeline) -> str:
    lines = []
    for name, node in pipe.nodes.items():
        diag = getattr(node, "diag", None)
        counters = dict(sorted(diag.counters.items())) if diag else {}
        lines.append(f"  {name}: active={getattr(node, 'active', '?')} {counters}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point (``pipeline`` executable / ``python -m lss_bev_ros.pipeline``)."""
    parser = argparse.ArgumentParser(
        prog="pipeline", description="Start lss_bev_ros nodes from one ROS 2 parameter file "
                                     "in one process (multi-threaded executor).")
    parser.add_argument("--params-file", required=True, help="ROS 2 parameters YAML")
    parser.add_argument("--nodes", default="", help="comma-separated subset of the file's nodes")
    parser.add_argument("--duration", type=float, default=0.0,
                        help="stop after this many seconds (0: until Ctrl-C)")
    parser.add_argument("--threads", type=int, default=0, help="executor threads (0: auto)")
    parser.add_argument("--check", action="store_true",
                        help="only validate the parameter file and print the plan")
    args, ros_args = parser.parse_known_args(argv)
    nodes = [n.strip() for n in args.nodes.split(",") if n.strip()] or None
    if args.check:
        try:
            for name, cls, values in resolve(args.params_file, nodes):
                print(f"{name} ({cls.__module__}.{cls.__name__}): {len(values)} parameters")
        except PipelineConfigError as exc:
            print(f"pipeline: {exc}", file=sys.stderr)
            return 2
        return 0
    from lss_bev_ros.nodes.common import SigintGate

    # same Ctrl-C rules as run_node: KeyboardInterrupt only while starting, then rclpy's
    # handler (chained to the gate) shuts the context down and the loop below notices
    gate = SigintGate.install()
    try:
        try:
            pipe = start(args.params_file, nodes, spin_in_thread=True,
                         num_threads=args.threads or None, ros_args=ros_args)
        except PipelineConfigError as exc:
            print(f"pipeline: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            return 0  # start() already stopped what it had created
        if gate is not None:
            gate.raises = False
        print(f"[pipeline] running {', '.join(pipe.nodes)} (ROS_DOMAIN_ID="
              f"{os.environ.get('ROS_DOMAIN_ID', '0')})", flush=True)
        done = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: done.set())
        if gate is None and signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
            # inherited as ignored (a background job): rclpy's handler on top of it shuts only
            # the default context down, not the pipeline's, so SIGINT stops it here as it
            # stops the node executables
            signal.signal(signal.SIGINT, lambda *_: done.set())
        t_end = time.monotonic() + args.duration if args.duration > 0 else None
        while not done.is_set() and (t_end is None or time.monotonic() < t_end):
            if not pipe.context.ok() or (gate is not None and gate.requested):
                break
            if pipe.thread is not None and not pipe.thread.is_alive():
                break
            done.wait(0.2)
        print("[pipeline] stopping\n" + _summary(pipe), flush=True)
        pipe.stop()
    finally:
        if gate is not None:
            gate.uninstall()
    return 0

if __name__ == "__main__":
    raise SystemExit(main())
