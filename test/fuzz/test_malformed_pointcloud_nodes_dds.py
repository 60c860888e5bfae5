"""Malformed PointCloud2 over real DDS (issue 13, item 3): eval_node and dashboard_node, run in
their own process, count every bad cloud in /diagnostics and keep evaluating and serving."""

from __future__ import annotations

import array
import copy

import numpy as np
from fuzz_testutil import cloud_msg, eval_and_dashboard_params, stamp, wait_for
from nav_msgs.msg import OccupancyGrid
from sensor_msgs.msg import PointCloud2

from lss_bev_ros.conversions import GridSpec, probability_to_occupancy
from lss_bev_ros.msg import BevMetrics

OBSTACLES = np.array([[10.0, 0.0, 1.0], [20.0, 5.0, 1.0]])  # base_link, metres


def _mutated(t: float) -> dict[str, PointCloud2]:
    good = cloud_msg(OBSTACLES, t)

    def change(**kw) -> PointCloud2:
        m = copy.deepcopy(good)
        for k, v in kw.items():
            setattr(m, k, v)
        return m

    def field(name: str, **kw) -> PointCloud2:
        m = copy.deepcopy(good)
        for f in m.fields:
            if f.name == name:
                for k, v in kw.items():
                    setattr(f, k, v)
        return m

    return {
        "offset beyond point_step": field("z", offset=200),
        "point_step 4": change(point_step=4, row_step=8),
        "data not a multiple": change(data=array.array("B", bytes(good.data)[:-7])),
        "width x height mismatch": change(height=5),
        "unknown datatype": field("x", datatype=99),
    }


def _grid(t: float) -> OccupancyGrid:
    prob = np.zeros((200, 200), np.float32)
    ix, iy, _ = GridSpec().cell_of(np.array([10.0]), np.array([0.0]))
    prob[ix[0], iy[0]] = 0.9
    g = OccupancyGrid()
    g.header.stamp, g.header.frame_id = stamp(t), "base_link"
    g.info.resolution, g.info.width, g.info.height = 0.5, 200, 200
    g.info.origin.position.x = g.info.origin.position.y = -50.0
    g.info.origin.orientation.w = 1.0
    g.data = array.array("b", probability_to_occupancy(prob).tobytes())
    return g


def test_malformed_clouds_are_counted_and_both_nodes_keep_running(listener, start_nodes):
    nodes = start_nodes(eval_and_dashboard_params())
    pub_cloud = listener.publisher(PointCloud2, "/lidar_top/points")
    pub_grid = listener.publisher(OccupancyGrid, "/bev/occupancy", depth=10)
    metrics: list[BevMetrics] = []
    listener.node.create_subscription(BevMetrics, "/bev/metrics", metrics.append, 10)
    assert wait_for(lambda: pub_cloud.get_subscription_count() >= 2
                    and pub_grid.get_subscription_count() >= 2
                    and listener.values("eval_node") and listener.values("dashboard_node"),
                    60.0), f"nodes never came up:\n{nodes.log()[-3000:]}"

    # one at a time: the nodes' cloud subscriptions keep only the last 2 (sensor QoS)
    for n, (case, msg) in enumerate(_mutated(100.0).items(), start=1):
        pub_cloud.publish(msg)
        assert wait_for(lambda n=n: listener.count("eval_node", "bad_pointcloud") == n
                        and listener.count("dashboard_node", "bad_pointcloud") == n, 20.0), (
            case, listener.values("eval_node"), listener.values("dashboard_node"),
            nodes.log()[-3000:])
    assert nodes.alive(), nodes.log()[-3000:]
    assert "Traceback" not in nodes.log()

    # still working: a good cloud + grid is evaluated, the dashboard still takes grids
    pub_cloud.publish(cloud_msg(OBSTACLES, 101.0))
    assert wait_for(lambda: listener.count("eval_node", "clouds") >= 1, 10.0)
    pub_grid.publish(_grid(101.0))
    assert wait_for(lambda: len(metrics) >= 1
                    and listener.count("dashboard_node", "grids") >= 1, 15.0), (
        listener.values("eval_node"), nodes.log()[-3000:])
    assert (metrics[0].true_positive_cells, metrics[0].false_negative_cells) == (1, 1)
    assert nodes.alive()
