"""BevProcessor (ROS-free): output layout, missing-camera masking = excluding its frustum points,
pooling indices rebuilt only when the calibration changes; NuScenesFrames boxes in base_link."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from lss_bev_ros.backends import create_backend
from lss_bev_ros.bev_processor import (
    BevInputError,
    BevProcessor,
    camera_visibility,
)
from lss_bev_ros.calibration import NUSCENES_CAMERAS, load_rig_yaml
from lss_bev_ros.conversions import GridSpec
from lss_bev_ros.lss.config import LSSConfig
from lss_bev_ros.lss.model import LiftSplatShoot
from lss_bev_ros.lss.preprocess import prepare_inputs


@pytest.fixture(scope="module")
def model_cfg():
    torch.manual_seed(0)
    cfg = LSSConfig.small()
    return LiftSplatShoot(cfg).eval(), cfg


@pytest.fixture(scope="module")
def images(synth_root: Path) -> dict[str, np.ndarray]:
    out = {}
    for cam in NUSCENES_CAMERAS:
        path = sorted((synth_root / "samples" / cam).glob("*.jpg"))[0]
        out[cam] = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    return out


def test_process_output_matches_direct_model_and_rebuilds_only_on_change(
        model_cfg, images, synth_rig_file):
    model, cfg = model_cfg
    rig = load_rig_yaml(synth_rig_file)
    backend = create_backend("torch", model)
    proc = BevProcessor(backend, cfg, rig, threshold=0.5)
    out = proc.process(images, 12.5)
    assert out.probability.shape == (200, 200) and out.probability.dtype == np.float32
    assert out.visible.shape == (200, 200) and out.visible.dtype == bool
    assert 0.3 < out.visible.mean() < 0.95 and out.stamp == 12.5 and out.missing == ()
    for k in ("preprocess", "camera_encoder", "voxel_pooling", "bev_encoder", "postprocess"):
        assert out.stage_ms[k] >= 0.0
    assert out.calibration_rebuilt and proc.calibration_builds == 1
    # same numbers as the plain model forward on prepare_inputs
    K, R, T = rig.stacked()
    c2e = np.tile(np.eye(4), (6, 1, 1))
    c2e[:, :3, :3], c2e[:, :3, 3] = R, T
    inp = prepare_inputs([images[c] for c in rig.names], K, c2e, cfg)
    with torch.no_grad():
        ref = torch.sigmoid(model(*inp)[0, 0]).numpy()
    np.testing.assert_allclose(out.probability, ref, atol=1e-5)
    # same calibration: no rebuild; a changed intrinsic: exactly one rebuild
    assert not proc.process(images, 13.0).calibration_rebuilt
    cam = rig.camera("CAM_FRONT")
    k = cam.intrinsics.copy()
    k[0, 0] *= 1.01
    assert proc.set_rig(rig.replace_camera(cam.with_intrinsics(k, cam.width, cam.height)))
    assert not proc.set_rig(proc.rig)  # same fingerprint: no change
    assert proc.process(images, 14.0).calibration_rebuilt
    assert not proc.process(images, 15.0).calibration_rebuilt
    assert proc.calibration_builds == 2


def test_missing_camera_is_excluded_exactly(model_cfg, images, synth_rig_file):
    model, cfg = model_cfg
    rig = load_rig_yaml(synth_rig_file)
    proc = BevProcessor(create_backend("torch", model), cfg, rig)
    five = {k: v for k, v in images.items() if k != "CAM_BACK"}
    out = proc.process(five, 1.0)
    assert out.missing == ("CAM_BACK",)
    # reference: the model run on the five present cameras only (their features summed)
    sub = rig.subset([c for c in rig.names if c != "CAM_BACK"])
    K, R, T = sub.stacked()
    c2e = np.tile(np.eye(4), (5, 1, 1))
    c2e[:, :3, :3], c2e[:, :3, 3] = R, T
    inp = prepare_inputs([images[c] for c in sub.names], K, c2e, cfg)
    with torch.no_grad():
        ref = torch.sigmoid(model(*inp)[0, 0]).numpy()
    np.testing.assert_allclose(out.probability, ref, atol=1e-5)
    full_vis = proc.visibility(())
    assert out.visible.sum() < full_vis.sum()
    back = camera_visibility(rig, GridSpec(), (4.0, 45.0))["CAM_BACK"]
    only_back = back & ~np.any([m for n, m in camera_visibility(rig, GridSpec(), (4.0, 45.0))
                                .items() if n != "CAM_BACK"], axis=0)
    assert only_back.any() and not (out.visible & only_back).any()
    # x < 0 straight behind is seen by CAM_BACK only
    assert back[60, 100] and not out.visible[60, 100]
    with pytest.raises(BevInputError, match="all cameras missing"):
        proc.process({}, 2.0)
    with pytest.raises(BevInputError, match="unknown cameras"):
        proc.process({"CAM_SIDE": images["CAM_FRONT"]}, 2.0)


def test_frame_source_boxes_in_base_link(synth_root):
    """NuScenesFrames puts GT boxes in base_link: compare with the devkit's boxes in the LiDAR
    frame mapped through the LiDAR extrinsic."""
    from nuscenes.nuscenes import NuScenes

    from lss_bev_ros.calibration import quaternion_to_matrix
    from lss_bev_ros.data.frames import NuScenesFrames

    frames = NuScenesFrames(synth_root, image_scale=0.5)
    f = frames.frame(1)
    nusc = NuScenes("v1.0-mini", str(synth_root), verbose=False)
    sample = nusc.get("sample", f.token)
    _, boxes_lidar, _ = nusc.get_sample_data(sample["data"]["LIDAR_TOP"])
    cs = nusc.get("calibrated_sensor", nusc.get(
        "sample_data", sample["data"]["LIDAR_TOP"])["calibrated_sensor_token"])
    r, t = quaternion_to_matrix(cs["rotation"]), np.asarray(cs["translation"])
    want = sorted(tuple(np.round(r @ b.center + t, 3)) for b in boxes_lidar)
    got = sorted(tuple(np.round(b.center, 3)) for b in f.boxes)
    assert len(got) == len(want) > 0
    np.testing.assert_allclose(np.array(got), np.array(want), atol=2e-3)
    cam = f.cameras["CAM_FRONT"]
    assert (cam.width, cam.height) == (800, 450)
    assert cv2.imdecode(np.frombuffer(cam.jpeg, np.uint8), cv2.IMREAD_COLOR).shape == (450, 800, 3)
    assert f.lidar_points is not None and f.lidar_points.shape[1] == 5
    assert len(frames) == 4 and frames.frame(5).token == frames.frame(1).token  # wraps
