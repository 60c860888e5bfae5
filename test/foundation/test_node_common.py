"""PerceptionNode: declared + validated parameters, lifecycle autostart, diagnostics over DDS."""

from __future__ import annotations

import subprocess
import sys

import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter

from lss_bev_ros.nodes.common import (
    ParamSpec,
    PerceptionNode,
    sec_to_stamp,
    spin_until_shutdown,
    stamp_to_sec,
)


class _ProbeNode(PerceptionNode):
    PARAMS = (
        ParamSpec("threshold", 0.5, "occupancy threshold", min=0.0, max=1.0),
        ParamSpec("backend", "torch", "backend", choices=("torch", "onnxruntime")),
        ParamSpec("weights", "", "weights path", read_only=True),
    )

    def __init__(self, **kw) -> None:
        super().__init__("lss_probe_node", **kw)
        self.applied: list[dict] = []
        self.configured = self.activated = False

    def on_params_applied(self, changed: dict) -> None:
        self.applied.append(changed)

    def on_configure_impl(self) -> None:
        self.configured = True

    def on_activate_impl(self) -> None:
        self.activated = True


def test_parameters_are_validated_and_applied(ros_context) -> None:
    node = _ProbeNode(context=ros_context)
    ok = node.set_parameters([Parameter("threshold", value=0.7)])[0]
    assert ok.successful
    assert node.p("threshold") == 0.7
    assert node.applied[-1] == {"threshold": 0.7}
    bad = node.set_parameters([Parameter("threshold", value=1.5)])[0]
    assert not bad.successful
    assert node.p("threshold") == 0.7
    bad = node.set_parameters([Parameter("backend", value="magic")])[0]
    assert not bad.successful and "not one of" in bad.reason
    ro = node.set_parameters([Parameter("weights", value="/x.pt")])[0]
    assert not ro.successful  # read-only: needs a restart
    desc = node.describe_parameter("threshold")
    assert desc.floating_point_range[0].to_value == 1.0
    node.destroy_node()


def test_autostart_and_diagnostics_over_dds(ros_context, spin) -> None:
    node = _ProbeNode(context=ros_context)
    assert node.maybe_autostart()
    assert node.configured and node.activated and node.active
    node.diag.error("corrupt_jpeg", "CAM_FRONT: could not decode")
    node.diag.count("frames_in", 5)
    listener = Node("lss_diag_listener", context=ros_context)
    got: list[DiagnosticArray] = []
    listener.create_subscription(DiagnosticArray, "/diagnostics", got.append, 10)
    ex = SingleThreadedExecutor(context=ros_context)
    ex.add_node(node)
    ex.add_node(listener)
    assert spin(ex, lambda: bool(got), 5.0)
    status = got[-1].status[0]
    values = {kv.key: kv.value for kv in status.values}
    assert values["corrupt_jpeg"] == "1" and values["frames_in"] == "5"
    assert status.level == status.WARN and "corrupt_jpeg" in status.message
    ex.shutdown()
    node.destroy_node()
    listener.destroy_node()


def test_stamp_conversions_round_trip_within_a_microsecond() -> None:
    t = 1533151603.512404
    st = sec_to_stamp(t)
    assert st.sec == 1533151603
    assert abs(st.nanosec - 512404000) < 1000
    assert abs(stamp_to_sec(st) - t) < 1e-6
    edge = sec_to_stamp(9.9999999999)
    assert (edge.sec, edge.nanosec) == (10, 0)


def test_stamp_latency_is_nan_and_explained_when_the_clock_is_not_the_stamps(ros_context):
    """A bag's 2018 stamps against today's wall clock give no latency of years: NaN, counted as
    clock_mismatch with the remedy; a current stamp gives the real age in ms."""
    import math

    node = _ProbeNode(context=ros_context)
    try:
        now = node.now_sec()
        lat = node.stamp_latency_ms(now - 0.25)
        assert 250.0 <= lat < 250.0 + 5_000.0  # ms; generous upper bound for a loaded machine
        assert "clock_mismatch" not in node.diag.counters
        assert math.isnan(node.stamp_latency_ms(1533151603.5))  # nuScenes-era stamp
        assert math.isnan(node.stamp_latency_ms(now + 30.0))  # stamp from the future
        assert node.diag.counters["clock_mismatch"] == 2
        assert "use_sim_time" in node.diag.last_error["clock_mismatch"]
        assert "wall clock" in node.diag.last_error["clock_mismatch"]
    finally:
        node.destroy_node()


def test_rules_between_parameters_are_checked_on_set_and_at_start(ros_context) -> None:
    from lss_bev_ros.nodes.fusion_node import FusionNode

    node = FusionNode(context=ros_context)
    bad = node.set_parameters([Parameter("flip_margin_logodds", value=3.0)])[0]
    assert not bad.successful and "flip_margin_logodds must be <= max_logodds" in bad.reason
    # both in one call: judged on the values after the change
    ok = node.set_parameters_atomically([Parameter("max_logodds", value=4.0),
                                         Parameter("flip_margin_logodds", value=3.0)])
    assert ok.successful, ok.reason
    bad = node.set_parameters([Parameter("max_logodds", value=2.0)])[0]
    assert not bad.successful and node.p("max_logodds") == 4.0
    node.destroy_node()
    with pytest.raises(ValueError, match="flip_margin_logodds must be <= max_logodds"):
        FusionNode(context=ros_context, parameter_overrides=[
            Parameter("flip_margin_logodds", value=2.5)])


_GATE_SCRIPT = """
import signal
from lss_bev_ros.nodes.common import SigintGate
signal.signal(signal.SIGINT, signal.default_int_handler)
gate = SigintGate.install()
assert gate is not None and signal.getsignal(signal.SIGINT) is gate
try:
    signal.raise_signal(signal.SIGINT)  # starting: Ctrl-C stops a long model load
    raise SystemExit("no KeyboardInterrupt while starting")
except KeyboardInterrupt:
    pass
gate.raises = False  # spinning: recorded only, rclpy's handler ends the spin
gate.requested = False
signal.raise_signal(signal.SIGINT)
assert gate.requested
signal.signal(signal.SIGINT, signal.SIG_IGN)  # e.g. a background job: left alone
assert SigintGate.install() is None
assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
signal.signal(signal.SIGINT, gate)
gate.uninstall()
assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
print("gate ok")
"""


def test_sigint_gate_interrupts_start_up_only_and_respects_an_ignored_sigint() -> None:
    # its own interpreter: replacing SIGINT here would drop rclpy's handler from the test
    # process, and every later child would inherit an ignored SIGINT
    proc = subprocess.run([sys.executable, "-c", _GATE_SCRIPT], capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0 and "gate ok" in proc.stdout, proc.stderr[-3000:]


def test_spin_until_shutdown_propagates_a_callback_error_of_its_own_context(ros_context) -> None:
    # the executor's context decides, not the default one (not initialised here): an error
    # while the pipeline's context is valid is a failure, not a shutdown
    import rclpy

    assert not rclpy.ok()  # default context
    node = Node("spin_error", context=ros_context)
    ex = SingleThreadedExecutor(context=ros_context)
    ex.add_node(node)

    def boom() -> None:
        raise RuntimeError("callback failed")

    node.create_timer(0.01, boom)
    try:
        with pytest.raises(RuntimeError, match="callback failed"):
            spin_until_shutdown(ex)
    finally:
        ex.shutdown()
        node.destroy_node()
