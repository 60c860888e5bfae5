"""The per-frame counts of ``bench/objects_ablation.py`` (duplicates, false tracks, reversed
headings) on hand-placed tracks and GT vehicles."""

from __future__ import annotations

import math

from load_bench import load_bench

from lss_bev_ros.objects.types import Object3D

bench = load_bench("objects_ablation")


def _ob(x: float, y: float, yaw: float, label: str = "car", vx: float = 0.0) -> Object3D:
    return Object3D(x, y, 0.8, 4.5, 1.9, 1.6, yaw, True, label, 1.0, 1.0, vx=vx)


def test_duplicate_and_false_tracks_are_counted_per_gt_vehicle() -> None:
    gt = [_ob(0.0, 0.0, 0.0), _ob(20.0, 0.0, 0.0), _ob(5.0, 5.0, 0.0, "pedestrian")]
    tracks = [_ob(0.5, 0.0, 0.0), _ob(-0.5, 0.3, 0.0),  # one car tracked twice
              _ob(20.2, 0.0, 0.0), _ob(40.0, 0.0, 0.0),  # a true track, a false one
              _ob(5.0, 5.0, 0.0, "pedestrian")]  # pedestrians are not vehicles
    assert bench.track_counts(tracks, gt, 2.0, 4.0) == (2, 1, 1)


def test_reversed_headings_are_split_by_gt_motion() -> None:
    gt = [_ob(0.0, 0.0, 0.0, vx=6.0), _ob(20.0, 0.0, math.pi / 2), _ob(40.0, 0.0, 0.0)]
    tracks = [_ob(0.3, 0.0, math.pi - 0.2),  # on the moving car, backwards
              _ob(20.0, 0.5, math.pi / 2 + 0.3),  # on a parked car, right way
              _ob(40.0, 0.0, -2.5),  # on a parked car, 143 deg off: backwards
              _ob(60.0, 0.0, math.pi)]  # on nothing: not counted
    assert bench.heading_counts(tracks, gt, 2.0) == (1, 1, 2, 1)
    assert bench.heading_counts(tracks[1:2], gt, 2.0) == (0, 0, 1, 0)
    # across +-pi: 3.0 vs -3.0 is 0.28 rad off, not reversed
    assert bench.heading_counts([_ob(0.0, 0.0, 3.0)], [_ob(0.0, 0.0, -3.0)], 2.0) == (0, 0, 1, 0)
