"""convert -> read back with rosbags AND independently with the mcap reader; compare to the source
(nuScenes devkit tables and files)."""

from __future__ import annotations

import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from pyquaternion import Quaternion

from lss_bev_ros.calibration import (
    NUSCENES_CAMERAS,
    load_rig_yaml,
    quaternion_to_matrix,
    rig_from_nuscenes,
)
from lss_bev_ros.conversions import compressed_to_rgb, pointcloud2_to_array
from lss_bev_ros.eval.reference import boxes_from_markers
from rosbag_tools.bagio import (
    RIG_CUSTOM_KEY,
    TYPESTORE,
    BagToolError,
    bag_custom_data,
    camera_topics,
    iter_raw,
    open_bag,
    rig_path_for_bag,
)
from rosbag_tools.convert import ConvertOptions, convert_dataset, open_nuscenes


def _stamp_ns(header) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def _source(nusc) -> dict:
    """What the bag must contain, straight from the devkit tables."""
    scene = nusc.scene[0]
    sds = defaultdict(list)
    for sd in nusc.sample_data:
        if nusc.get("sample", sd["sample_token"])["scene_token"] == scene["token"]:
            sds[sd["channel"]].append(sd)
    for v in sds.values():
        v.sort(key=lambda s: s["timestamp"])
    return sds


def _read_all_rosbags(bag: Path) -> dict[str, list[tuple[int, object]]]:
    out: dict[str, list[tuple[int, object]]] = defaultdict(list)
    with open_bag(bag) as reader:
        for conn, t, raw in iter_raw(reader):
            out[conn.topic].append((t, TYPESTORE.deserialize_cdr(raw, conn.msgtype)))
    return out


@pytest.fixture(scope="module")
def bag_msgs(synth_bag: Path) -> dict[str, list[tuple[int, object]]]:
    return _read_all_rosbags(synth_bag)


def test_counts_stamps_and_frames_match_source(nusc, bag_msgs) -> None:
    sds = _source(nusc)
    for ch in NUSCENES_CAMERAS:
        img_t, info_t = camera_topics(ch)
        want = [sd["timestamp"] * 1000 for sd in sds[ch]]
        assert len(want) == len(nusc.sample) == 5
        for topic in (img_t, info_t):
            got = bag_msgs[topic]
            assert [t for t, _ in got] == want, topic  # bag receive time = sensor time
            assert [_stamp_ns(m.header) for _, m in got] == want, topic  # header stamp
            assert {m.header.frame_id for _, m in got} == {ch.lower()}
    lidar = bag_msgs["/lidar_top/points"]
    assert [t for t, _ in lidar] == [sd["timestamp"] * 1000 for sd in sds["LIDAR_TOP"]]
    assert {m.header.frame_id for _, m in lidar} == {"lidar_top"}
    assert len(bag_msgs["/gt/boxes"]) == len(nusc.sample)
    assert len(bag_msgs["/odom"]) == len(nusc.sample)
    assert len(bag_msgs["/tf_static"]) == 1


def test_images_are_the_original_jpeg_bytes(nusc, bag_msgs) -> None:
    sds = _source(nusc)
    for ch in NUSCENES_CAMERAS:
        got = bag_msgs[camera_topics(ch)[0]]
        for (_, msg), sd in zip(got, sds[ch], strict=True):
            src = (Path(nusc.dataroot) / sd["filename"]).read_bytes()
            assert msg.format == "jpeg"
            assert bytes(msg.data) == src
    rgb = compressed_to_rgb(got[0][1])
    assert rgb.shape == (900, 1600, 3)


def test_camera_info_matches_calibration(nusc, bag_msgs) -> None:
    sds = _source(nusc)
    for ch in NUSCENES_CAMERAS:
        sd = sds[ch][0]
        cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
        _, info = bag_msgs[camera_topics(ch)[1]][0]
        np.testing.assert_allclose(np.asarray(info.k).reshape(3, 3), cs["camera_intrinsic"])
        np.testing.assert_allclose(np.asarray(info.p).reshape(3, 4)[:, :3],
                                   cs["camera_intrinsic"])
        assert (info.width, info.height) == (sd["width"], sd["height"])
        assert info.distortion_model == "plumb_bob"


def test_point_cloud_equals_source_file(nusc, bag_msgs) -> None:
    sds = _source(nusc)["LIDAR_TOP"]
    for (_, msg), sd in zip(bag_msgs["/lidar_top/points"], sds, strict=True):
        src = np.fromfile(Path(nusc.dataroot) / sd["filename"], dtype=np.float32).reshape(-1, 5)
        pts, dropped = pointcloud2_to_array(msg, ("x", "y", "z", "intensity", "ring"))
        assert dropped == 0
        assert pts.shape == src.shape
        np.testing.assert_array_equal(pts[:, :4], src[:, :4])
        np.testing.assert_array_equal(pts[:, 4], src[:, 4])  # ring survives as uint16


def test_tf_static_and_tf_match_calibration_and_ego_poses(nusc, bag_msgs) -> None:
    sds = _source(nusc)
    (_, static), = bag_msgs["/tf_static"]
    by_child = {t.child_frame_id: t for t in static.transforms}
    assert set(by_child) == {c.lower() for c in (*NUSCENES_CAMERAS, "LIDAR_TOP")}
    for ch, tf_ in by_child.items():
        cs = nusc.get("calibrated_sensor", sds[ch.upper()][0]["calibrated_sensor_token"])
        assert tf_.header.frame_id == "base_link"
        tr = tf_.transform.translation
        np.testing.assert_allclose([tr.x, tr.y, tr.z], cs["translation"])
        q = tf_.transform.rotation
        assert abs(abs(np.dot([q.w, q.x, q.y, q.z], cs["rotation"])) - 1.0) < 1e-9
    tfs = bag_msgs["/tf"]
    ego = {nusc.get("ego_pose", sd["ego_pose_token"])["timestamp"] * 1000:
           nusc.get("ego_pose", sd["ego_pose_token"]) for sd in sds["LIDAR_TOP"]}
    assert len(tfs) == len(ego)
    for t, msg in tfs:
        (tr,) = msg.transforms
        assert (tr.header.frame_id, tr.child_frame_id) == ("map", "base_link")
        assert _stamp_ns(tr.header) == t
        p = tr.transform.translation
        np.testing.assert_allclose([p.x, p.y, p.z], ego[t]["translation"])
    for _, od in bag_msgs["/odom"]:
        assert (od.header.frame_id, od.child_frame_id) == ("map", "base_link")
        assert np.isfinite(od.twist.twist.linear.x)


def test_gt_boxes_match_devkit_boxes_in_ego_frame(nusc, bag_msgs) -> None:
    """Independent path: devkit Box moved into the ego frame with pyquaternion."""
    scene = nusc.scene[0]
    samples = []
    tok = scene["first_sample_token"]
    while tok:
        samples.append(nusc.get("sample", tok))
        tok = samples[-1]["next"]
    for (t, arr), sample in zip(bag_msgs["/gt/boxes"], samples, strict=True):
        sd = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
        assert t == sd["timestamp"] * 1000
        ego = nusc.get("ego_pose", sd["ego_pose_token"])
        boxes, frame = boxes_from_markers(arr)
        assert frame == "base_link"
        cubes = [m for m in arr.markers if m.type == 1 and m.action == 0]
        assert len(cubes) == len(sample["anns"]) == len(boxes)
        by_key = {(m.ns, m.id): m for m in cubes}
        for at in sample["anns"]:
            ann = nusc.get("sample_annotation", at)
            box = nusc.get_box(at)
            box.translate(-np.asarray(ego["translation"]))
            box.rotate(Quaternion(ego["rotation"]).inverse)
            m = by_key[(ann["category_name"], nusc.getind("instance", ann["instance_token"]))]
            p = m.pose.position
            np.testing.assert_allclose([p.x, p.y, p.z], box.center, atol=1e-9)
            w, length, h = box.wlh
            np.testing.assert_allclose([m.scale.x, m.scale.y, m.scale.z], [length, w, h])
            q = m.pose.orientation
            r = quaternion_to_matrix([q.w, q.x, q.y, q.z])
            np.testing.assert_allclose(r, box.rotation_matrix, atol=1e-9)


def test_instance_ids_stable_across_frames(bag_msgs) -> None:
    seen: dict[int, str] = {}
    for _, arr in bag_msgs["/gt/boxes"]:
        ids = [m.id for m in arr.markers if m.action == 0]
        assert len(ids) == len(set(ids))
        for m in arr.markers:
            if m.action == 0:
                assert seen.setdefault(m.id, m.ns) == m.ns


def test_rig_file_beside_bag_and_embedded(nusc, synth_bag: Path) -> None:
    rig = load_rig_yaml(rig_path_for_bag(synth_bag))
    ref = rig_from_nuscenes(nusc, nusc.scene[0]["first_sample_token"])
    assert rig.names == ref.names == NUSCENES_CAMERAS
    assert rig.fingerprint() == ref.fingerprint()
    with open_bag(synth_bag) as reader:
        import yaml

        from lss_bev_ros.calibration import RigCalibration

        emb = RigCalibration.from_dict(yaml.safe_load(bag_custom_data(reader)[RIG_CUSTOM_KEY]))
    assert emb.fingerprint() == ref.fingerprint()


def test_independent_mcap_reader_agrees(nusc, synth_bag: Path, bag_msgs) -> None:
    """mcap.reader + mcap_ros2 DecoderFactory (no rosbags): counts, stamps, frames, data."""
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    (mcap_file,) = synth_bag.glob("*.mcap")
    got: dict[str, list] = defaultdict(list)
    with mcap_file.open("rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        assert reader.get_header().profile == "ros2"
        for schema, channel, message, decoded in reader.iter_decoded_messages():
            assert schema.encoding == "ros2msg"
            got[channel.topic].append((message.log_time, decoded))
    assert {k: len(v) for k, v in got.items()} == {k: len(v) for k, v in bag_msgs.items()}
    sds = _source(nusc)
    for ch in NUSCENES_CAMERAS:
        img_t, _ = camera_topics(ch)
        assert [t for t, _ in got[img_t]] == [sd["timestamp"] * 1000 for sd in sds[ch]]
        for (t, m), sd in zip(got[img_t], sds[ch], strict=True):
            assert _stamp_ns(m.header) == t
            assert m.header.frame_id == ch.lower()
            assert bytes(m.data) == (Path(nusc.dataroot) / sd["filename"]).read_bytes()
    for (t, m), sd in zip(got["/lidar_top/points"], sds["LIDAR_TOP"], strict=True):
        assert m.header.frame_id == "lidar_top" and _stamp_ns(m.header) == t
        pts, _ = pointcloud2_to_array(m, ("x", "y", "z", "intensity", "ring"))
        src = np.fromfile(Path(nusc.dataroot) / sd["filename"], dtype=np.float32).reshape(-1, 5)
        np.testing.assert_array_equal(pts, src)
    (_, static), = got["/tf_static"]
    assert {t.header.frame_id for t in static.transforms} == {"base_link"}


def test_sqlite3_storage_roundtrip(synth_root: Path, tmp_path: Path, bag_msgs) -> None:
    (res,) = convert_dataset(synth_root, tmp_path, opts=ConvertOptions(storage="sqlite3"),
                             progress=False)
    assert list(res.bag.glob("*.db3"))
    got = _read_all_rosbags(res.bag)
    assert {k: len(v) for k, v in got.items()} == {k: len(v) for k, v in bag_msgs.items()}
    img = camera_topics("CAM_FRONT")[0]
    assert bytes(got[img][2][1].data) == bytes(bag_msgs[img][2][1].data)


def test_existing_bag_is_not_overwritten_silently(synth_root: Path, synth_bag: Path) -> None:
    with pytest.raises(BagToolError, match="exists"):
        convert_dataset(synth_root, synth_bag.parent, progress=False)


def test_clear_errors_for_wrong_root_version_scene(synth_root: Path, tmp_path: Path) -> None:
    with pytest.raises(BagToolError, match="does not exist"):
        open_nuscenes(tmp_path / "nope", "v1.0-mini")
    with pytest.raises(BagToolError, match=r"versions found: \['v1.0-mini'\]"):
        open_nuscenes(synth_root, "v1.0-trainval")
    with pytest.raises(BagToolError, match=r"unknown scene.*synth-0000"):
        convert_dataset(synth_root, tmp_path, scenes=["scene-0061"], progress=False)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rosbag_tools.cli", *args],
                          capture_output=True, text=True, timeout=120, check=False)


def test_cli_help_and_errors(synth_root: Path, tmp_path: Path) -> None:
    r = _cli("--help")
    assert r.returncode == 0
    for sub in ("convert", "info", "play", "eval"):
        assert sub in r.stdout
    r = _cli("convert", "--help")
    assert r.returncode == 0 and "--dataroot" in r.stdout
    r = _cli("convert", "--dataroot", str(tmp_path / "missing"), "--out", str(tmp_path))
    assert r.returncode == 1
    assert "error" in r.stderr and "does not exist" in r.stderr
    assert "Traceback" not in r.stderr
    r = _cli("convert", "--dataroot", str(synth_root), "--scenes", "bogus", "--out",
             str(tmp_path), "--quiet")
    assert r.returncode == 1 and "unknown scene" in r.stderr


def test_cli_convert_then_info(synth_root: Path, tmp_path: Path) -> None:
    r = _cli("convert", "--dataroot", str(synth_root), "--out", str(tmp_path), "--quiet",
             "--scenes", "synth-0000")
    assert r.returncode == 0, r.stderr
    r = _cli("info", str(tmp_path / "synth-0000"))
    assert r.returncode == 0, r.stderr
    assert "/cameras/cam_front/image_raw/compressed" in r.stdout
    assert "sensor_msgs/msg/CompressedImage" in r.stdout
    assert "complete" in r.stdout


def _add_sweeps(src: Path, dst: Path, channels=("CAM_FRONT", "LIDAR_TOP")) -> Path:
    """Copy of the dataset with one non-key-frame sweep between consecutive key frames of
    ``channels`` (linked into the prev/next chains, own ego pose, nuScenes ``sweeps/`` files)."""
    import json
    import shutil

    shutil.copytree(src, dst)
    tables = dst / "v1.0-mini"
    sds = json.loads((tables / "sample_data.json").read_text())
    poses = json.loads((tables / "ego_pose.json").read_text())
    pose_by = {p["token"]: p for p in poses}
    calib = {c["token"]: c for c in json.loads((tables / "calibrated_sensor.json").read_text())}
    sensors = {s["token"]: s["channel"] for s in json.loads((tables / "sensor.json").read_text())}
    by_tok = {s["token"]: s for s in sds}
    new = []
    for sd in list(sds):
        ch = sensors[calib[sd["calibrated_sensor_token"]]["sensor_token"]]
        if ch not in channels or not sd["next"]:
            continue
        nxt = by_tok[sd["next"]]
        ts = (sd["timestamp"] + nxt["timestamp"]) // 2
        tok = f"sweep{sd['token'][5:]}"
        a, b = pose_by[sd["ego_pose_token"]], pose_by[nxt["ego_pose_token"]]
        poses.append({"token": tok, "timestamp": ts, "rotation": a["rotation"],
                      "translation": [(x + y) / 2 for x, y in
                                      zip(a["translation"], b["translation"], strict=True)]})
        fname = sd["filename"].replace("samples/", "sweeps/").replace(
            str(sd["timestamp"]), str(ts))
        (dst / fname).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(dst / sd["filename"], dst / fname)
        new.append({**sd, "token": tok, "sample_token": nxt["sample_token"], "ego_pose_token": tok,
                    "timestamp": ts, "is_key_frame": False, "filename": fname,
                    "prev": sd["token"], "next": nxt["token"]})
        sd["next"] = tok
        nxt["prev"] = tok
    (tables / "sample_data.json").write_text(json.dumps(sds + new))
    (tables / "ego_pose.json").write_text(json.dumps(poses))
    return dst


def test_sweeps_converted_and_optional(synth_root: Path, tmp_path: Path) -> None:
    root = _add_sweeps(synth_root, tmp_path / "with_sweeps")
    (res,) = convert_dataset(root, tmp_path / "all", progress=False)
    cam_front, cam_back = camera_topics("CAM_FRONT")[0], camera_topics("CAM_BACK")[0]
    assert res.counts[cam_front] == 9 and res.counts[camera_topics("CAM_FRONT")[1]] == 9
    assert res.counts[cam_back] == 5
    assert res.counts["/lidar_top/points"] == 9 and res.counts["/odom"] == 9
    assert res.counts["/tf"] == 9  # key-frame poses + the (shared) sweep poses
    assert res.counts["/gt/boxes"] == 5  # annotations exist at key frames only
    got = _read_all_rosbags(res.bag)
    stamps = [t for t, _ in got[cam_front]]
    assert stamps == sorted(stamps) and len(set(stamps)) == 9
    for t, m in got["/lidar_top/points"]:
        assert _stamp_ns(m.header) == t
    (key,) = convert_dataset(root, tmp_path / "key", opts=ConvertOptions(sweeps=False),
                             progress=False)
    assert key.counts[cam_front] == 5 and key.counts["/lidar_top/points"] == 5
    assert key.counts["/odom"] == 5 and key.counts["/tf"] == 5


def test_bag_gt_boxes_equal_the_live_players_boxes(synth_root: Path, synth_bag: Path) -> None:
    """One reader: /gt/boxes in the bag = the boxes frame_player_node publishes live (same
    marker ids, centres, colours) for every key frame."""
    from rosbags.rosbag2 import Reader

    from lss_bev_ros.data.frames import NuScenesFrames
    from lss_bev_ros.visualization import category_rgba
    from rosbag_tools.bagio import GT_BOXES_TOPIC, TYPESTORE

    frames = NuScenesFrames(synth_root)
    live = {round(frames.frame(i).lidar_timestamp, 6): frames.frame(i).boxes
            for i in range(len(frames))}
    with Reader(synth_bag) as r:
        conns = [c for c in r.connections if c.topic == GT_BOXES_TOPIC]
        n = 0
        for conn, _, raw in r.messages(connections=conns):
            msg = TYPESTORE.deserialize_cdr(raw, conn.msgtype)
            cubes = [m for m in msg.markers if m.type == 1 and m.action == 0]  # CUBE, ADD
            stamp = round(cubes[0].header.stamp.sec + cubes[0].header.stamp.nanosec * 1e-9, 6)
            boxes = {b.instance: b for b in live[stamp]}
            assert {m.id for m in cubes} == set(boxes)
            for m in cubes:
                b = boxes[m.id]
                assert m.ns == b.category
                np.testing.assert_allclose([m.pose.position.x, m.pose.position.y,
                                            m.pose.position.z], b.center, atol=1e-6)
                assert (m.color.r, m.color.g, m.color.b, m.color.a) == pytest.approx(
                    category_rgba(b.category))
            n += 1
    assert n == len(frames)
