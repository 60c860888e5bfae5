"""Shared glue for lss_bev_ros lifecycle nodes: validated parameters, diagnostics, QoS, stamps.

Lifecycle roles (as in ros2/demos lifecycle_py): configure reads parameters and creates
publishers; activate loads models and subscribes; deactivate stops work and frees memory. The
``autostart`` parameter lets a plain ``ros2 run`` drive configure + activate itself; an external
lifecycle manager can instead leave it false.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import rclpy
from builtin_interfaces.msg import Time as TimeMsg
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
)

from lss_bev_ros.diagnostics import CountingDiagnostics
from lss_bev_ros.msg import PipelineTiming, StageDuration


@dataclass(frozen=True)
class ParamSpec:
    """One declared parameter: default (its type fixes the parameter type) and constraints."""

    name: str
    default: Any
    description: str
    read_only: bool = False
    min: float | None = None
    max: float | None = None
    choices: Sequence[Any] | None = None
    validator: Callable[[Any], str | None] | None = None  # returns an error text or None
    unconfigured_only: bool = False  # settable only in the unconfigured state (reconfigure)

    def descriptor(self) -> ParameterDescriptor:
        extra = []
        if self.choices is not None:
            extra.append(f"one of {list(self.choices)}")
        if self.unconfigured_only:
            extra.append("changeable only while unconfigured: deactivate, cleanup, set, "
                         "configure")
        d = ParameterDescriptor(
            name=self.name,
            description=self.description + (f" ({'; '.join(extra)})" if extra else ""),
            read_only=self.read_only,
        )
        if isinstance(self.default, bool):
            return d
        if isinstance(self.default, int) and (self.min is not None or self.max is not None):
            d.integer_range = [
                IntegerRange(
                    from_value=int(self.min if self.min is not None else -(2**31)),
                    to_value=int(self.max if self.max is not None else 2**31 - 1),
                    step=0,
                )
            ]
        elif isinstance(self.default, float) and (self.min is not None or self.max is not None):
            d.floating_point_range = [
                FloatingPointRange(
                    from_value=float(self.min if self.min is not None else -1e300),
                    to_value=float(self.max if self.max is not None else 1e300),
                    step=0.0,
                )
            ]
        return d

    def check(self, value: Any) -> str | None:
        """Error text when ``value`` violates the spec, else None."""
        if isinstance(value, float) and not math.isfinite(value):
            return f"{self.name}: must be finite"
        if self.min is not None and isinstance(value, int | float) and value < self.min:
            return f"{self.name}: {value} < minimum {self.min}"
        if self.max is not None and isinstance(value, int | float) and value > self.max:
            return f"{self.name}: {value} > maximum {self.max}"
        if self.choices is not None and value not in self.choices:
            return f"{self.name}: {value!r} not one of {list(self.choices)}"
        if self.validator is not None:
            err = self.validator(value)
            if err:
                return f"{self.name}: {err}"
        return None


#: |node clock - input stamp| beyond this (s) means the clock is not the stamps' clock
STAMP_CLOCK_MAX_S = 3600.0

AUTOSTART = ParamSpec(
    "autostart", True, "configure and activate on start-up (false: wait for a lifecycle manager)",
    read_only=True,
)


class DiagnosticsReporter(CountingDiagnostics):
    """Counters and last errors of one node (a :class:`CountingDiagnostics` that also logs
    errors, throttled per key), published as one DiagnosticStatus at 1 Hz."""

    def __init__(self, node: LifecycleNode, hardware_id: str = "") -> None:
        super().__init__()
        self._node = node
        self._error_times: dict[str, float] = {}
        self._log_times: dict[str, float] = {}
        self._hardware_id = hardware_id
        self._pub: Any = None
        self._timer: Any = None

    def start(self) -> None:
        if self._pub is None:
            self._pub = self._node.create_publisher(DiagnosticArray, "/diagnostics", 10)
            self._timer = self._node.create_timer(1.0, self.publish)

    def stop(self) -> None:
        if self._timer is not None:
            self._node.destroy_timer(self._timer)
            self._timer = None
        if self._pub is not None:
            self._node.destroy_publisher(self._pub)
            self._pub = None

    def error(self, key: str, message: str, throttle_s: float = 2.0) -> None:
        """Count an input/processing error under ``key`` and log it (throttled per key)."""
        super().error(key, message)
        now = time.monotonic()
        with self._lock:
            self._error_times[key] = now
            do_log = now - self._log_times.get(key, -1e9) >= throttle_s
            if do_log:
                self._log_times[key] = now
            total = self.counters[key]
        if do_log and self._node.context.ok():
            self._node.get_logger().warning(f"[{key}] {message} (count {total})")

    def status(self) -> DiagnosticStatus:
        now = time.monotonic()
        with self._lock:
            recent = [k for k, t in self._error_times.items() if now - t < 5.0]
            kv = [KeyValue(key=k, value=str(v)) for k, v in sorted(self.counters.items())]
            kv += [KeyValue(key=k, value=v) for k, v in sorted(self.values.items())]
            kv += [KeyValue(key=f"last_error.{k}", value=v) for k, v in self.last_error.items()]
        level = DiagnosticStatus.WARN if recent else DiagnosticStatus.OK
        msg = f"recent errors: {', '.join(sorted(recent))}" if recent else "ok"
        return DiagnosticStatus(
            level=level, name=self._node.get_fully_qualified_name(), message=msg,
            hardware_id=self._hardware_id, values=kv,
        )

    def publish(self) -> None:
        if self._pub is None:
            return
        arr = DiagnosticArray()
        arr.header.stamp = self._node.get_clock().now().to_msg()
        arr.status = [self.status()]
        self._pub.publish(arr)


class PerceptionNode(LifecycleNode):
    """Lifecycle node with declared, validated parameters and diagnostics.

    Subclasses set ``PARAMS`` (list of ParamSpec) and override the ``*_impl`` hooks; raising in
    a hook turns the transition into FAILURE with the error logged.
    """

    PARAMS: Sequence[ParamSpec] = ()

    def __init__(self, node_name: str, params: Sequence[ParamSpec] | None = None, **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        specs = list(params if params is not None else self.PARAMS)
        if all(s.name != AUTOSTART.name for s in specs):
            specs.append(AUTOSTART)
        self._specs = {s.name: s for s in specs}
        for s in specs:
            self.declare_parameter(s.name, s.default, s.descriptor())
            err = s.check(self.get_parameter(s.name).value)
            if err:
                raise ValueError(f"invalid parameter {err}")
        err = self.check_param_combination({n: self.p(n) for n in self._specs})
        if err:
            raise ValueError(f"invalid parameters: {err}")
        self.add_on_set_parameters_callback(self._validate_params)
        # post-set hook exists from Iron on; Humble falls back to applying in the set callback
        self._has_post_set = hasattr(self, "add_post_set_parameters_callback")
        if self._has_post_set:
            self.add_post_set_parameters_callback(self._apply_params)
        self.diag = DiagnosticsReporter(self, node_name)
        self.active = False
        self.configured = False  # configure succeeded and no cleanup/shutdown since

    # ---- parameters ----------------------------------------------------------------------
    def p(self, name: str) -> Any:
        """Current value of a declared parameter."""
        return self.get_parameter(name).value

    def _validate_params(self, params: list[Parameter]) -> SetParametersResult:
        errors = []
        for prm in params:
            spec = self._specs.get(prm.name)
            if spec is None:
                continue
            err = spec.check(prm.value)
            if err:
                errors.append(err)
            elif spec.unconfigured_only and self.configured:
                errors.append(f"{prm.name}: can only change while the node is unconfigured "
                              "(lifecycle deactivate + cleanup, set it, configure again)")
        if not errors:
            merged = {n: self.p(n) for n in self._specs if self.has_parameter(n)}
            merged.update({prm.name: prm.value for prm in params if prm.name in self._specs})
            err = self.check_param_combination(merged)
            if err:
                errors.append(err)
        if errors:
            return SetParametersResult(successful=False, reason="; ".join(errors))
        if not self._has_post_set:
            self._apply_params(params)
        return SetParametersResult(successful=True)

    def _apply_params(self, params: list[Parameter]) -> None:
        changed = {p.name: p.value for p in params if p.name in self._specs}
        if changed:
            try:
                self.on_params_applied(changed)
            except Exception as exc:
                self.diag.error("param_apply", f"applying {sorted(changed)} failed: {exc}")

    def on_params_applied(self, changed: dict[str, Any]) -> None:
        """Apply validated parameter changes (override; default: nothing to do live)."""

    def check_param_combination(self, values: dict[str, Any]) -> str | None:
        """Reason the parameter set ``values`` (name -> value, after the change) is invalid
        as a whole, or None (override for rules between parameters; default: none)."""
        return None

    # ---- lifecycle -------------------------------------------------------------------------
    def _run_hook(self, hook: Callable[[], None], what: str) -> TransitionCallbackReturn:
        try:
            hook()
        except Exception as exc:
            self.get_logger().error(f"{what} failed: {exc}")
            self.diag.error(f"{what}_failed", str(exc))
            return TransitionCallbackReturn.FAILURE
        return TransitionCallbackReturn.SUCCESS

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        res = self._run_hook(self.on_configure_impl, "configure")
        if res == TransitionCallbackReturn.SUCCESS:
            self.configured = True
            self.diag.start()
        return res

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        res = self._run_hook(self.on_activate_impl, "activate")
        if res == TransitionCallbackReturn.SUCCESS:
            self.active = True
            return super().on_activate(state)
        return res

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.active = False
        res = self._run_hook(self.on_deactivate_impl, "deactivate")
        super().on_deactivate(state)
        return res

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        res = self._run_hook(self.on_cleanup_impl, "cleanup")
        self.configured = False
        self.diag.stop()
        return res

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self.active:
            self.active = False
            self._run_hook(self.on_deactivate_impl, "deactivate")
        self._run_hook(self.on_cleanup_impl, "cleanup")
        self.configured = False
        return TransitionCallbackReturn.SUCCESS

    def on_configure_impl(self) -> None:
        """Read parameters, create publishers."""

    def on_activate_impl(self) -> None:
        """Load models, create subscriptions, start workers."""

    def on_deactivate_impl(self) -> None:
        """Stop workers, destroy subscriptions, free models."""

    def on_cleanup_impl(self) -> None:
        """Destroy publishers."""

    def maybe_autostart(self) -> bool:
        """Configure + activate when ``autostart`` is true; returns True when active."""
        if not self.p("autostart"):
            return False
        if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            self.get_logger().error("autostart: configure failed; staying unconfigured")
            return False
        if self.trigger_activate() != TransitionCallbackReturn.SUCCESS:
            self.get_logger().error("autostart: activate failed; staying inactive")
            return False
        return True

    # ---- messages --------------------------------------------------------------------------
    def timing_msg(
        self,
        stamp: TimeMsg,
        stages: dict[str, float],
        total_ms: float,
        latency_ms: float,
        backend: str,
        frame_id: str = "",
        processed: int = 0,
        dropped: int = 0,
        node_latency_ms: float = math.nan,
    ) -> PipelineTiming:
        msg = PipelineTiming()
        msg.header.stamp = stamp
        msg.header.frame_id = frame_id
        msg.node_name = self.get_name()
        msg.backend = backend
        msg.stages = [StageDuration(name=k, duration_ms=float(v)) for k, v in stages.items()]
        msg.total_ms = float(total_ms)
        msg.latency_ms = float(latency_ms)
        msg.node_latency_ms = float(node_latency_ms)
        msg.frames_processed = int(processed)
        msg.frames_dropped = int(dropped)
        return msg

    def now_sec(self) -> float:
        """Current node clock time (s); the ROS clock, so /clock replay is honoured."""
        return self.get_clock().now().nanoseconds * 1e-9

    def stamp_latency_ms(self, stamp: float) -> float:
        """Node clock now minus an input header stamp (ms), or NaN when the clock is not the
        stamps' clock (difference > ``STAMP_CLOCK_MAX_S`` or stamp > 1 s in the future: a bag
        replayed without ``/clock`` + ``use_sim_time``, a camera without time sync). A latency
        of years is no latency: NaN is counted and explained as ``clock_mismatch``."""
        lat = self.now_sec() - stamp
        if -1.0 <= lat <= STAMP_CLOCK_MAX_S:
            return lat * 1e3
        sim = self.get_parameter("use_sim_time").value
        self.diag.error("clock_mismatch", (
            f"input stamp {stamp:.3f} s is {lat:+.0f} s from this node's "
            f"{'sim (/clock)' if sim else 'wall'} clock; stamp latency not measured "
            "(replaying a bag? play it with /clock and set use_sim_time true)"), throttle_s=30.0)
        return math.nan


def parses_with(parse: Callable[[Any], Any]) -> Callable[[Any], str | None]:
    """A :class:`ParamSpec` validator from a parser: its ValueError text, or None if it parses."""

    def validate(value: Any) -> str | None:
        try:
            parse(value)
        except ValueError as exc:
            return str(exc)
        return None

    return validate


def topic_error(v: str) -> str | None:
    """Validator: an absolute topic name."""
    return None if str(v).startswith("/") else "must be an absolute topic (start with /)"


def camera_template_error(v: str) -> str | None:
    """Validator: an absolute topic template containing ``{camera}``."""
    if not str(v).startswith("/"):
        return "must be an absolute topic (start with /)"
    if "{camera}" not in str(v):
        return "must contain {camera} (replaced by the camera frame id, e.g. cam_front)"
    return None


def camera_topic(template: str, frame_id: str) -> str:
    """The one way ``{camera}`` is filled: the camera's frame id (``cam_front``)."""
    return template.replace("{camera}", frame_id)


def cameras_error(v: Sequence[str]) -> str | None:
    """Validator: a non-empty list of unique, non-empty camera names."""
    if not v or any(not str(c) for c in v):
        return "at least one (non-empty) camera name needed"
    return None if len(set(v)) == len(v) else "camera names must be unique"


def device_error(v: str, check_runtime: bool = False) -> str | None:
    """Validator: a torch device string, ``cpu``, ``cuda`` or ``cuda:N`` (both models and every
    backend take these); with ``check_runtime`` also that CUDA is there for a CUDA device."""
    d = str(v).strip().lower()
    if d == "cpu":
        return None
    if d != "cuda" and not (d.startswith("cuda:") and d[5:].isdigit()):
        return f"{v!r} is not 'cpu', 'cuda' or 'cuda:N'"
    if check_runtime:
        import torch

        if not torch.cuda.is_available():
            return f"{v!r} needs CUDA, but torch sees no GPU (use cpu)"
    return None


def sensor_qos(depth: int = 1, reliable: bool = False) -> QoSProfile:
    """Sensor-data QoS: keep-last ``depth``, best-effort unless ``reliable``."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.VOLATILE,
    )


def latched_qos(depth: int = 1) -> QoSProfile:
    """Transient-local reliable QoS (``/tf_static`` style)."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL,
    )


def stamp_to_sec(stamp) -> float:
    """builtin_interfaces/Time -> seconds."""
    return float(stamp.sec) + float(stamp.nanosec) * 1e-9


def sec_to_stamp(t: float) -> TimeMsg:
    """Seconds -> builtin_interfaces/Time.

    A float cannot hold an epoch stamp to the nanosecond (about 0.2 us resolution): outputs that
    must carry an input's stamp copy the input's header stamp message instead of round-tripping.
    """
    sec = math.floor(t)
    nsec = round((t - sec) * 1e9)
    if nsec >= 1_000_000_000:
        sec, nsec = sec + 1, nsec - 1_000_000_000
    return TimeMsg(sec=int(sec), nanosec=int(nsec))


def spin_until_shutdown(executor: Any) -> None:
    """``executor.spin()`` until Ctrl-C / shutdown. A shutdown that lands while the executor
    builds its wait set raises ``RCLError`` ("context is not valid", seen on Kilted): that is
    a shutdown too, not a failure; any error while the executor's context (the pipeline's
    own, or the default one) is still valid propagates."""
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        if executor.context.ok():
            raise


class SigintGate:
    """Python-level SIGINT handler for a node process's main thread.

    ``rclpy.init`` installs rclpy's handler on top of this one: it shuts the context down
    (which wakes and ends ``executor.spin()``) and then chains here. While the node starts
    (``raises`` True) this raises ``KeyboardInterrupt``, so a Ctrl-C stops a long model load;
    once the executor spins it only records the request. A ``KeyboardInterrupt`` raised
    asynchronously in the main thread inside the executor's thread-pool code can orphan a
    worker thread that the interpreter then joins forever at exit (a Ctrl-C that never ends).
    """

    def __init__(self) -> None:
        self.raises = True
        self.requested = False

    def __call__(self, signum: int, frame: Any) -> None:
        self.requested = True
        if self.raises:
            raise KeyboardInterrupt

    @classmethod
    def install(cls) -> SigintGate | None:
        """The installed gate (it replaces Python's default handler, which :meth:`uninstall`
        puts back), or None off the main thread or when SIGINT has another handler (ignored
        in a background job, set by the user)."""
        if threading.current_thread() is not threading.main_thread():
            return None
        if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
            return None
        gate = cls()
        signal.signal(signal.SIGINT, gate)
        return gate

    @staticmethod
    def uninstall() -> None:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def run_node(node_cls: type[PerceptionNode], args: list[str] | None = None) -> int:
    """Entry point body for a node ``main()``: init, autostart, spin multi-threaded, shut down.

    Ctrl-C (SIGINT) ends it cleanly at any point: during start-up as ``KeyboardInterrupt``,
    while spinning through rclpy's context shutdown only (see :class:`SigintGate`)."""
    gate = SigintGate.install()
    node = None
    executor = None
    try:
        rclpy.init(args=args)
        node = node_cls()
        node.maybe_autostart()
        executor = MultiThreadedExecutor()
        executor.add_node(node)
        if gate is not None:
            gate.raises = False
        spin_until_shutdown(executor)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if gate is not None:
            gate.raises = False
        if executor is not None:
            executor.shutdown(timeout_sec=5.0)
        if node is not None:
            # the context may already be shut down (Ctrl-C): run the hooks, not transitions
            if node.active:
                node.active = False
                node._run_hook(node.on_deactivate_impl, "deactivate")
            node.destroy_node()
        rclpy.try_shutdown()
        if gate is not None:
            gate.uninstall()
    return 0
