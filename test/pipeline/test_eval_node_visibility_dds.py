"""eval_node over real DDS with its default reference, lidar_visibility: occluded cells are
not scored, observed free cells are."""

from __future__ import annotations

import numpy as np
import pytest
from rclpy.parameter import Parameter
from test_eval_node_dds import (  # noqa: F401  (rig_file is a fixture)
    GRID,
    _base_to_lidar,
    _cloud,
    _grid,
    _Harness,
    rig_file,
)

from lss_bev_ros.msg import BevMetrics
from lss_bev_ros.nodes.eval_node import EvalNode


def _cell(x: float, y: float) -> tuple[int, int]:
    ix, iy, _ = GRID.cell_of(np.array([x]), np.array([y]))
    return int(ix[0]), int(iy[0])


def test_eval_node_default_reference_scores_only_what_lidar_observed(
    ros_context, rig_file, spin  # noqa: F811
):
    node = EvalNode(context=ros_context, parameter_overrides=[
        Parameter("rig_file", value=rig_file), Parameter("stamp_tolerance_s", value=0.05)])
    assert node.maybe_autostart()
    h = _Harness(ros_context, node)
    try:
        h.connected(spin)
        # a wall 10 m ahead (y -2..2 m, 0.5..2 m high): the LiDAR (1 m forward, 1.8 m up) sees it
        wall = np.array([[10.0, y, z] for y in np.arange(-2.0, 2.0, 0.1) for z in (0.6, 1.2)])
        road = np.array([[x, y, 0.0] for x in np.arange(6.0, 9.5, 0.5) for y in (-0.5, 0.0, 0.5)])
        pts = _base_to_lidar(np.vstack([wall, road])).astype(np.float32)
        h.pub_cloud.publish(_cloud(pts, 100.0))
        prob = np.zeros((200, 200), np.float32)
        for y in np.arange(-2.0, 2.0, 0.5):
            prob[_cell(10.0, y)] = 0.9  # the wall: true positives
            prob[_cell(13.0, y)] = 0.9  # behind the wall: occluded, not scored
        prob[_cell(5.0, 0.2)] = 0.9  # observed free space: a false positive
        prob[_cell(-20.0, -20.0)] = 0.9  # no beam went there: not scored
        assert spin(h.ex, lambda: h.node.diag.counters.get("clouds", 0) == 1, 10.0)
        h.pub_grid.publish(_grid(prob, 100.02))
        assert spin(h.ex, lambda: len(h.metrics) == 1, 10.0), "no BevMetrics"
        m = h.metrics[0]
        assert m.reference_kind == BevMetrics.REFERENCE_LIDAR_VISIBILITY
        assert "observed" in m.reference_description
        assert (m.true_positive_cells, m.false_positive_cells) == (8, 1)
        assert 0.0 < m.observed_fraction < 0.05
        assert m.mean_observed_fraction == pytest.approx(m.observed_fraction)
    finally:
        h.close()
