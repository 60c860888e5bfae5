"""Rig calibration YAML I/O and message <-> numpy conversions (duck-typed messages, no ROS)."""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from lss_bev_ros.calibration import (
    CalibrationError,
    CameraCalibration,
    RigCalibration,
    load_rig_yaml,
    matrix_to_quaternion,
    quaternion_to_matrix,
    save_rig_yaml,
)
from lss_bev_ros.conversions import (
    GridSpec,
    ImageConversionError,
    PointCloudError,
    compressed_to_rgb,
    encode_jpeg,
    image_to_rgb,
    occupancy_to_probability,
    pointcloud2_to_array,
    points_to_pointcloud2_fields,
    probability_to_occupancy,
)


def _rig() -> RigCalibration:
    k = np.array([[1266.4, 0, 816.3], [0, 1266.4, 491.5], [0, 0, 1]])
    optical_to_base = np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0]], float)
    cams = (
        CameraCalibration("CAM_FRONT", 1600, 900, k, optical_to_base, np.array([1.7, 0.0, 1.5])),
        CameraCalibration("CAM_BACK", 1600, 900, k, optical_to_base @ np.diag([-1, 1, -1]),
                          np.array([0.0, 0.0, 1.5])),
    )
    return RigCalibration(cams, np.eye(3), np.array([0.9, 0.0, 1.8]))


def test_quaternion_round_trip() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        q = rng.normal(size=4)
        q /= np.linalg.norm(q)
        q = q if q[0] >= 0 else -q
        np.testing.assert_allclose(matrix_to_quaternion(quaternion_to_matrix(q)), q, atol=1e-9)


def test_rig_yaml_round_trip_and_fingerprint(tmp_path) -> None:
    rig = _rig()
    path = save_rig_yaml(rig, tmp_path / "rig.yaml")
    back = load_rig_yaml(path)
    assert back.names == rig.names
    assert back.camera("CAM_FRONT").frame_id == "cam_front"
    for a, b in zip(rig.cameras, back.cameras, strict=True):
        np.testing.assert_allclose(a.rotation, b.rotation, atol=1e-9)
        np.testing.assert_allclose(a.cam_to_base, b.cam_to_base, atol=1e-9)
    assert back.fingerprint() == rig.fingerprint()
    moved = rig.replace_camera(
        CameraCalibration("CAM_FRONT", 1600, 900, rig.cameras[0].intrinsics,
                          rig.cameras[0].rotation, np.array([1.8, 0.0, 1.5]))
    )
    assert moved.fingerprint() != rig.fingerprint()


def test_bad_calibration_is_rejected(tmp_path) -> None:
    with pytest.raises(CalibrationError, match="not found"):
        load_rig_yaml(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("cameras: [{name: X}]")
    with pytest.raises(CalibrationError, match="camera entry 0"):
        load_rig_yaml(tmp_path / "bad.yaml")
    with pytest.raises(CalibrationError, match="rotation"):
        CameraCalibration("X", 10, 10, np.eye(3), np.ones((3, 3)), np.zeros(3))


def _img_msg(arr: np.ndarray, encoding: str, pad: int = 0) -> SimpleNamespace:
    h, w = arr.shape[:2]
    ch = 1 if arr.ndim == 2 else arr.shape[2]
    step = w * ch + pad
    buf = np.zeros((h, step), np.uint8)
    buf[:, : w * ch] = arr.reshape(h, w * ch)
    return SimpleNamespace(encoding=encoding, height=h, width=w, step=step, is_bigendian=0,
                           data=buf.tobytes())


def test_image_encodings_convert_to_rgb() -> None:
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 255, (5, 7, 3), dtype=np.uint8)
    np.testing.assert_array_equal(image_to_rgb(_img_msg(rgb, "rgb8", pad=3)), rgb)
    np.testing.assert_array_equal(image_to_rgb(_img_msg(rgb[:, :, ::-1].copy(), "bgr8")), rgb)
    rgba = np.concatenate([rgb, np.full((5, 7, 1), 9, np.uint8)], axis=2)
    np.testing.assert_array_equal(image_to_rgb(_img_msg(rgba, "rgba8")), rgb)
    bgra = np.concatenate([rgb[:, :, ::-1], np.full((5, 7, 1), 9, np.uint8)], axis=2)
    np.testing.assert_array_equal(image_to_rgb(_img_msg(bgra, "bgra8")), rgb)
    mono = rgb[:, :, 0].copy()
    assert image_to_rgb(_img_msg(mono, "mono8")).shape == (5, 7, 3)


def test_bad_images_raise_clear_errors() -> None:
    rgb = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(ImageConversionError, match="unsupported image encoding"):
        image_to_rgb(_img_msg(rgb, "yuv422"))
    with pytest.raises(ImageConversionError, match="expected"):
        image_to_rgb(_img_msg(rgb, "rgb8"), expected_size=(900, 1600))
    short = _img_msg(rgb, "rgb8")
    short.data = short.data[:10]
    with pytest.raises(ImageConversionError, match="bytes"):
        image_to_rgb(short)
    jpeg = encode_jpeg(np.full((16, 16, 3), 128, np.uint8))
    with pytest.raises(ImageConversionError, match="corrupt"):
        compressed_to_rgb(SimpleNamespace(format="jpeg", data=jpeg[: len(jpeg) // 3]))


def test_jpeg_round_trip_is_close() -> None:
    img = np.zeros((32, 48, 3), np.uint8)
    img[:, :, 0] = 200
    out = compressed_to_rgb(SimpleNamespace(format="jpeg", data=encode_jpeg(img, 95)))
    assert out.shape == img.shape
    assert np.abs(out.astype(int) - img).max() < 8
    assert cv2.imdecode(np.frombuffer(encode_jpeg(img), np.uint8), 1) is not None


def _cloud(points: np.ndarray) -> SimpleNamespace:
    fields, step, data = points_to_pointcloud2_fields(points)
    return SimpleNamespace(
        fields=[SimpleNamespace(name=n, offset=o, datatype=d, count=1) for n, o, d in fields],
        width=len(points), height=1, point_step=step, is_bigendian=False, data=data,
    )


def test_pointcloud_round_trip_and_nan_filter() -> None:
    pts = np.array([[1, 2, 3, 0.5, 7], [np.nan, 0, 0, 1, 1], [4, 5, np.inf, 1, 2],
                    [-1, -2, -3, 0.25, 31]], np.float32)
    out, dropped = pointcloud2_to_array(_cloud(pts), fields=("x", "y", "z", "intensity", "ring"))
    assert dropped == 2
    np.testing.assert_allclose(out, pts[[0, 3]])
    empty, d0 = pointcloud2_to_array(_cloud(np.zeros((0, 5), np.float32)))
    assert empty.shape == (0, 4) and d0 == 0
    no_z = _cloud(pts)
    no_z.fields = [f for f in no_z.fields if f.name != "z"]
    with pytest.raises(PointCloudError, match="'z'"):
        pointcloud2_to_array(no_z)


def test_grid_layout_matches_occupancy_grid_convention() -> None:
    spec = GridSpec()
    prob = np.zeros((200, 200), np.float32)
    ix, iy, inside = spec.cell_of(np.array([10.2]), np.array([-3.1]))  # 10 m ahead, 3 m right
    assert inside.all()
    prob[ix[0], iy[0]] = 0.8
    visible = np.ones_like(prob, bool)
    visible[0, 0] = False
    data = probability_to_occupancy(prob, visible)
    assert data.dtype == np.int8 and data.size == 200 * 200
    assert data[iy[0] * 200 + ix[0]] == 80  # row = y index, column = x index
    assert data[0] == -1
    back, known = occupancy_to_probability(data, 200, 200)
    assert abs(back[ix[0], iy[0]] - 0.8) < 1e-6 and not known[0, 0]
    assert GridSpec.from_bounds((-50, 50, 0.5), (-50, 50, 0.5)) == spec
