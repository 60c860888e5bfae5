"""nuScenes(-format) key frames as plain Python: the one reader of a dataroot's samples.

:class:`NuScenesFrames` (frame_player_node plays it live) and :func:`boxes_in_base_link`
(also what ``lss-bev-bag convert`` writes to ``/gt/boxes``) read the devkit's tables, so live
and bag ground truth are the same boxes with the same marker ids. No ROS.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np

from lss_bev_ros.calibration import (
    NUSCENES_CAMERAS,
    CameraCalibration,
    RigCalibration,
    matrix_to_quaternion,
    quaternion_to_matrix,
)


class GtBox(NamedTuple):
    """One annotated box in base_link (metres, REP-103)."""

    category: str  # nuScenes category name, e.g. vehicle.car
    center: np.ndarray  # (3,) box centre
    size_lwh: np.ndarray  # (3,) length, width, height
    q_wxyz: np.ndarray  # (4,) orientation
    instance: int  # index of its instance in the instance table (a stable marker id)


def boxes_in_base_link(nusc: Any, sample: dict, ego: dict) -> list[GtBox]:
    """The sample's annotations in base_link of the ego pose ``ego`` (its LiDAR's)."""
    r_e = quaternion_to_matrix(ego["rotation"])
    t_e = np.asarray(ego["translation"], dtype=np.float64)
    out = []
    for at in sample["anns"]:
        ann = nusc.get("sample_annotation", at)
        center = r_e.T @ (np.asarray(ann["translation"], np.float64) - t_e)
        q = matrix_to_quaternion(r_e.T @ quaternion_to_matrix(ann["rotation"]))
        w, length, h = (float(v) for v in ann["size"])
        out.append(GtBox(ann["category_name"], center, np.array([length, w, h]), q,
                         int(nusc.getind("instance", ann["instance_token"]))))
    return out


@dataclass
class CameraFrame:
    """One camera image of a sample (intrinsics already scaled to the published size)."""

    name: str
    timestamp: float  # s (dataset time)
    jpeg: bytes  # as stored (or re-encoded when scaled)
    rgb: np.ndarray | None  # H x W x 3 uint8, decoded lazily for raw transport
    width: int
    height: int
    intrinsics: np.ndarray  # 3 x 3
    rotation: np.ndarray  # camera -> ego
    translation: np.ndarray


@dataclass
class SampleFrame:
    """Everything the player publishes for one nuScenes key frame."""

    token: str
    scene: str
    timestamp: float  # s, sample time
    cameras: dict[str, CameraFrame]
    lidar_points: np.ndarray | None  # P x 5 float32 (x, y, z, intensity, ring) in the LiDAR frame
    lidar_timestamp: float
    lidar_rotation: np.ndarray | None
    lidar_translation: np.ndarray | None
    boxes: list[GtBox] = field(default_factory=list)  # in base_link at the LiDAR time
    ego_translation: np.ndarray = field(default_factory=lambda: np.zeros(3))
    ego_rotation_wxyz: np.ndarray = field(default_factory=lambda: np.array([1.0, 0, 0, 0]))

    @property
    def newest_timestamp(self) -> float:
        ts = [c.timestamp for c in self.cameras.values()]
        if self.lidar_points is not None:
            ts.append(self.lidar_timestamp)
        return max(ts) if ts else self.timestamp

    def rig(self) -> RigCalibration:
        """Rig calibration of this sample (published image sizes / intrinsics)."""
        cams = tuple(
            CameraCalibration(c.name, c.width, c.height, c.intrinsics, c.rotation, c.translation)
            for c in self.cameras.values()
        )
        return RigCalibration(cams, self.lidar_rotation, self.lidar_translation)


class NuScenesFrames:
    """Key frames of a nuScenes dataroot, in scene order, with an LRU cache of loaded frames.

    ``image_scale`` < 1 downsizes the images (JPEG re-encoded, intrinsics scaled) to cut
    bandwidth and decode cost.
    """

    def __init__(self, dataroot: str | Path, version: str = "v1.0-mini",
                 scenes: list[str] | None = None, cameras: tuple[str, ...] = NUSCENES_CAMERAS,
                 image_scale: float = 1.0, jpeg_quality: int = 90, cache_size: int = 64) -> None:
        from nuscenes.nuscenes import NuScenes

        root = Path(dataroot)
        if not (root / version).is_dir():
            raise FileNotFoundError(f"no nuScenes tables at {root / version} (dataroot/version)")
        self.nusc = NuScenes(version=version, dataroot=str(root), verbose=False)
        self.cameras = tuple(cameras)
        self.image_scale = float(image_scale)
        self.jpeg_quality = int(jpeg_quality)
        self.cache_size = max(1, int(cache_size))
        self._cache: OrderedDict[str, SampleFrame] = OrderedDict()
        wanted = set(scenes or [])
        known = {s["name"] for s in self.nusc.scene}
        if wanted - known:
            raise ValueError(f"unknown scenes {sorted(wanted - known)} (have {sorted(known)})")
        self.tokens: list[tuple[str, str]] = []  # (scene name, sample token)
        for sc in self.nusc.scene:
            if wanted and sc["name"] not in wanted:
                continue
            tok = sc["first_sample_token"]
            while tok:
                self.tokens.append((sc["name"], tok))
                tok = self.nusc.get("sample", tok)["next"]
        if not self.tokens:
            raise ValueError(f"no samples in {root} ({version}, scenes {sorted(wanted) or 'all'})")

    def __len__(self) -> int:
        return len(self.tokens)

    def frame(self, index: int) -> SampleFrame:
        scene, token = self.tokens[index % len(self.tokens)]
        if token in self._cache:
            self._cache.move_to_end(token)
            return self._cache[token]
        f = self._load(scene, token)
        self._cache[token] = f
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return f

    def _load(self, scene: str, token: str) -> SampleFrame:
        nusc = self.nusc
        sample = nusc.get("sample", token)
        cams: dict[str, CameraFrame] = {}
        for ch in self.cameras:
            if ch not in sample["data"]:
                raise ValueError(f"sample {token} has no {ch}")
            sd = nusc.get("sample_data", sample["data"][ch])
            cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
            path = Path(nusc.dataroot) / sd["filename"]
            jpeg = path.read_bytes()
            w, h = int(sd["width"]), int(sd["height"])
            K = np.asarray(cs["camera_intrinsic"], dtype=np.float64)
            rgb = None
            if self.image_scale != 1.0:
                bgr = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
                if bgr is None:
                    raise ValueError(f"cannot decode {path}")
                nw, nh = max(1, round(w * self.image_scale)), max(1, round(h * self.image_scale))
                bgr = cv2.resize(bgr, (nw, nh), interpolation=cv2.INTER_AREA)
                K = K.copy()
                K[0] *= nw / w
                K[1] *= nh / h
                w, h = nw, nh
                ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
                if not ok:
                    raise ValueError(f"cannot re-encode {path}")
                jpeg = buf.tobytes()
                rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            cams[ch] = CameraFrame(ch, sd["timestamp"] * 1e-6, jpeg, rgb, w, h, K,
                                   quaternion_to_matrix(cs["rotation"]),
                                   np.asarray(cs["translation"], dtype=np.float64))
        pts = lr = lt = None
        lts = sample["timestamp"] * 1e-6
        pose = None
        boxes = []
        if "LIDAR_TOP" in sample["data"]:
            sd = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
            cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
            raw = np.fromfile(Path(nusc.dataroot) / sd["filename"], dtype=np.float32)
            pts = raw.reshape(-1, 5)
            lr, lt = quaternion_to_matrix(cs["rotation"]), np.asarray(cs["translation"], float)
            lts = sd["timestamp"] * 1e-6
            pose = nusc.get("ego_pose", sd["ego_pose_token"])
            boxes = boxes_in_base_link(nusc, sample, pose)
        elif cams:
            first = next(iter(sample["data"][c] for c in self.cameras))
            pose = nusc.get("ego_pose", nusc.get("sample_data", first)["ego_pose_token"])
        f = SampleFrame(token, scene, sample["timestamp"] * 1e-6, cams, pts, lts, lr, lt, boxes)
        if pose is not None:
            f.ego_translation = np.asarray(pose["translation"], float)
            f.ego_rotation_wxyz = np.asarray(pose["rotation"], float)
        return f
