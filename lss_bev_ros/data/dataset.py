"""nuScenes (real or synthetic) → Lift-Splat-Shoot training tensors.

Follows the reference `SegmentationData` (nv-tlabs/lift-splat-shoot `src/data.py`):

* images of `cfg.image.cams` (a random subset of `cfg.image.ncams` in training), resized /
  cropped / flipped / rotated by `lss.preprocess` with the matching `post_rot`, `post_tran`;
* `rots`, `trans`: camera (optical frame) → ego from `calibrated_sensor`; `intrins`: raw K;
* `binimg` 1 x X x Y: footprints (bottom corners) of `vehicle.*` boxes in the ego frame of the
  LIDAR_TOP sample_data's ego pose, rasterised with `cv2.fillPoly` exactly as the reference:
  `binimg[0, ix, iy]`, ix along ego x (forward), iy along ego y (left), as the model output.

Optional auxiliary targets from LIDAR_TOP (`aux_targets=True`, not in the reference), per
camera and frustum cell (the model's `D x fH x fW` lift grid):

* `depth` N x D x fH x fW: normalised histogram of the depths of the lidar points that project
  into the cell (nearest frustum column/row and depth bin); all zero where no point lands;
* `vehicle` N x fH x fW: fraction of those points that lie inside `vehicle.*` boxes, -1 where
  no point lands.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from lss_bev_ros.lss.config import GridConfig, LSSConfig
from lss_bev_ros.lss.preprocess import LSSInputs, prepare_inputs

VEHICLE_PREFIX = "vehicle."

Sample = tuple[Tensor, ...]


def _quat_to_matrix(q: Sequence[float]) -> np.ndarray:
    """3 x 3 rotation of a unit quaternion [w, x, y, z]."""
    w, x, y, z = (float(v) for v in q)
    n = w * w + x * x + y * y + z * z
    s = 2.0 / n
    return np.array(
        [
            [1 - s * (y * y + z * z), s * (x * y - z * w), s * (x * z + y * w)],
            [s * (x * y + z * w), 1 - s * (x * x + z * z), s * (y * z - x * w)],
            [s * (x * z - y * w), s * (y * z + x * w), 1 - s * (x * x + y * y)],
        ]
    )


def _transform(rotation: Sequence[float], translation: Sequence[float]) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = _quat_to_matrix(rotation)
    T[:3, 3] = translation
    return T


def scene_sample_tokens(nusc: Any, scene_names: Sequence[str]) -> list[str]:
    """Sample tokens of the named scenes, scene by scene (in the given order), in time order."""
    by_name = {s["name"]: s for s in nusc.scene}
    missing = [n for n in scene_names if n not in by_name]
    if missing:
        raise KeyError(f"scenes not in this dataset: {missing}")
    tokens: list[str] = []
    for name in scene_names:
        tok = by_name[name]["first_sample_token"]
        while tok:
            tokens.append(tok)
            tok = nusc.get("sample", tok)["next"]
    return tokens


def camera_calibration(
    nusc: Any, sample_token: str, cams: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Intrinsics (N x 3 x 3), camera → ego transforms (N x 4 x 4) and image paths of `cams`."""
    sample = nusc.get("sample", sample_token)
    Ks, Ts, paths = [], [], []
    for cam in cams:
        sd = nusc.get("sample_data", sample["data"][cam])
        cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
        Ks.append(np.asarray(cs["camera_intrinsic"], dtype=np.float64))
        Ts.append(_transform(cs["rotation"], cs["translation"]))
        paths.append(nusc.get_sample_data_path(sd["token"]))
    return np.stack(Ks), np.stack(Ts), paths


def load_rgb(path: str) -> np.ndarray:
    """H x W x 3 uint8 RGB image from disk."""
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(path)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def sample_inputs(
    nusc: Any,
    sample_token: str,
    cfg: LSSConfig,
    cams: Sequence[str] | None = None,
    train: bool = False,
    rng: np.random.Generator | None = None,
) -> LSSInputs:
    """Model inputs of one sample with a batch dim of 1 (eval transform unless `train`).

    `cams` defaults to `cfg.image.cams`.
    """
    cams = tuple(cams) if cams is not None else cfg.image.cams
    K, T, paths = camera_calibration(nusc, sample_token, cams)
    images = [load_rgb(p) for p in paths]
    return prepare_inputs(images, K, T, cfg, train=train, rng=rng)


def ego_pose_of_lidar(nusc: Any, sample_token: str) -> np.ndarray:
    """4 x 4 ego → global transform at the sample's LIDAR_TOP sweep."""
    sample = nusc.get("sample", sample_token)
    sd = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
    pose = nusc.get("ego_pose", sd["ego_pose_token"])
    return _transform(pose["rotation"], pose["translation"])


def box_bottom_corners(
    translation: Sequence[float], size: Sequence[float], rotation: Sequence[float]
) -> np.ndarray:
    """4 x 3 bottom corners of a nuScenes box (size w, l, h), `Box.bottom_corners()` order."""
    w, length, h = (float(v) for v in size)
    x = length / 2 * np.array([1, 1, -1, -1])
    y = w / 2 * np.array([-1, 1, 1, -1])
    z = -h / 2 * np.ones(4)
    R = _quat_to_matrix(rotation)
    return (R @ np.stack([x, y, z])).T + np.asarray(translation, dtype=np.float64)


def vehicle_mask(
    nusc: Any, sample_token: str, grid: GridConfig, prefixes: Sequence[str] = (VEHICLE_PREFIX,)
) -> np.ndarray:
    """X x Y float32 mask of the footprints of boxes whose category starts with `prefixes`.

    Ego frame of the LIDAR_TOP ego pose; indexed [ix, iy] (x forward, y left).
    """
    ego_to_global = ego_pose_of_lidar(nusc, sample_token)
    global_to_ego = np.linalg.inv(ego_to_global)
    dx = np.asarray(grid.dx[:2])
    bx = np.asarray(grid.bx[:2])
    nx = grid.nx
    img = np.zeros((nx[0], nx[1]), dtype=np.float32)
    for tok in nusc.get("sample", sample_token)["anns"]:
        ann = nusc.get("sample_annotation", tok)
        name = ann.get("category_name")
        if name is None:
            inst = nusc.get("instance", ann["instance_token"])
            name = nusc.get("category", inst["category_token"])["name"]
        if not any(name.startswith(p) for p in prefixes):
            continue
        corners = box_bottom_corners(ann["translation"], ann["size"], ann["rotation"])
        pts = corners @ global_to_ego[:3, :3].T + global_to_ego[:3, 3]
        pts = np.round((pts[:, :2] - bx + dx / 2.0) / dx).astype(np.int32)
        pts[:, [1, 0]] = pts[:, [0, 1]]  # cv2 (col, row) = (iy, ix)
        cv2.fillPoly(img, [pts], 1.0)
    return img


def lidar_points_global(nusc: Any, sample_token: str) -> tuple[np.ndarray, np.ndarray]:
    """LIDAR_TOP points of a sample in the global frame (P x 3) and whether each lies inside a
    `vehicle.*` annotation box (P,)."""
    from nuscenes.utils.data_classes import Box, LidarPointCloud
    from nuscenes.utils.geometry_utils import points_in_box
    from pyquaternion import Quaternion

    sample = nusc.get("sample", sample_token)
    sd = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
    cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
    pose = nusc.get("ego_pose", sd["ego_pose_token"])
    pts = LidarPointCloud.from_file(nusc.get_sample_data_path(sd["token"])).points[:3]
    T = _transform(pose["rotation"], pose["translation"]) @ _transform(
        cs["rotation"], cs["translation"]
    )
    pts = T[:3, :3] @ pts.astype(np.float64) + T[:3, 3:4]  # 3 x P global
    on_vehicle = np.zeros(pts.shape[1], dtype=bool)
    for tok in sample["anns"]:
        ann = nusc.get("sample_annotation", tok)
        if ann["category_name"].startswith(VEHICLE_PREFIX) and ann["num_lidar_pts"] > 0:
            box = Box(ann["translation"], ann["size"], Quaternion(ann["rotation"]))
            on_vehicle |= points_in_box(box, pts)
    return pts.T, on_vehicle


def camera_aux_targets(
    points_global: np.ndarray,
    on_vehicle: np.ndarray,
    cam_to_global: np.ndarray,
    intrinsics: np.ndarray,
    post_rots: np.ndarray,
    post_trans: np.ndarray,
    cfg: LSSConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-camera lift-grid targets from lidar points (see module docstring).

    Args:
        points_global: P x 3 points (m); on_vehicle: P bool.
        cam_to_global: N x 4 x 4; intrinsics, post_rots: N x 3 x 3; post_trans: N x 3.

    Returns:
        depth N x D x fH x fW (float32, histograms summing to 1 or all 0), vehicle N x fH x fW
        (float32 fraction, -1 where no point).
    """
    H, W = cfg.image.final_dim
    fH, fW = cfg.feature_size
    d0, _, dstep = cfg.grid.dbound
    D = cfg.grid.num_depth_bins
    N = len(cam_to_global)
    depth = np.zeros((N, D, fH, fW), dtype=np.float32)
    veh = np.zeros((N, fH, fW), dtype=np.float32)
    cnt = np.zeros((N, fH, fW), dtype=np.float32)
    for n in range(N):
        G = np.linalg.inv(cam_to_global[n])
        pc = points_global @ G[:3, :3].T + G[:3, 3]
        z = pc[:, 2]
        keep = z > 0.5
        uvw = pc[keep] @ intrinsics[n].T
        uv = uvw[:, :2] / uvw[:, 2:3]
        uv = uv @ post_rots[n][:2, :2].T + post_trans[n][:2]
        zk = z[keep]
        col = np.round(uv[:, 0] * (fW - 1) / (W - 1)).astype(np.int64)
        row = np.round(uv[:, 1] * (fH - 1) / (H - 1)).astype(np.int64)
        b = np.round((zk - d0) / dstep).astype(np.int64)
        ok = (
            (uv[:, 0] >= 0) & (uv[:, 0] < W) & (uv[:, 1] >= 0) & (uv[:, 1] < H) & (b >= 0) & (b < D)
        )
        col, row, b = col[ok], row[ok], b[ok]
        np.add.at(depth[n], (b, row, col), 1.0)
        np.add.at(cnt[n], (row, col), 1.0)
        np.add.at(veh[n], (row, col), on_vehicle[keep][ok].astype(np.float32))
    has = cnt > 0
    depth /= np.maximum(cnt, 1.0)[:, None]
    veh = np.where(has, veh / np.maximum(cnt, 1.0), -1.0).astype(np.float32)
    return depth, veh


def _cam_to_global(nusc: Any, sample_token: str, cams: Sequence[str]) -> np.ndarray:
    sample = nusc.get("sample", sample_token)
    out = []
    for cam in cams:
        sd = nusc.get("sample_data", sample["data"][cam])
        cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
        pose = nusc.get("ego_pose", sd["ego_pose_token"])
        out.append(
            _transform(pose["rotation"], pose["translation"])
            @ _transform(cs["rotation"], cs["translation"])
        )
    return np.stack(out)


class LSSDataset(Dataset):
    """Per sample `(imgs N x 3 x H x W, rots N x 3 x 3, trans N x 3, intrins N x 3 x 3,
    post_rots N x 3 x 3, post_trans N x 3, binimg 1 x X x Y)`, float32.

    `is_train`: random augmentation (and a random subset of `cfg.image.ncams` cameras when it is
    smaller than the camera list); otherwise the deterministic eval transform of all cameras.
    `seed` seeds the augmentation (`None`: unseeded). With DataLoader workers, call
    `reseed(worker_id)` in `worker_init_fn`. `aux_targets` appends the lidar lift-grid targets
    `depth` (N x D x fH x fW) and `vehicle` (N x fH x fW) to every item.
    """

    def __init__(
        self,
        nusc: Any,
        scene_names: Sequence[str],
        cfg: LSSConfig,
        is_train: bool,
        seed: int | None = 0,
        aux_targets: bool = False,
    ) -> None:
        self.nusc = nusc
        self.cfg = cfg
        self.is_train = is_train
        self.scene_names = list(scene_names)
        self.tokens = scene_sample_tokens(nusc, self.scene_names)
        self._seed = seed
        self.aux_targets = aux_targets
        self.rng = np.random.default_rng(seed)

    def reseed(self, offset: int) -> None:
        """Re-seed the augmentation RNG with (seed, offset), e.g. per DataLoader worker."""
        self.rng = np.random.default_rng(None if self._seed is None else [self._seed, offset])

    def __len__(self) -> int:
        return len(self.tokens)

    def choose_cams(self) -> tuple[str, ...]:
        """Cameras of one sample (reference `choose_cams`)."""
        cams = self.cfg.image.cams
        n = self.cfg.image.ncams
        if self.is_train and n < len(cams):
            idx = np.sort(self.rng.choice(len(cams), n, replace=False))
            return tuple(cams[i] for i in idx)
        return cams

    def __getitem__(self, index: int) -> Sample:
        token = self.tokens[index]
        cams = self.choose_cams()
        inp = sample_inputs(self.nusc, token, self.cfg, cams, train=self.is_train, rng=self.rng)
        binimg = torch.from_numpy(vehicle_mask(self.nusc, token, self.cfg.grid)).unsqueeze(0)
        imgs, rots, trans, intrins, post_rots, post_trans = (t.squeeze(0) for t in inp)
        if not self.aux_targets:
            return imgs, rots, trans, intrins, post_rots, post_trans, binimg
        pts, on_vehicle = lidar_points_global(self.nusc, token)
        depth, veh = camera_aux_targets(
            pts,
            on_vehicle,
            _cam_to_global(self.nusc, token, cams),
            intrins.double().numpy(),
            post_rots.double().numpy(),
            post_trans.double().numpy(),
            self.cfg,
        )
        return (
            imgs,
            rots,
            trans,
            intrins,
            post_rots,
            post_trans,
            binimg,
            torch.from_numpy(depth),
            torch.from_numpy(veh),
        )
