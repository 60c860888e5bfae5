"""The colcon-installed executables start the way ``ros2 run lss_bev_ros <name>`` starts them:
found through the ament index (``<prefix>/lib/lss_bev_ros/<name>``), run as their own process,
seen over real DDS. ``ros2`` itself (ros2cli) has no wheels here; this is its lookup."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node

REPO = Path(__file__).resolve().parents[2]


def _executable(name: str) -> Path:
    from ament_index_python.packages import get_package_prefix

    exe = Path(get_package_prefix("lss_bev_ros")) / "lib" / "lss_bev_ros" / name
    assert os.access(exe, os.X_OK), f"{exe} is not an executable"
    return exe


def _stop(proc: subprocess.Popen) -> tuple[int, str]:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        out, _ = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:  # hung: SIGABRT makes faulthandler print every thread
        proc.send_signal(signal.SIGABRT)
        try:
            out, _ = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        out = f"no exit 30 s after SIGINT; threads at SIGABRT:\n{out}"
    return proc.returncode, out


def test_installed_eval_node_executable_comes_up_active_over_dds(ros_context, spin) -> None:
    listener = Node("lss_ros2_run_listener", context=ros_context)
    got: list[DiagnosticArray] = []
    listener.create_subscription(DiagnosticArray, "/diagnostics", got.append, 10)
    ex = SingleThreadedExecutor(context=ros_context)
    ex.add_node(listener)
    proc = subprocess.Popen(
        [str(_executable("eval_node")), "--ros-args", "-r", "__node:=lss_ros2_run_eval"],
        cwd=str(REPO), env=dict(os.environ, PYTHONFAULTHANDLER="1"), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    try:
        seen = spin(ex, lambda: any(s.name == "/lss_ros2_run_eval" for a in got
                                    for s in a.status), timeout=60)
        alive = proc.poll() is None
    finally:
        rc, out = _stop(proc)
        ex.shutdown()
        listener.destroy_node()
    assert seen and alive, f"no diagnostics from the installed eval_node (rc {rc}):\n{out[-3000:]}"
    assert rc == 0 and "Traceback" not in out, f"rc {rc}:\n{out[-6000:]}"


def test_installed_pipeline_executable_runs_eval_node_and_stops(tmp_path) -> None:
    params = tmp_path / "eval.yaml"
    params.write_text("eval_node:\n  ros__parameters:\n    reference: gt_boxes\n")
    proc = subprocess.run(
        [str(_executable("pipeline")), "--params-file", str(params), "--duration", "2"],
        cwd=str(REPO), env=dict(os.environ), capture_output=True, text=True, timeout=120,
        check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "eval_node: active=True" in proc.stdout and "[pipeline] stopping" in proc.stdout
