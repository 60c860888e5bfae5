"""lss-bev-synth --rate-hz: denser key frames without changing what the default produces."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lss_bev_ros.data.synthetic import generate_dataset, main, scene_world


def test_ten_hz_key_frames_are_100_ms_apart(tmp_path: Path) -> None:
    assert main(["--dataroot", str(tmp_path), "--scenes", "1", "--samples-per-scene", "3",
                 "--rate-hz", "10", "--quiet", "--val-scenes", "0"]) == 0
    samples = json.loads((tmp_path / "v1.0-mini" / "sample.json").read_text())
    stamps = sorted(s["timestamp"] for s in samples)
    assert np.diff(stamps).tolist() == [100_000, 100_000]


def test_default_period_keeps_the_two_hz_world() -> None:
    a, b = scene_world(3, 1, 6), scene_world(3, 1, 6, 0.5)
    assert a.duration_s == b.duration_s == 2.5 and len(a.objects) == len(b.objects)
    assert all(x == y for x, y in zip(a.objects, b.objects, strict=True))


def test_period_below_one_millisecond_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="sample_period_us"):
        generate_dataset(tmp_path, 1, 2, sample_period_us=10, progress=False)
