"""The polygon renderer agrees with per-pixel ray casting, also for boxes that cross the camera
plane or lie behind it (near-plane clipping, painter's order, projection)."""

from __future__ import annotations

import numpy as np
import pytest

from lss_bev_ros.data.lidar import ray_box_intersect
from lss_bev_ros.data.render import (
    NEAR_M,
    camera_view,
    clip_polygon,
    make_snapshot,
    polygon_area_in_image,
    render_camera,
)
from lss_bev_ros.data.world import (
    CATEGORY_STYLE,
    Road,
    World,
    WorldObject,
    nominal_rig,
)


def _world() -> World:
    road = Road((100.0, 100.0), 0.0, 0.0)
    ego_y = 100.0 + road.lane_offset(-1)  # ego at x = 100, heading +x
    car = CATEGORY_STYLE["vehicle.car"][0]
    truck = CATEGORY_STYLE["vehicle.truck"][0]

    def static(cat, color, x, y, yaw, size):
        return WorldObject(cat, size, color, "vehicle.parked", static_xy=(x, y), static_yaw=yaw)

    objects = (
        # a long truck beside the ego, crossing the image plane of the front cameras
        static("vehicle.truck", truck, 101.0, ego_y + 3.2, 0.0, (2.5, 12.0, 3.2)),
        static("vehicle.car", car, 116.0, ego_y, 0.1, (1.9, 4.5, 1.6)),  # ahead
        static("vehicle.car", car, 124.0, ego_y + 0.8, 0.0, (1.9, 4.5, 1.6)),  # partly hidden
        static("vehicle.car", car, 90.0, ego_y, 0.0, (1.9, 4.5, 1.6)),  # behind the ego
        static("vehicle.truck", truck, 103.0, ego_y - 2.6, 0.4, (2.5, 8.0, 3.0)),  # right, close
    )
    return World(
        road,
        nominal_rig(),
        objects,
        0.0,
        road.lane_offset(-1),
        0.0,
        np.array([0.3, 0.2, 0.93]),
        0.0,
    )


@pytest.mark.parametrize("channel", ["CAM_FRONT", "CAM_FRONT_LEFT", "CAM_FRONT_RIGHT", "CAM_BACK"])
def test_id_buffer_matches_ray_casting(channel: str) -> None:
    world = _world()
    snap = make_snapshot(world, 0.0)
    cam = world.rig.camera(channel)
    view = camera_view(world, cam, 0.0)
    res = render_camera(snap, view)
    vs, us = np.mgrid[2 : view.height : 7, 3 : view.width : 7]
    pix = np.stack([us.ravel(), vs.ravel(), np.ones(us.size)], axis=1)
    dirs_cam = pix @ np.linalg.inv(view.K).T
    dirs = dirs_cam @ view.R  # camera → global (R is global → camera)
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    b = snap.boxes
    t_in, _ = ray_box_intersect(view.center, dirs, b.centers, b.sizes[:, [1, 0, 2]] / 2, b.yaws)
    # The renderer clips at the near plane: hits closer than that along the optical axis vanish.
    depth_along_axis = t_in * (dirs @ view.R[2])
    t_in = np.where(depth_along_axis >= NEAR_M, t_in, np.inf)
    hit = np.where(np.isfinite(t_in.min(axis=0)), t_in.argmin(axis=0) + 1, 0)
    ids = res.ids[vs.ravel(), us.ravel()]
    agree = float(np.mean(ids == hit))
    assert agree > 0.995, agree
    assert (hit > 0).any() or channel == "CAM_BACK"
    # Visible pixel counts never exceed the projected areas (small rasterisation slack).
    assert np.all(res.visible_px <= res.full_px * 1.05 + 50)


def test_scene_pixels_show_expected_boxes() -> None:
    world = _world()
    snap = make_snapshot(world, 0.0)
    front = render_camera(snap, camera_view(world, world.rig.camera("CAM_FRONT"), 0.0))
    back = render_camera(snap, camera_view(world, world.rig.camera("CAM_BACK"), 0.0))
    # The car ahead is visible in front, partly hides the one behind it; the car behind the
    # ego is only seen by the back camera; nothing leaks from behind the front camera.
    assert front.visible_px[1] > 0 and back.visible_px[3] > 0
    assert front.visible_px[3] == 0
    assert 0 < front.visible_px[2] < front.full_px[2]


def test_clip_polygon_near_plane() -> None:
    quad = np.array([[-1.0, 0.0, -2.0], [1.0, 0.0, -2.0], [1.0, 0.0, 2.0], [-1.0, 0.0, 2.0]])
    out = clip_polygon(quad, np.array([0.0, 0.0, 1.0]), 0.5)
    assert len(out) == 4 and out[:, 2].min() == pytest.approx(0.5)
    assert len(clip_polygon(quad, np.array([0.0, 0.0, 1.0]), 5.0)) == 0
    assert clip_polygon(quad, np.array([0.0, 0.0, 1.0]), -5.0) is quad
    tri = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    assert polygon_area_in_image(tri, 100, 100) == pytest.approx(50.0)
    assert polygon_area_in_image(tri - [5.0, 0.0], 100, 100) == pytest.approx(12.5)
