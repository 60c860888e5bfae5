"""Truncated / corrupt / incomplete bags give clear errors; ``info`` reports what is readable."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rosbag_tools.bag_info import bag_info
from rosbag_tools.bagio import BagToolError, iter_raw, open_bag
from rosbag_tools.convert import ConvertOptions, convert_dataset


def _truncated_copy(bag: Path, dst: Path, fraction: float) -> Path:
    shutil.copytree(bag, dst)
    (f,) = [p for p in dst.iterdir() if p.suffix in (".mcap", ".db3")]
    data = f.read_bytes()
    f.write_bytes(data[: int(len(data) * fraction)])
    return dst


def test_truncated_mcap_open_error_is_clear(synth_bag: Path, tmp_path: Path) -> None:
    bag = _truncated_copy(synth_bag, tmp_path / "cut", 0.6)
    with pytest.raises(BagToolError) as ei, open_bag(bag):
        pass
    msg = str(ei.value)
    assert str(bag) in msg and "truncated or corrupt" in msg and "info" in msg


def test_info_reports_readable_part_of_truncated_mcap(synth_bag: Path, tmp_path: Path) -> None:
    full = bag_info(synth_bag)
    assert full.complete, full.errors
    cut = bag_info(_truncated_copy(synth_bag, tmp_path / "cut", 0.6))
    assert not cut.complete
    assert 0 < cut.message_count < full.message_count
    assert any("ends early" in e for e in cut.errors)
    for topic, t in cut.topics.items():
        assert t.count <= full.topics[topic].count
        assert t.metadata_count == full.topics[topic].count  # from metadata.yaml
        if t.count:
            assert t.msgtype == full.topics[topic].msgtype
    # the readable prefix keeps the original timing
    cam = "/cameras/cam_front/image_raw/compressed"
    assert cut.topics[cam].first_ns == full.topics[cam].first_ns
    assert cut.topics[cam].rate_hz == pytest.approx(full.topics[cam].rate_hz)


def test_cli_info_on_truncated_bag_exits_2(synth_bag: Path, tmp_path: Path) -> None:
    bag = _truncated_copy(synth_bag, tmp_path / "cut", 0.5)
    r = subprocess.run([sys.executable, "-m", "rosbag_tools.cli", "info", str(bag)],
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 2
    assert "INCOMPLETE" in r.stdout and "ERROR:" in r.stdout and "(metadata: 5)" in r.stdout
    assert "Traceback" not in r.stderr


def test_truncated_sqlite_reports_malformed(synth_root: Path, tmp_path: Path) -> None:
    (res,) = convert_dataset(synth_root, tmp_path / "sq", opts=ConvertOptions(storage="sqlite3"),
                             progress=False)
    bag = _truncated_copy(res.bag, tmp_path / "cut", 0.5)
    info = bag_info(bag)
    assert not info.complete
    assert any("malformed" in e or "sqlite" in e for e in info.errors)
    with pytest.raises(BagToolError, match="cannot open bag"), open_bag(bag):
        pass


def test_missing_metadata_and_garbage_files(synth_bag: Path, tmp_path: Path) -> None:
    bag = tmp_path / "nometa"
    shutil.copytree(synth_bag, bag)
    (bag / "metadata.yaml").unlink()
    with pytest.raises(BagToolError, match=r"no metadata\.yaml"), open_bag(bag):
        pass
    # the bare storage file is still a complete MCAP
    (mcap,) = bag.glob("*.mcap")
    assert bag_info(mcap).complete
    junk = tmp_path / "junk.mcap"
    junk.write_bytes(np.random.default_rng(0).integers(0, 255, 4096, dtype=np.uint8).tobytes())
    info = bag_info(junk)
    assert not info.complete and info.message_count == 0
    assert any("magic" in e.lower() for e in info.errors)
    with pytest.raises(BagToolError, match="bag not found"):
        bag_info(tmp_path / "does-not-exist")


def test_missing_storage_file_named_in_error(synth_bag: Path, tmp_path: Path) -> None:
    bag = tmp_path / "nofile"
    shutil.copytree(synth_bag, bag)
    next(bag.glob("*.mcap")).unlink()
    with pytest.raises(BagToolError, match="missing"), open_bag(bag):
        pass


def test_deep_info_finds_undecodable_record(bad_record_bag: Path) -> None:
    bag = bad_record_bag
    assert bag_info(bag).complete  # container is fine ...
    info = bag_info(bag, deep=True)  # ... one payload is not
    assert not info.complete
    assert info.topics["/odom"].undecodable == 1 and info.topics["/odom"].count == 6
    assert any("undecodable nav_msgs/msg/Odometry" in e for e in info.errors)


def test_iter_raw_rejects_unknown_topics(synth_bag: Path) -> None:
    with open_bag(synth_bag) as reader, pytest.raises(BagToolError, match="not in bag"):
        next(iter_raw(reader, ["/nope"]))
