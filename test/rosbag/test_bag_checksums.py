"""MCAP CRCs (issue 13, item 7): converted bags carry chunk/data/summary CRCs; one flipped byte
mid-file makes ``info`` (and ``info --deep``) report the corruption, ``open_bag`` (used by
``eval``) refuse the bag, and ``lss-bev-bag eval`` exit non-zero without leaving a video."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mcap.reader import make_reader

from rosbag_tools.bag_info import bag_info
from rosbag_tools.bagio import BagToolError, iter_raw, mcap_files, open_bag


def _flipped_copy(bag: Path, dst: Path, where: float = 0.5) -> Path:
    shutil.copytree(bag, dst)
    (f,) = mcap_files(dst)
    data = bytearray(f.read_bytes())
    data[int(len(data) * where)] ^= 0x20
    f.write_bytes(bytes(data))
    return dst


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rosbag_tools.cli", *args], capture_output=True,
                          text=True, timeout=300, check=False)


def test_converted_bag_chunks_carry_crcs(synth_bag: Path) -> None:
    (f,) = mcap_files(synth_bag)
    with f.open("rb") as fh:
        summary = make_reader(fh).get_summary()
    assert summary is not None and summary.chunk_indexes
    info = bag_info(synth_bag)
    assert info.complete, info.errors
    assert info.checksums == "verified"
    with open_bag(synth_bag) as reader:  # the rewritten file still reads with rosbags
        assert sum(1 for _ in iter_raw(reader)) == info.message_count > 0


@pytest.mark.parametrize("where", [0.3, 0.5, 0.7])
def test_flipped_byte_makes_info_report_corruption(synth_bag: Path, tmp_path: Path,
                                                   where: float) -> None:
    bag = _flipped_copy(synth_bag, tmp_path / "flip", where)
    for deep in (False, True):
        info = bag_info(bag, deep=deep)
        assert not info.complete
        assert info.checksums == "failed"
        assert any("crc" in e.lower() or "corrupt" in e.lower() for e in info.errors), info.errors


def test_flipped_byte_makes_open_bag_raise(synth_bag: Path, tmp_path: Path) -> None:
    bag = _flipped_copy(synth_bag, tmp_path / "flip")
    with pytest.raises(BagToolError, match="corrupt") as ei, open_bag(bag):
        pass
    assert str(bag) in str(ei.value)


def test_cli_info_and_deep_info_on_flipped_bag_exit_2(synth_bag: Path, tmp_path: Path) -> None:
    bag = _flipped_copy(synth_bag, tmp_path / "flip")
    for extra in ([], ["--deep"]):
        r = _cli("info", str(bag), *extra)
        assert r.returncode == 2, r.stdout + r.stderr
        assert "INCOMPLETE" in r.stdout and "Checksums:  FAILED" in r.stdout
        assert "Traceback" not in r.stderr


def test_bag_without_crcs_is_readable_and_says_so(bad_record_bag: Path) -> None:
    info = bag_info(bad_record_bag)  # written by rosbags directly: CRC 0 everywhere
    assert info.complete and info.checksums == "none"


def test_cli_eval_on_flipped_bag_fails_without_leaving_a_video(
        synth_bag: Path, lss_weights, tmp_path: Path) -> None:
    bag = _flipped_copy(synth_bag, tmp_path / "flip")
    video = tmp_path / "out" / "replay.mp4"
    r = _cli("eval", str(bag), "--weights", str(lss_weights[0]), "--out",
             str(tmp_path / "out"), "--video", str(video), "--quiet", "--torch-threads", "1")
    assert r.returncode != 0
    assert "corrupt" in r.stderr and "Traceback" not in r.stderr
    assert not video.exists()
    assert not list(tmp_path.rglob("*.mp4"))
