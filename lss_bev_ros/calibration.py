"""Camera rig calibration: intrinsics and sensor -> base_link extrinsics, with YAML I/O.

The rig file is written by ``lss-bev-bag convert`` from nuScenes ``calibrated_sensor`` and read by
the BEV node. Camera frames are optical frames (z forward, x right, y down); extrinsics map points
from the sensor frame into ``base_link`` (metres): ``p_base = R @ p_sensor + t``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

NUSCENES_CAMERAS: tuple[str, ...] = (
    "CAM_FRONT_LEFT",
    "CAM_FRONT",
    "CAM_FRONT_RIGHT",
    "CAM_BACK_LEFT",
    "CAM_BACK",
    "CAM_BACK_RIGHT",
)
"""The six nuScenes cameras, in the order the LSS reference feeds them to the model."""


class CalibrationError(ValueError):
    """A calibration is missing, malformed or physically invalid."""


def frame_id_for(channel: str) -> str:
    """nuScenes channel name -> REP-103 style sensor frame id (``CAM_FRONT`` -> ``cam_front``)."""
    return channel.lower()


def quaternion_to_matrix(q_wxyz: np.ndarray | list[float]) -> np.ndarray:
    """Unit quaternion (w, x, y, z) -> 3 x 3 rotation matrix."""
    w, x, y, z = (float(v) for v in q_wxyz)
    n = np.sqrt(w * w + x * x + y * y + z * z)
    if not np.isfinite(n) or n < 1e-9:
        raise CalibrationError(f"invalid quaternion {q_wxyz}")
    w, x, y, z = w / n, x / n, y / n, z / n
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def matrix_to_quaternion(rot: np.ndarray) -> np.ndarray:
    """3 x 3 rotation matrix -> unit quaternion (w, x, y, z) with w >= 0."""
    m = np.asarray(rot, dtype=np.float64)
    tr = m[0, 0] + m[1, 1] + m[2, 2]
    if tr > 0:
        s = np.sqrt(tr + 1.0) * 2
        q = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2]) * 2
        q = [(m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s]
    elif m[1, 1] > m[2, 2]:
        s = np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2]) * 2
        q = [(m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s]
    else:
        s = np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1]) * 2
        q = [(m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s]
    qa = np.array(q, dtype=np.float64)
    qa /= np.linalg.norm(qa)
    return qa if qa[0] >= 0 else -qa


@dataclass(frozen=True)
class CameraCalibration:
    """One camera: pinhole intrinsics (pixels) and camera(optical) -> base_link extrinsics."""

    name: str  # logical name, e.g. CAM_FRONT
    width: int  # pixels
    height: int  # pixels
    intrinsics: np.ndarray  # 3 x 3 K, pixels
    rotation: np.ndarray  # 3 x 3, camera optical frame -> base_link
    translation: np.ndarray  # 3, camera origin in base_link, metres
    frame_id: str = ""

    def __post_init__(self) -> None:
        k = np.asarray(self.intrinsics, dtype=np.float64).reshape(3, 3)
        r = np.asarray(self.rotation, dtype=np.float64).reshape(3, 3)
        t = np.asarray(self.translation, dtype=np.float64).reshape(3)
        if not (np.all(np.isfinite(k)) and np.all(np.isfinite(r)) and np.all(np.isfinite(t))):
            raise CalibrationError(f"{self.name}: non-finite calibration values")
        if k[0, 0] <= 0 or k[1, 1] <= 0:
            raise CalibrationError(f"{self.name}: focal lengths must be positive, got {k[0, 0]}")
        if not np.allclose(r @ r.T, np.eye(3), atol=1e-4) or np.linalg.det(r) < 0:
            raise CalibrationError(f"{self.name}: rotation is not a proper rotation matrix")
        if self.width <= 0 or self.height <= 0:
            raise CalibrationError(f"{self.name}: image size must be positive")
        object.__setattr__(self, "intrinsics", k)
        object.__setattr__(self, "rotation", r)
        object.__setattr__(self, "translation", t)
        if not self.frame_id:
            object.__setattr__(self, "frame_id", frame_id_for(self.name))

    @property
    def cam_to_base(self) -> np.ndarray:
        """4 x 4 homogeneous transform camera(optical) -> base_link."""
        m = np.eye(4)
        m[:3, :3] = self.rotation
        m[:3, 3] = self.translation
        return m

    def with_intrinsics(self, k: np.ndarray, width: int, height: int) -> CameraCalibration:
        """Copy with intrinsics replaced (e.g. from a live CameraInfo)."""
        return CameraCalibration(
            self.name, int(width), int(height), np.asarray(k), self.rotation, self.translation,
            self.frame_id,
        )


@dataclass(frozen=True)
class RigCalibration:
    """All cameras of a rig (ordered) plus an optional LiDAR extrinsic."""

    cameras: tuple[CameraCalibration, ...]
    lidar_rotation: np.ndarray | None = None  # 3 x 3, lidar -> base_link
    lidar_translation: np.ndarray | None = None  # 3, metres
    lidar_frame_id: str = "lidar_top"
    base_frame_id: str = "base_link"
    extra: dict = field(default_factory=dict)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.cameras)

    def camera(self, name: str) -> CameraCalibration:
        for c in self.cameras:
            if c.name == name:
                return c
        raise CalibrationError(f"camera {name!r} not in rig (have {list(self.names)})")

    def subset(self, names: list[str] | tuple[str, ...]) -> RigCalibration:
        """Rig restricted to (and ordered as) ``names``."""
        return RigCalibration(
            tuple(self.camera(n) for n in names), self.lidar_rotation, self.lidar_translation,
            self.lidar_frame_id, self.base_frame_id, dict(self.extra),
        )

    def replace_camera(self, cam: CameraCalibration) -> RigCalibration:
        cams = tuple(cam if c.name == cam.name else c for c in self.cameras)
        return RigCalibration(
            cams, self.lidar_rotation, self.lidar_translation, self.lidar_frame_id,
            self.base_frame_id, dict(self.extra),
        )

    def stacked(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(intrinsics N x 3 x 3, rotations N x 3 x 3, translations N x 3), float64."""
        return (
            np.stack([c.intrinsics for c in self.cameras]),
            np.stack([c.rotation for c in self.cameras]),
            np.stack([c.translation for c in self.cameras]),
        )

    def fingerprint(self) -> str:
        """Hash of everything that changes the frustum -> BEV mapping (rebuild trigger)."""
        h = hashlib.sha256()
        for c in self.cameras:
            h.update(c.name.encode())
            h.update(np.array([c.width, c.height], dtype=np.int64).tobytes())
            for a in (c.intrinsics, c.rotation, c.translation):
                h.update(np.round(np.asarray(a, dtype=np.float64), 9).tobytes())
        return h.hexdigest()[:16]

    def to_dict(self) -> dict:
        out: dict = {
            "base_frame_id": self.base_frame_id,
            "cameras": [
                {
                    "name": c.name,
                    "frame_id": c.frame_id,
                    "width": int(c.width),
                    "height": int(c.height),
                    "intrinsics": np.asarray(c.intrinsics).round(9).tolist(),
                    "translation": np.asarray(c.translation).round(9).tolist(),
                    "rotation_wxyz": matrix_to_quaternion(c.rotation).round(12).tolist(),
                }
                for c in self.cameras
            ],
        }
        if self.lidar_rotation is not None and self.lidar_translation is not None:
            out["lidar"] = {
                "frame_id": self.lidar_frame_id,
                "translation": np.asarray(self.lidar_translation).round(9).tolist(),
                "rotation_wxyz": matrix_to_quaternion(self.lidar_rotation).round(12).tolist(),
            }
        if self.extra:
            out["extra"] = self.extra
        return out

    @classmethod
    def from_dict(cls, data: dict) -> RigCalibration:
        if not isinstance(data, dict) or not isinstance(data.get("cameras"), list):
            raise CalibrationError("rig calibration must be a mapping with a 'cameras' list")
        cams = []
        for i, c in enumerate(data["cameras"]):
            try:
                cams.append(
                    CameraCalibration(
                        name=str(c["name"]),
                        width=int(c["width"]),
                        height=int(c["height"]),
                        intrinsics=np.asarray(c["intrinsics"], dtype=np.float64),
                        rotation=quaternion_to_matrix(c["rotation_wxyz"]),
                        translation=np.asarray(c["translation"], dtype=np.float64),
                        frame_id=str(c.get("frame_id", "")),
                    )
                )
            except (KeyError, TypeError, ValueError) as exc:
                raise CalibrationError(f"camera entry {i}: {exc}") from exc
        if not cams:
            raise CalibrationError("rig calibration has no cameras")
        lidar = data.get("lidar")
        lr = lt = None
        lframe = "lidar_top"
        if lidar:
            lr = quaternion_to_matrix(lidar["rotation_wxyz"])
            lt = np.asarray(lidar["translation"], dtype=np.float64)
            lframe = str(lidar.get("frame_id", lframe))
        return cls(
            tuple(cams), lr, lt, lframe, str(data.get("base_frame_id", "base_link")),
            dict(data.get("extra", {})),
        )


def save_rig_yaml(rig: RigCalibration, path: str | Path) -> Path:
    """Write ``rig`` as YAML (quaternions w, x, y, z; metres; pixels)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(
        "# lss_bev_ros rig calibration: sensor -> base_link extrinsics, pinhole intrinsics\n"
        + yaml.safe_dump(rig.to_dict(), sort_keys=False)
    )
    return p


def load_rig_yaml(path: str | Path) -> RigCalibration:
    """Read a rig file written by :func:`save_rig_yaml`; clear errors for missing/bad files."""
    p = Path(path)
    if not p.is_file():
        raise CalibrationError(f"rig calibration file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise CalibrationError(f"rig calibration {p} is not valid YAML: {exc}") from exc
    return RigCalibration.from_dict(data)


def rig_from_nuscenes(nusc, sample_token: str, cameras=NUSCENES_CAMERAS) -> RigCalibration:
    """Rig of one nuScenes sample (``nusc``: ``nuscenes.nuscenes.NuScenes``)."""
    sample = nusc.get("sample", sample_token)
    cams = []
    for ch in cameras:
        if ch not in sample["data"]:
            raise CalibrationError(f"sample {sample_token} has no {ch}")
        sd = nusc.get("sample_data", sample["data"][ch])
        cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
        cams.append(
            CameraCalibration(
                ch, int(sd["width"]), int(sd["height"]), np.asarray(cs["camera_intrinsic"]),
                quaternion_to_matrix(cs["rotation"]), np.asarray(cs["translation"]),
            )
        )
    lr = lt = None
    if "LIDAR_TOP" in sample["data"]:
        sd = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
        cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
        lr, lt = quaternion_to_matrix(cs["rotation"]), np.asarray(cs["translation"], float)
    return RigCalibration(tuple(cams), lr, lt)
