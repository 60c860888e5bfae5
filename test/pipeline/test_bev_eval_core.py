"""ROS-free cores: reference occupancy, stamp-paired evaluator, BEV colouring / camera tiling."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lss_bev_ros.conversions import GridSpec
from lss_bev_ros.eval.evaluator import BevEvaluator
from lss_bev_ros.eval.reference import (
    Box,
    LidarFilter,
    ReferenceKind,
    box_occupancy,
    boxes_from_markers,
    build_reference,
    lidar_occupancy,
    obstacle_points,
    transform_points,
)
from lss_bev_ros.visualization import (
    FN_RGB,
    FP_RGB,
    TP_RGB,
    UNSEEN_RGB,
    colorize_bev,
    tile_cameras,
)

GRID = GridSpec()


def _cell(x: float, y: float) -> tuple[int, int]:
    ix, iy, inside = GRID.cell_of(np.array([x]), np.array([y]))
    assert inside[0]
    return int(ix[0]), int(iy[0])


# ---------------------------------------------------------------------------- reference ----
def test_lidar_occupancy_filters_ground_ego_nan_and_counts_cells():
    pts = np.array([
        [10.2, 5.1, 1.0],     # obstacle -> cell (120, 110)
        [10.3, 5.2, 1.5],     # same cell
        [20.0, -3.0, 0.05],   # ground: removed
        [1.0, 0.0, 1.0],      # on the ego vehicle: removed
        [np.nan, 1.0, 1.0],   # NaN: removed
        [np.inf, 1.0, 1.0],   # inf: removed
        [-30.0, 30.0, 5.0],   # above z_max: removed
        [80.0, 0.0, 1.0],     # outside the grid: ignored
    ], np.float32)
    occ = lidar_occupancy(pts, GRID)
    assert occ.shape == (200, 200) and occ.dtype == bool
    assert np.argwhere(occ).tolist() == [list(_cell(10.2, 5.1))]
    assert len(obstacle_points(pts)) == 3  # two in the cell + the one outside the grid
    occ2 = lidar_occupancy(pts, GRID, LidarFilter(min_points=3))
    assert not occ2.any()


def test_lidar_occupancy_empty_cloud():
    assert not lidar_occupancy(np.zeros((0, 3), np.float32), GRID).any()


def test_transform_points_lidar_to_base():
    # nuScenes-like LIDAR_TOP: x right, y forward -> yaw -90 deg, mounted 1.84 m high
    c, s = math.cos(-math.pi / 2), math.sin(-math.pi / 2)
    r = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    t = np.array([0.9, 0.0, 1.84])
    out = transform_points(np.array([[0.0, 10.0, -1.0, 7.0]], np.float32), r, t)
    np.testing.assert_allclose(out[0, :3], [10.9, 0.0, 0.84], atol=1e-5)
    assert out[0, 3] == 7.0  # extra columns untouched


def test_box_footprint_rotated_and_category_filter():
    car = Box(10.0, 0.0, 0.8, 4.0, 2.0, 1.6, 0.0, "vehicle.car")
    ped = Box(-10.0, 4.0, 0.9, 0.7, 0.7, 1.8, 0.0, "human.pedestrian.adult")
    occ = box_occupancy([car, ped], GRID)
    cells = np.argwhere(occ)
    # car spans x 8..12 m (ix 116..124), y -1..1 m (iy 98..102); pedestrian filtered out
    assert cells[:, 0].min() == 116 and cells[:, 0].max() == 124
    assert cells[:, 1].min() == 98 and cells[:, 1].max() == 102
    assert occ[_cell(10.0, 0.0)]
    every = box_occupancy([car, ped], GRID, prefixes=None)
    assert every[_cell(-10.0, 4.0)] and every.sum() > occ.sum()
    turned = box_occupancy([Box(10.0, 0.0, 0.8, 4.0, 2.0, 1.6, math.pi / 2, "vehicle.car")],
                           GRID)
    tc = np.argwhere(turned)
    assert np.ptp(tc[:, 1]) > np.ptp(tc[:, 0])  # long axis now along y


class _Obj:
    def __init__(self, **kw):
        self.__dict__.update(kw)


def _marker(ns, x, y, yaw, length, w, frame="base_link", action=0, mtype=1):
    return _Obj(
        ns=ns, id=0, action=action, type=mtype, header=_Obj(frame_id=frame),
        pose=_Obj(position=_Obj(x=x, y=y, z=0.8),
                  orientation=_Obj(x=0.0, y=0.0, z=math.sin(yaw / 2), w=math.cos(yaw / 2))),
        scale=_Obj(x=length, y=w, z=1.5),
    )


def test_boxes_from_markers_duck_typed():
    arr = _Obj(markers=[_marker("", 0, 0, 0, 1, 1, action=3),
                        _marker("vehicle.car", 5.0, -2.0, 0.3, 4.5, 1.9),
                        _marker("arrow", 0, 0, 0, 1, 1, mtype=0)])
    boxes, frame = boxes_from_markers(arr)
    assert frame == "base_link" and len(boxes) == 1
    b = boxes[0]
    assert (b.category, b.x, b.y, b.length, b.width) == ("vehicle.car", 5.0, -2.0, 4.5, 1.9)
    assert b.yaw == pytest.approx(0.3)
    bad = _Obj(markers=[_marker("vehicle.car", float("nan"), 0, 0, 4, 2)])
    with pytest.raises(ValueError, match="non-finite"):
        boxes_from_markers(bad)
    mixed = _Obj(markers=[_marker("vehicle.car", 1, 0, 0, 4, 2),
                          _marker("vehicle.car", 1, 0, 0, 4, 2, frame="map")])
    with pytest.raises(ValueError, match="several frames"):
        boxes_from_markers(mixed)


def test_build_reference_kinds():
    car = Box(10.0, 0.0, 0.8, 4.0, 2.0, 1.6, 0.0, "vehicle.car")
    far_car = Box(-20.0, 10.0, 0.8, 4.0, 2.0, 1.6, 0.0, "vehicle.car")
    pts = np.array([[10.0, 0.0, 1.0], [30.0, 30.0, 1.0]], np.float32)  # hits car + a wall
    lid = build_reference("lidar", GRID, points_base=pts)
    gt = build_reference(ReferenceKind.GT_BOXES, GRID, boxes=[car, far_car])
    both = build_reference(2, GRID, points_base=pts, boxes=[car, far_car])
    assert lid.sum() == 2
    assert gt[_cell(-20.0, 10.0)] and gt[_cell(10.0, 0.0)]
    assert both.sum() == 1 and both[_cell(10.0, 0.0)]
    with pytest.raises(ValueError, match="needs LiDAR"):
        build_reference("lidar_in_boxes", GRID, boxes=[car])
    with pytest.raises(ValueError, match="unknown reference kind"):
        ReferenceKind.parse("radar")


# ---------------------------------------------------------------------------- evaluator ----
def _prob_from(mask: np.ndarray, p: float = 0.9) -> np.ndarray:
    return np.where(mask, p, 0.05).astype(np.float32)


def test_evaluator_pairs_by_stamp_and_computes_metrics():
    ev = BevEvaluator(GRID, "lidar", threshold=0.5, tolerance=0.05)
    pts = np.array([[10.0, 0.0, 1.0], [20.0, 5.0, 1.0]], np.float32)
    ref = lidar_occupancy(pts, GRID)
    assert ev.add_points(100.0, pts) == []
    pred = ref.copy()
    pred[_cell(20.0, 5.0)] = False      # one false negative
    pred[_cell(-5.0, -5.0)] = True      # one false positive
    res = ev.add_grid(100.02, _prob_from(pred), latency_ms=42.0)
    assert len(res) == 1
    r = res[0]
    assert (r.confusion.tp, r.confusion.fp, r.confusion.fn) == (1, 1, 1)
    assert r.iou == pytest.approx(1 / 3) and r.precision == 0.5 and r.recall == 0.5
    assert r.reference_stamp == 100.0 and r.frame_count == 1
    assert r.latency_p50_ms == 42.0
    # perfect second frame: running mean of the two
    ev.add_points(100.5, pts)
    r2 = ev.add_grid(100.5, _prob_from(ref), latency_ms=40.0)[0]
    assert r2.iou == 1.0 and r2.mean_iou == pytest.approx((1 / 3 + 1) / 2)
    assert ev.summary()["frame_count"] == 2


def test_evaluator_grid_before_reference_and_unmatched():
    ev = BevEvaluator(GRID, "lidar", tolerance=0.05)
    pts = np.array([[10.0, 0.0, 1.0]], np.float32)
    ref = lidar_occupancy(pts, GRID)
    assert ev.add_grid(5.0, _prob_from(ref)) == []       # waits for its reference
    res = ev.add_points(5.01, pts)
    assert len(res) == 1 and res[0].iou == 1.0
    # a grid whose reference never comes: a later reference makes it unmatched
    assert ev.add_grid(6.0, _prob_from(ref)) == []
    assert ev.add_points(7.0, pts) == []
    assert ev.stats.unmatched == 1
    ev.add_grid(8.0, _prob_from(ref))
    ev.flush()
    assert ev.stats.unmatched == 2


def test_evaluator_lidar_in_boxes_needs_both_halves():
    ev = BevEvaluator(GRID, "lidar_in_boxes", tolerance=0.05)
    car = Box(10.0, 0.0, 0.8, 4.0, 2.0, 1.6, 0.0, "vehicle.car")
    unseen = Box(-20.0, 10.0, 0.8, 4.0, 2.0, 1.6, 0.0, "vehicle.car")
    pts = np.array([[10.0, 0.0, 1.0]], np.float32)
    foot = box_occupancy([car], GRID)
    assert ev.add_grid(1.0, _prob_from(foot)) == []
    assert ev.add_boxes(1.0, [car, unseen]) == []       # LiDAR half still missing
    res = ev.add_points(1.01, pts)
    assert len(res) == 1
    c = res[0].confusion
    assert c.tp == 1 and c.fn == 0 and c.fp == foot.sum() - 1


def test_evaluator_visible_region_and_shape_check():
    ev = BevEvaluator(GRID, "lidar", region="visible")
    pts = np.array([[10.0, 0.0, 1.0], [-10.0, 0.0, 1.0]], np.float32)
    known = np.zeros((200, 200), bool)
    known[100:] = True                                  # only x >= 0 is seen
    ev.add_points(1.0, pts)
    r = ev.add_grid(1.0, np.zeros((200, 200), np.float32), known)[0]
    assert r.confusion.fn == 1                          # the unseen return is not counted
    with pytest.raises(ValueError, match="shape"):
        ev.add_grid(2.0, np.zeros((100, 100), np.float32))
    with pytest.raises(ValueError, match="region"):
        BevEvaluator(GRID, region="somewhere")


# ------------------------------------------------------------------------ visualization ----
def test_colorize_bev_orientation_unseen_and_outcomes():
    prob = np.zeros((200, 200), np.float32)
    ix, iy = _cell(40.0, 20.0)                          # far ahead, to the left
    prob[ix, iy] = 1.0
    vis = np.ones((200, 200), bool)
    vis[:, :10] = False                                 # far right strip unseen
    img = colorize_bev(prob, vis, ego_size_m=None)
    assert img.shape == (200, 200, 3) and img.dtype == np.uint8
    r, c = 199 - ix, 199 - iy                           # forward = up, left = left
    assert r < 100 and c < 100
    assert img[r, c].sum() > 400                        # bright (yellow) cell
    assert tuple(img[50, 195]) == UNSEEN_RGB            # right edge (small iy) is unseen
    ref = np.zeros((200, 200), bool)
    ref[ix, iy] = True
    ref[ix - 10, iy] = True                             # missed
    prob[ix + 10, iy] = 0.9                             # false alarm
    out = colorize_bev(prob, vis, ref, ego_size_m=None)
    assert tuple(out[r, c]) == TP_RGB
    assert tuple(out[199 - (ix - 10), c]) == FN_RGB
    assert tuple(out[199 - (ix + 10), c]) == FP_RGB
    big = colorize_bev(prob, vis, scale=2)
    assert big.shape == (400, 400, 3)
    assert (big[196:204, 196:204] == 255).all()         # ego footprint drawn at the centre


def test_tile_cameras_layout_overlays_and_missing():
    imgs = {name: np.full((90, 160, 3), 40 * k, np.uint8) for k, name in enumerate(
        ["CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_BACK_LEFT", "CAM_BACK"])}
    out = tile_cameras(imgs, {"CAM_FRONT": [(10, 10, 80, 60, "car #3")]},
                       tile_size=(90, 160), labels=False)
    assert out.shape == (180, 480, 3)
    assert tuple(out[150, 400]) == UNSEEN_RGB           # CAM_BACK_RIGHT missing: grey tile
    front = out[:90, 160:320]
    assert (front != 40).any(axis=2).sum() > 100        # box drawn on CAM_FRONT
    other = tile_cameras({"a": np.zeros((10, 10, 3), np.uint8)}, tile_size=(20, 30))
    assert other.shape == (20, 30, 3)
    with pytest.raises(ValueError, match="uint8"):
        tile_cameras({"a": np.zeros((10, 10), np.float32)})
