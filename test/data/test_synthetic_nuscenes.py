"""The synthetic generator writes the official nuScenes schema, and its images, lidar and boxes
agree with each other (one world model)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from nuscenes.utils.data_classes import LidarPointCloud
from nuscenes.utils.geometry_utils import BoxVisibility, points_in_box, view_points
from pyquaternion import Quaternion

from lss_bev_ros.data.synthetic import (
    CATEGORIES,
    generate_dataset,
    main,
    scene_name,
    split_scene_names,
    visibility_token,
)
from lss_bev_ros.data.world import CAMERA_CHANNELS, CATEGORY_STYLE, LIDAR_CHANNEL

N_SCENES, SAMPLES, SEED = 2, 3, 3  # as the synth_data_root fixture (conftest.py)

# Field sets of the nuScenes v1.0 schema (https://www.nuscenes.org/nuscenes#data-format).
SCHEMA = {
    "attribute": {"token", "name", "description"},
    "calibrated_sensor": {"token", "sensor_token", "translation", "rotation", "camera_intrinsic"},
    "category": {"token", "name", "description"},
    "ego_pose": {"token", "translation", "rotation", "timestamp"},
    "instance": {
        "token",
        "category_token",
        "nbr_annotations",
        "first_annotation_token",
        "last_annotation_token",
    },
    "log": {"token", "logfile", "vehicle", "date_captured", "location"},
    "map": {"token", "log_tokens", "category", "filename"},
    "sample": {"token", "timestamp", "scene_token", "next", "prev"},
    "sample_annotation": {
        "token",
        "sample_token",
        "instance_token",
        "attribute_tokens",
        "visibility_token",
        "translation",
        "size",
        "rotation",
        "num_lidar_pts",
        "num_radar_pts",
        "next",
        "prev",
    },
    "sample_data": {
        "token",
        "sample_token",
        "ego_pose_token",
        "calibrated_sensor_token",
        "filename",
        "fileformat",
        "width",
        "height",
        "timestamp",
        "is_key_frame",
        "next",
        "prev",
    },
    "scene": {
        "token",
        "name",
        "description",
        "log_token",
        "nbr_samples",
        "first_sample_token",
        "last_sample_token",
    },
    "sensor": {"token", "channel", "modality"},
    "visibility": {"token", "level", "description"},
}


def test_tables_follow_the_official_schema(synth_data_root: Path) -> None:
    for table, fields in SCHEMA.items():
        rows = json.loads((synth_data_root / "v1.0-mini" / f"{table}.json").read_text())
        assert rows, table
        for row in rows:
            assert set(row) == fields, (table, set(row) ^ fields)
        assert len({r["token"] for r in rows}) == len(rows), f"duplicate tokens in {table}"


def test_devkit_loads_it_and_links_are_consistent(nusc) -> None:
    assert [s["name"] for s in nusc.scene] == [scene_name(i) for i in range(N_SCENES)]
    assert len(nusc.sample) == N_SCENES * SAMPLES
    assert {s["channel"] for s in nusc.sensor} == {*CAMERA_CHANNELS, LIDAR_CHANNEL}
    assert {v["token"] for v in nusc.visibility} == {"1", "2", "3", "4"}
    assert {c["name"] for c in nusc.category} == {n for n, _ in CATEGORIES}
    for scene in nusc.scene:
        tokens = []
        tok = scene["first_sample_token"]
        prev = ""
        while tok:
            s = nusc.get("sample", tok)
            assert s["prev"] == prev and s["scene_token"] == scene["token"]
            tokens.append(tok)
            prev, tok = tok, s["next"]
        assert len(tokens) == scene["nbr_samples"] == SAMPLES
        assert tokens[-1] == scene["last_sample_token"]
        stamps = [nusc.get("sample", t)["timestamp"] for t in tokens]
        assert np.all(np.diff(stamps) == 500_000)  # 2 Hz in microseconds
        log = nusc.get("log", scene["log_token"])
        assert nusc.get("map", log["map_token"])["mask"].mask().shape[0] > 0
    for sample in nusc.sample:
        assert set(sample["data"]) == {*CAMERA_CHANNELS, LIDAR_CHANNEL}
        for ch, sd_tok in sample["data"].items():
            sd = nusc.get("sample_data", sd_tok)
            assert sd["is_key_frame"] and sd["timestamp"] == sample["timestamp"]
            assert (Path(nusc.dataroot) / sd["filename"]).is_file()
            if ch == LIDAR_CHANNEL:
                assert sd["fileformat"] == "pcd" and sd["filename"].endswith(".pcd.bin")
            else:
                assert sd["fileformat"] == "jpg" and (sd["width"], sd["height"]) == (1600, 900)
            if sd["prev"]:
                assert nusc.get("sample_data", sd["prev"])["next"] == sd_tok
    for inst in nusc.instance:
        chain = []
        tok = inst["first_annotation_token"]
        while tok:
            ann = nusc.get("sample_annotation", tok)
            assert ann["instance_token"] == inst["token"]
            chain.append(tok)
            tok = ann["next"]
        assert len(chain) == inst["nbr_annotations"]
        assert chain[-1] == inst["last_annotation_token"]
    cats = {a["category_name"] for a in nusc.sample_annotation}
    assert {"vehicle.car", "human.pedestrian.adult"} <= cats
    assert cats <= set(CATEGORY_STYLE)


def test_rig_is_nuscenes_like(nusc) -> None:
    yaws = {}
    for cs in nusc.calibrated_sensor:
        ch = nusc.get("sensor", cs["sensor_token"])["channel"]
        R = Quaternion(cs["rotation"]).rotation_matrix
        if ch == LIDAR_CHANNEL:
            assert cs["camera_intrinsic"] == []
            continue
        K = np.asarray(cs["camera_intrinsic"])
        assert abs(K[0, 0] - 1260) < 30 and abs(K[0, 2] - 800) < 20 and abs(K[1, 2] - 450) < 20
        optical_axis = R[:, 2]  # camera z in ego
        assert abs(optical_axis[2]) < 0.05
        yaws.setdefault(ch, []).append(np.degrees(np.arctan2(optical_axis[1], optical_axis[0])))
    expect = {
        "CAM_FRONT": 0,
        "CAM_FRONT_LEFT": 55,
        "CAM_FRONT_RIGHT": -55,
        "CAM_BACK_LEFT": 110,
        "CAM_BACK_RIGHT": -110,
        "CAM_BACK": 180,
    }
    for ch, deg in expect.items():
        for y in yaws[ch]:
            assert abs((y - deg + 180) % 360 - 180) < 3, (ch, y)


def _class_of_pixel(bgr: np.ndarray) -> str | None:
    """Category whose (shaded) base colour has this chromaticity, else None."""
    v = bgr.astype(np.float64)
    if np.linalg.norm(v) < 20:
        return None
    best, best_cos = None, 0.985
    for cat, (base, _, _) in CATEGORY_STYLE.items():
        b = np.asarray(base, dtype=np.float64)
        cos = float(v @ b / (np.linalg.norm(v) * np.linalg.norm(b)))
        if cos > best_cos:
            best, best_cos = cat, cos
    return best


def test_boxes_project_where_the_renderer_drew_them(nusc) -> None:
    checked = matched = 0
    for sample in nusc.sample:
        vis = {a: nusc.get("sample_annotation", a)["visibility_token"] for a in sample["anns"]}
        for cam in CAMERA_CHANNELS:
            path, boxes, K = nusc.get_sample_data(sample["data"][cam], BoxVisibility.ALL)
            img = cv2.imread(path)
            for box in boxes:
                if vis[box.token] != "4" or box.center[2] > 40:
                    continue
                u, v = view_points(box.center[:, None], K, normalize=True)[:2, 0]
                checked += 1
                matched += _class_of_pixel(img[int(v), int(u)]) == box.name
    assert checked >= 10
    assert matched >= 0.9 * checked, (matched, checked)


def test_hidden_box_centres_are_not_drawn_in_class_colour_everywhere(nusc) -> None:
    """Pixels far from every projected box are ground or sky, never an object colour."""
    sample = nusc.sample[0]
    path, boxes, K = nusc.get_sample_data(sample["data"]["CAM_FRONT"], BoxVisibility.ANY)
    img = cv2.imread(path)
    covered = np.zeros(img.shape[:2], dtype=np.uint8)
    for box in boxes:
        c = box.corners()
        c = c[:, c[2] > 0.1]
        if c.shape[1] < 8:
            covered[:] = 1  # a box crosses the image plane: skip this check
            break
        uv = view_points(c, K, normalize=True)[:2].T
        cv2.fillConvexPoly(covered, cv2.convexHull(np.round(uv).astype(np.int32)), 1)
    covered = cv2.dilate(covered, np.ones((9, 9), np.uint8))
    ys, xs = np.nonzero(covered == 0)
    if len(ys) == 0:
        pytest.skip("boxes cover the whole image")
    pick = np.linspace(0, len(ys) - 1, 400).astype(int)
    labels = [_class_of_pixel(img[ys[i], xs[i]]) for i in pick]
    assert sum(lbl is not None for lbl in labels) <= 4


def test_lidar_points_count_equals_num_lidar_pts_and_rest_is_ground(nusc) -> None:
    total_in_boxes = 0
    for sample in nusc.sample:
        sd_tok = sample["data"][LIDAR_CHANNEL]
        path, boxes, _ = nusc.get_sample_data(sd_tok)
        raw = np.fromfile(path, dtype=np.float32)
        assert raw.size % 5 == 0
        pts5 = raw.reshape(-1, 5)
        assert set(np.unique(pts5[:, 4]).astype(int)) <= set(range(32))
        assert len(np.unique(pts5[:, 4])) > 20
        pc = LidarPointCloud.from_file(path)
        in_any = np.zeros(pc.points.shape[1], dtype=bool)
        for box in boxes:
            mask = points_in_box(box, pc.points[:3])
            ann = nusc.get("sample_annotation", box.token)
            assert int(mask.sum()) == ann["num_lidar_pts"], box.name
            in_any |= mask
        total_in_boxes += int(in_any.sum())
        # Points outside all annotated boxes lie on the ground (z = 0 in the ego frame) or on
        # objects outside the annotation range.
        sd = nusc.get("sample_data", sd_tok)
        cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
        pts = Quaternion(cs["rotation"]).rotation_matrix @ pc.points[:3] + np.c_[cs["translation"]]
        rest = pts[:, ~in_any]
        near = np.hypot(rest[0], rest[1]) < 60
        assert np.abs(rest[2, near]).max() < 1e-3
    assert total_in_boxes > 100


def test_visibility_bins() -> None:
    assert [visibility_token(f) for f in (0.0, 0.39, 0.4, 0.59, 0.6, 0.79, 0.8, 1.0)] == [
        "1",
        "1",
        "2",
        "2",
        "3",
        "3",
        "4",
        "4",
    ]


def test_splits_hold_out_trailing_scenes() -> None:
    train, val = split_scene_names(10, 2)
    assert train == [scene_name(i) for i in range(8)]
    assert val == ["synth-0008", "synth-0009"]
    with pytest.raises(ValueError, match="n_val"):
        split_scene_names(2, 2)


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_generation_is_deterministic(tmp_path: Path) -> None:
    a = generate_dataset(tmp_path / "a", n_scenes=1, samples_per_scene=2, seed=11, progress=False)
    generate_dataset(tmp_path / "b", n_scenes=1, samples_per_scene=2, seed=11, progress=False)
    generate_dataset(tmp_path / "c", n_scenes=1, samples_per_scene=2, seed=12, progress=False)
    da, db, dc = (_digest(tmp_path / k) for k in "abc")
    assert da == db
    assert a.n_samples == 2 and len(da) == 2 * 7 + 13 + 1  # files + tables + map
    assert {k for k in da if k.startswith("samples/")} == {
        k for k in dc if k.startswith("samples/")
    }
    assert all(da[k] != dc[k] for k in da if k.startswith("samples/"))


def test_scene_does_not_depend_on_the_number_of_scenes(tmp_path: Path) -> None:
    generate_dataset(tmp_path / "one", n_scenes=1, samples_per_scene=1, seed=11, progress=False)
    generate_dataset(tmp_path / "two", n_scenes=2, samples_per_scene=1, seed=11, progress=False)
    one, two = _digest(tmp_path / "one"), _digest(tmp_path / "two")
    files = [k for k in one if k.startswith(("samples/", "maps/"))]
    assert files and all(one[k] == two[k] for k in files)


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert "--samples-per-scene" in capsys.readouterr().out
    assert (
        main(
            [
                "--dataroot",
                str(tmp_path),
                "--scenes",
                "1",
                "--samples-per-scene",
                "1",
                "--seed",
                "5",
                "--quiet",
                "--val-scenes",
                "0",
            ]
        )
        == 0
    )
    assert (tmp_path / "v1.0-mini" / "sample.json").is_file()
    assert "wrote 1 samples" in capsys.readouterr().out
