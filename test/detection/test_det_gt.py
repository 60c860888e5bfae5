"""2D GT projection from nuScenes 3D boxes (real nuscenes-devkit on generated scenes)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from nuscenes.nuscenes import NuScenes
from nuscenes.utils.data_classes import Box
from pyquaternion import Quaternion

from lss_bev_ros.data.synthetic import generate_dataset
from lss_bev_ros.detection.gt import (
    CLASS_NAMES,
    GTConfig,
    camera_gt,
    category_to_class,
    clip_to_near_plane,
    occlusion_fractions,
    project_silhouette,
    scene_camera_frames,
)

K = np.array([[1000.0, 0, 800], [0, 1000.0, 450], [0, 0, 1]])
SIZE = (900, 1600)


def _box_cam(center, wlh=(2.0, 4.0, 1.5)) -> np.ndarray:
    """Corners of a box in the camera optical frame (z forward)."""
    return Box(center, wlh, Quaternion(axis=[0, 1, 0], angle=0.0)).corners()


@pytest.fixture(scope="module")
def nusc(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth_gt")
    generate_dataset(root, n_scenes=1, samples_per_scene=3, seed=3, progress=False)
    return NuScenes(version="v1.0-mini", dataroot=str(root), verbose=False)


def test_category_mapping():
    assert category_to_class("vehicle.car") == 0
    assert CLASS_NAMES[category_to_class("vehicle.bus.rigid")] == "bus"
    assert CLASS_NAMES[category_to_class("human.pedestrian.adult")] == "pedestrian"
    assert category_to_class("vehicle.bicycle") is None
    assert category_to_class("vehicle.carrier") is None  # prefix must end at a dot


def test_box_in_front_projects_like_pinhole():
    sil = project_silhouette(_box_cam([0.0, 0.0, 20.0]), K, SIZE)
    assert sil is not None
    poly, inside = sil
    assert inside == pytest.approx(1.0)
    x1, y1 = poly.min(axis=0)
    x2, y2 = poly.max(axis=0)
    # centred box: symmetric around the principal point
    assert (x1 + x2) / 2 == pytest.approx(800, abs=1e-6)
    assert (y1 + y2) / 2 == pytest.approx(450, abs=1e-6)
    # identity rotation: length 4 m along camera x, height 1.5 m along z (nearest face z=19.25)
    assert x2 - x1 == pytest.approx(1000 * 4.0 / 19.25, rel=1e-6)
    assert y2 - y1 == pytest.approx(1000 * 2.0 / 19.25, rel=1e-6)


def test_box_behind_camera_is_dropped_and_straddling_box_is_clipped():
    assert project_silhouette(_box_cam([0.0, 0.0, -10.0]), K, SIZE) is None
    corners = _box_cam([3.0, 0.0, 0.5], wlh=(2.0, 6.0, 1.5))  # from z=-2.5 to z=3.5
    pts = clip_to_near_plane(corners, near=0.1)
    assert pts[2].min() >= 0.1 - 1e-9
    # corners behind were replaced by near-plane crossings, not simply dropped
    assert np.isclose(pts[2], 0.1).sum() >= 4
    sil = project_silhouette(corners, K, SIZE, near=0.1)
    assert sil is not None
    poly, inside = sil
    assert inside < 0.5  # most of the near-plane silhouette is outside the image
    assert poly[:, 0].min() >= 0 and poly[:, 0].max() <= SIZE[1]
    assert poly[:, 1].min() >= 0 and poly[:, 1].max() <= SIZE[0]


def test_occlusion_painters_order():
    near = np.array([[100, 100], [300, 100], [300, 300], [100, 300]], float)
    far = np.array([[150, 150], [250, 150], [250, 250], [150, 250]], float)  # fully behind
    side = np.array([[500, 100], [600, 100], [600, 200], [500, 200]], float)
    occ = occlusion_fractions([far, near, side], np.array([20.0, 5.0, 10.0]), SIZE)
    assert occ[0] == pytest.approx(1.0)
    assert occ[1] == 0.0
    assert occ[2] == 0.0


def test_gt_on_synthetic_scene(nusc):
    sample = nusc.sample[1]
    total = 0
    for cam in ("CAM_FRONT", "CAM_BACK", "CAM_FRONT_LEFT"):
        g = camera_gt(nusc, sample["data"][cam])
        total += len(g)
        h, w = g.image_size
        assert (h, w) == (900, 1600)
        assert g.image_path.is_file()
        assert np.all(g.xyxy[:, :2] >= 0) and np.all(g.xyxy[:, 2] <= w)
        assert np.all(g.xyxy[:, 3] <= h)
        assert np.all(g.xyxy[:, 2] - g.xyxy[:, 0] >= GTConfig().min_size_px)
        assert np.all(g.occlusion <= GTConfig().max_occlusion)
        assert len(g.instance) == len(g.cls) == len(g)
        lines = g.yolo_labels().splitlines()
        assert len(lines) == len(g)
        for line in lines:
            vals = [float(v) for v in line.split()]
            assert int(vals[0]) in range(len(CLASS_NAMES))
            assert all(0.0 <= v <= 1.0 for v in vals[1:])
    assert total > 0, "the synthetic scene should have objects in these cameras"
    # strict filters keep a subset
    strict = camera_gt(nusc, sample["data"]["CAM_FRONT"], GTConfig(max_occlusion=0.0,
                                                                     min_size_px=40))
    assert len(strict) <= len(camera_gt(nusc, sample["data"]["CAM_FRONT"]))


def test_scene_frames_in_time_order_with_stable_instances(nusc):
    frames = list(scene_camera_frames(nusc, nusc.scene[0]["token"], "CAM_FRONT"))
    assert len(frames) == 3
    assert [f.timestamp_us for f in frames] == sorted(f.timestamp_us for f in frames)
    seen = [set(f.instance) for f in frames]
    assert seen[0] & seen[1], "objects persist between consecutive key frames"


def test_rendered_sequence_gt_agrees_with_nuscenes_gt(nusc):
    """Camera-rate rendering (tracking eval) and the nuScenes tables describe the same boxes."""
    from lss_bev_ros.detection.evaluate import box_iou
    from lss_bev_ros.detection.sequences import render_sequence

    # the fixture is seed 3, one scene of 3 key frames (t = 0, 0.5, 1.0 s)
    sets = list(render_sequence(3, 0, ["CAM_FRONT", "CAM_BACK"], rate_hz=2.0, duration_s=1.0))
    assert [s[0].t for s in sets] == [0.0, 0.5, 1.0]
    matched = total = 0
    for k, frames in enumerate(sets):
        sample = nusc.sample[k]
        for f in frames:
            ref = camera_gt(nusc, sample["data"][f.camera])
            img = cv2.cvtColor(cv2.imread(str(ref.image_path)), cv2.COLOR_BGR2RGB)
            assert np.abs(img.astype(int) - f.rgb.astype(int)).mean() < 3  # same pixels (JPEG)
            if len(f.gt) and len(ref):
                iou = box_iou(f.gt.xyxy, ref.xyxy).max(axis=1)
                matched += int((iou > 0.95).sum())
            total += len(f.gt)
    assert total > 0
    # the occlusion filters differ slightly (rendered pixels vs painter's raster), boxes do not
    assert matched >= 0.85 * total, f"{matched}/{total}"
