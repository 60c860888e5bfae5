"""Ctrl-C (SIGINT) of a running bev_node, mid-inference, exits 0 with a clean stderr: no
traceback and nothing published after the ROS context is gone. Both ways users run it: the
one-process pipeline (``python -m lss_bev_ros.pipeline``) and the ``ros2 run``-style node
executable, each a separate process; the frames come from frame_player_node."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from nav_msgs.msg import OccupancyGrid
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node

REPO = Path(__file__).resolve().parents[2]
BAD_STDERR = ("Traceback", "context is invalid", "publisher's context", "Exception in thread",
              "terminate called")


def _yaml(tmp_path: Path, synth_root: Path) -> tuple[Path, Path]:
    rig = tmp_path / "rig.yaml"
    p = tmp_path / "p.yaml"
    p.write_text(yaml.safe_dump({
        "frame_player_node": {"ros__parameters": {
            "dataroot": str(synth_root), "rate_hz": 2.0, "loop": True,
            "image_type": "compressed", "image_scale": 0.25, "rig_file_out": str(rig)}},
        "bev_node": {"ros__parameters": {
            "rig_file": str(rig), "input_type": "compressed", "warmup": False,
            "missing_timeout_s": 3.0, "qos_reliable": True, "torch_threads": 1}},
    }, sort_keys=False))
    return p, rig


def _wait_grid_then_sigint(ctx, procs: list[subprocess.Popen], target: subprocess.Popen
                           ) -> None:
    node = Node("shutdown_listener", context=ctx)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    grids: list[OccupancyGrid] = []
    node.create_subscription(OccupancyGrid, "/bev/occupancy", grids.append, 10)
    try:
        deadline = time.monotonic() + 120.0
        while not grids and time.monotonic() < deadline:
            ex.spin_once(timeout_sec=0.1)
            assert all(p.poll() is None for p in procs), "a process died"
        assert grids, "no grid before the deadline"
        time.sleep(0.3)  # frames arrive at 2 Hz and take longer: the worker is inferring
        target.send_signal(signal.SIGINT)
    finally:
        ex.shutdown()
        node.destroy_node()


def _finish(p: subprocess.Popen) -> tuple[int, str]:
    try:
        _, err = p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        _, err = p.communicate()
        pytest.fail(f"did not exit within 60 s of SIGINT; stderr:\n{err}")
    return p.returncode, err


# sets SIGINT to SIG_DFL / SIG_IGN, then execs the interpreter on the rest (exec keeps both)
_WITH_SIGINT = ("import os, signal, sys; signal.signal(signal.SIGINT, getattr(signal, "
                "sys.argv[1])); os.execv(sys.executable, [sys.executable, *sys.argv[2:]])")


def _popen(args: list[str], sigint: str = "SIG_DFL") -> subprocess.Popen:
    """The child starts with SIGINT ``sigint`` ("SIG_IGN": as a background job of a
    non-interactive shell; else whatever this process passes on would decide)."""
    return subprocess.Popen([sys.executable, "-c", _WITH_SIGINT, sigint, *args], cwd=REPO,
                            env=dict(os.environ), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("sigint", ["SIG_DFL", "SIG_IGN"])
def test_sigint_of_the_one_process_pipeline_mid_inference_exits_cleanly(
        ros_context, synth_root, tmp_path, sigint):
    params, _ = _yaml(tmp_path, synth_root)
    p = _popen(["-m", "lss_bev_ros.pipeline", "--params-file", str(params)], sigint)
    try:
        _wait_grid_then_sigint(ros_context, [p], p)
        rc, err = _finish(p)
    finally:
        if p.poll() is None:
            p.kill()
    assert rc == 0, err
    assert not [b for b in BAD_STDERR if b in err], err


def test_sigint_of_the_bev_node_executable_mid_inference_exits_cleanly(
        ros_context, synth_root, tmp_path):
    params, rig = _yaml(tmp_path, synth_root)
    player = _popen(["-m", "lss_bev_ros.pipeline", "--params-file", str(params),
                     "--nodes", "frame_player_node"])
    bev = None
    try:
        deadline = time.monotonic() + 60.0
        while not rig.is_file() and time.monotonic() < deadline:
            time.sleep(0.2)
        bev = _popen(["-m", "lss_bev_ros.nodes.bev_node", "--ros-args", "--params-file",
                      str(params)])
        _wait_grid_then_sigint(ros_context, [player, bev], bev)
        rc, err = _finish(bev)
    finally:
        for p in (player, bev):
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGINT)
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    p.kill()
    assert rc == 0, err
    assert not [b for b in BAD_STDERR if b in err], err
