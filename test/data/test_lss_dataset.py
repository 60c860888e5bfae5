"""LSSDataset on a synthetic nuScenes root: tensor shapes, reference label rasterisation and
calibration."""

from __future__ import annotations

import cv2
import numpy as np
import torch
from nuscenes.utils.data_classes import Box
from pyquaternion import Quaternion

from lss_bev_ros.data.dataset import (
    LSSDataset,
    box_bottom_corners,
    sample_inputs,
    scene_sample_tokens,
    vehicle_mask,
)
from lss_bev_ros.lss.config import LSSConfig


def _reference_binimg(nusc, sample_token: str, cfg: LSSConfig) -> np.ndarray:
    """The reference `SegmentationData.get_binimg`, verbatim in spirit (devkit Box)."""
    rec = nusc.get("sample", sample_token)
    sd = nusc.get("sample_data", rec["data"]["LIDAR_TOP"])
    egopose = nusc.get("ego_pose", sd["ego_pose_token"])
    trans = -np.array(egopose["translation"])
    rot = Quaternion(egopose["rotation"]).inverse
    dx = np.array(cfg.grid.dx[:2])
    bx = np.array(cfg.grid.bx[:2])
    img = np.zeros(cfg.grid.bev_shape)
    for tok in rec["anns"]:
        inst = nusc.get("sample_annotation", tok)
        if inst["category_name"].split(".")[0] != "vehicle":
            continue
        box = Box(inst["translation"], inst["size"], Quaternion(inst["rotation"]))
        box.translate(trans)
        box.rotate(rot)
        pts = box.bottom_corners()[:2].T
        pts = np.round((pts - bx + dx / 2.0) / dx).astype(np.int32)
        pts[:, [1, 0]] = pts[:, [0, 1]]
        cv2.fillPoly(img, [pts], 1.0)
    return img


def test_items_have_reference_shapes_and_labels(nusc) -> None:
    cfg = LSSConfig.small()
    ds = LSSDataset(nusc, ["synth-0000", "synth-0001"], cfg, is_train=True, seed=1)
    assert len(ds) == len(nusc.sample)
    item = ds[1]
    H, W = cfg.image.final_dim
    N = cfg.image.ncams
    shapes = [tuple(t.shape) for t in item]
    assert shapes == [
        (N, 3, H, W),
        (N, 3, 3),
        (N, 3),
        (N, 3, 3),
        (N, 3, 3),
        (N, 3),
        (1, *cfg.grid.bev_shape),
    ]
    assert all(t.dtype == torch.float32 for t in item)
    for i, tok in enumerate(ds.tokens):
        ref = _reference_binimg(nusc, tok, cfg)
        assert np.array_equal(ds[i][6][0].numpy(), ref)
        assert ref.sum() > 20  # every frame has vehicles in the grid


def test_label_axes_are_x_forward_y_left(nusc) -> None:
    """A vehicle's footprint centre lands in cell [ix, iy] of its ego (x, y)."""
    cfg = LSSConfig.small()
    tok = nusc.sample[0]["token"]
    mask = vehicle_mask(nusc, tok, cfg.grid)
    rec = nusc.get("sample", tok)
    pose = nusc.get("ego_pose", nusc.get("sample_data", rec["data"]["LIDAR_TOP"])["ego_pose_token"])
    R = Quaternion(pose["rotation"]).rotation_matrix
    hits = 0
    for a in rec["anns"]:
        ann = nusc.get("sample_annotation", a)
        if not ann["category_name"].startswith("vehicle."):
            continue
        p = R.T @ (np.asarray(ann["translation"]) - pose["translation"])
        ix, iy = int((p[0] + 50) / 0.5), int((p[1] + 50) / 0.5)
        if 0 <= ix < 200 and 0 <= iy < 200:
            assert mask[ix, iy] == 1.0
            hits += 1
    assert hits > 3


def test_calibration_is_camera_to_ego(nusc) -> None:
    cfg = LSSConfig.small()
    tok = nusc.sample[0]["token"]
    inp = sample_inputs(nusc, tok, cfg)
    assert inp.imgs.shape == (1, 6, 3, *cfg.image.final_dim)
    for n, cam in enumerate(cfg.image.cams):
        sd = nusc.get("sample_data", nusc.get("sample", tok)["data"][cam])
        cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
        R = Quaternion(cs["rotation"]).rotation_matrix
        assert torch.allclose(inp.rots[0, n], torch.tensor(R, dtype=torch.float32), atol=1e-6)
        assert torch.allclose(inp.trans[0, n], torch.tensor(cs["translation"]).float())
        assert torch.allclose(inp.intrins[0, n], torch.tensor(cs["camera_intrinsic"]).float())
    # Eval transform: deterministic, no flip (post_rot diagonal positive).
    again = sample_inputs(nusc, tok, cfg)
    assert torch.equal(inp.imgs, again.imgs)
    assert torch.all(inp.post_rots[0, :, 0, 0] > 0)


def test_train_mode_augments_and_is_seeded(nusc) -> None:
    cfg = LSSConfig.small()
    a = LSSDataset(nusc, ["synth-0000"], cfg, is_train=True, seed=5)
    b = LSSDataset(nusc, ["synth-0000"], cfg, is_train=True, seed=5)
    ev = LSSDataset(nusc, ["synth-0000"], cfg, is_train=False)
    xa, xb, xe = a[0], b[0], ev[0]
    assert all(torch.equal(u, v) for u, v in zip(xa, xb, strict=True))
    assert not torch.equal(xa[4], xe[4])  # different post_rots
    assert torch.equal(xa[6], xe[6])  # labels do not depend on image augmentation


def test_camera_subset_in_training(nusc) -> None:
    cfg = LSSConfig.small()
    cfg = cfg.replace(image=type(cfg.image)(final_dim=cfg.image.final_dim, ncams=4))
    ds = LSSDataset(nusc, ["synth-0001"], cfg, is_train=True, seed=0)
    assert ds[0][0].shape[0] == 4
    assert LSSDataset(nusc, ["synth-0001"], cfg, is_train=False)[0][0].shape[0] == 6


def test_scene_tokens_and_bottom_corners(nusc) -> None:
    toks = scene_sample_tokens(nusc, ["synth-0001", "synth-0000"])
    assert len(toks) == len(nusc.sample)
    assert nusc.get("sample", toks[0])["prev"] == ""
    ann = nusc.sample_annotation[0]
    box = Box(ann["translation"], ann["size"], Quaternion(ann["rotation"]))
    ours = box_bottom_corners(ann["translation"], ann["size"], ann["rotation"])
    np.testing.assert_allclose(ours, box.bottom_corners().T, atol=1e-9)


def test_auxiliary_lidar_targets(nusc) -> None:
    cfg = LSSConfig.small()
    ds = LSSDataset(nusc, ["synth-0000"], cfg, is_train=True, seed=2, aux_targets=True)
    item = ds[0]
    assert len(item) == 9
    depth, veh = item[7], item[8]
    fH, fW = cfg.feature_size
    D = cfg.grid.num_depth_bins
    assert depth.shape == (6, D, fH, fW) and veh.shape == (6, fH, fW)
    sums = depth.sum(dim=1)
    has = sums > 0
    assert torch.allclose(sums[has], torch.ones(int(has.sum())), atol=1e-5)
    assert torch.equal(has, veh >= 0)
    assert has.float().mean() > 0.5  # lidar covers most of the lift grid below the horizon
    assert ((veh[has] >= 0) & (veh[has] <= 1)).all() and (veh[has] > 0.5).any()
    # The lowest frustum row looks at the road a few metres ahead of each camera.
    d0, _, step = cfg.grid.dbound
    bottom = depth[:, :, -1, :].argmax(dim=1).float() * step + d0
    assert float(bottom[has[:, -1, :]].median()) < 12.0
