"""Loading detector weights never runs code from the file unless explicitly allowed.

A ``.pt`` is a pickle: ultralytics unpickles it in full, so a ``__reduce__`` payload inside it
runs on load. The payload here creates a marker file; the tests check that it is *not* created
by default (library and node, the node's parameters set over DDS from another node) and that it
*is* created with the explicit opt-in (so the payload is real and the tests can fail).
"""

from __future__ import annotations

import pathlib
import time
from pathlib import Path

import pytest
import torch
from det_testutil import COMMITTED_PT, COMMITTED_WEIGHTS
from rcl_interfaces.srv import SetParameters
from rclpy.executors import SingleThreadedExecutor
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.node import Node
from rclpy.parameter import Parameter

from lss_bev_ros.detection.detector import BatchedDetector, DetectorConfig, DetectorLoadError


class _Payload:
    """Unpickling this calls ``Path(marker).touch()``: code execution from a weights file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


@pytest.fixture
def evil_pt(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"model": _Payload(marker)}, path)
    assert not marker.exists()
    return path, marker


def test_pickled_weights_are_refused_by_default_and_run_no_code(evil_pt):
    path, marker = evil_pt
    with pytest.raises(DetectorLoadError, match="arbitrary code execution"):
        BatchedDetector(DetectorConfig(str(path)), warmup=False)
    assert not marker.exists()


def test_the_payload_is_real_when_pickle_is_explicitly_allowed(evil_pt):
    path, marker = evil_pt
    with pytest.raises(DetectorLoadError):  # not a YOLO checkpoint, but its code has run
        BatchedDetector(DetectorConfig(str(path), allow_pickle=True), warmup=False)
    assert marker.exists()


def test_committed_onnx_weights_load_without_pickle_with_the_pt_class_names():
    onnx = BatchedDetector(DetectorConfig(str(COMMITTED_WEIGHTS), imgsz=416), warmup=False)
    pt = BatchedDetector(DetectorConfig(str(COMMITTED_PT), imgsz=416, allow_pickle=True),
                         warmup=False)
    assert onnx.backend == "onnxruntime"
    assert onnx.names == pt.names


def test_node_default_weights_are_the_onnx_export():
    from lss_bev_ros.nodes.detector_node import DEFAULT_WEIGHTS

    assert DEFAULT_WEIGHTS.endswith(".onnx")
    assert (COMMITTED_WEIGHTS.parents[2] / DEFAULT_WEIGHTS) == COMMITTED_WEIGHTS


def _set_remote(ctx, ex, target: str, params: list[Parameter]):
    """Set parameters of node ``target`` through its DDS service, from another node."""
    client_node = Node("weights_attacker", context=ctx)
    ex.add_node(client_node)
    try:
        cli = client_node.create_client(SetParameters, f"/{target}/set_parameters")
        assert cli.wait_for_service(timeout_sec=10.0)
        fut = cli.call_async(SetParameters.Request(
            parameters=[p.to_parameter_msg() for p in params]))
        deadline = time.monotonic() + 10.0
        while not fut.done() and time.monotonic() < deadline:
            ex.spin_once(timeout_sec=0.05)
        assert fut.done()
        return fut.result().results
    finally:
        ex.remove_node(client_node)
        client_node.destroy_node()


def test_node_refuses_pickled_weights_set_over_dds_and_runs_no_code(ros_context, evil_pt):
    from lss_bev_ros.nodes.detector_node import DetectorNode

    path, marker = evil_pt
    node = DetectorNode(context=ros_context, parameter_overrides=[
        Parameter("weights", value="yolo11n.yaml"), Parameter("imgsz", value=160),
        Parameter("autostart", value=False)])
    ex = SingleThreadedExecutor(context=ros_context)
    ex.add_node(node)
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        # configured: the weights path cannot change at run time, from anyone on the graph
        res = _set_remote(ros_context, ex, "detector_node",
                          [Parameter("weights", value=str(path))])
        assert not res[0].successful and "unconfigured" in res[0].reason
        res = _set_remote(ros_context, ex, "detector_node",
                          [Parameter("allow_pickled_weights", value=True)])
        assert not res[0].successful  # read-only: fixed at start-up
        assert node.p("weights") == "yolo11n.yaml"

        # a lifecycle reconfigure may change the path; the .pt is then refused at configure
        assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
        res = _set_remote(ros_context, ex, "detector_node",
                          [Parameter("weights", value=str(path))])
        assert res[0].successful, res[0].reason
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert "allow_pickled_weights" in node.diag.last_error.get("configure_failed", "")
        assert not marker.exists()
    finally:
        ex.remove_node(node)
        node.destroy_node()
