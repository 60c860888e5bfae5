"""The flicker of ``bench/bev_fusion.py`` (issue 14's measure) is counted on the same cells for
every grid kind: the cells a camera observed in both frames. A fused grid also reports cells it
remembers but no camera observes now; steady remembered cells must not lower its flicker."""

from __future__ import annotations

import numpy as np
from load_bench import load_bench

from lss_bev_ros.fusion import FusionConfig, ObjectMotion, Pose2D

bench = load_bench("bev_fusion")


def _pair(score: bench.Score, occ0: np.ndarray, known0: np.ndarray, occ1: np.ndarray,
          known1: np.ndarray, observed: np.ndarray) -> None:
    free = np.zeros_like(observed)
    score.add_aligned_pair(occ0, known0, observed, free, free, occ1, known1, observed, free,
                           free, 0.5)


def test_remembered_cells_do_not_dilute_the_flicker() -> None:
    n = 40
    observed = np.zeros((n, n), bool)
    observed[:, :20] = True  # a camera sees the left half in both frames
    occ0 = np.zeros((n, n), bool)
    occ1 = occ0.copy()
    occ1[5:10, 5:10] = True  # 25 observed cells flip (GT free and stable)
    single, fused = bench.Score(), bench.Score()
    _pair(single, occ0, observed, occ1, observed, observed)
    # the "fused" grid flips the same cells and also remembers the right half (steady, free)
    everywhere = np.ones((n, n), bool)
    _pair(fused, occ0, everywhere, occ1, everywhere, observed)
    assert single.flicker == fused.flicker == 25 / (n * 20)
    assert fused.flip_cells == single.flip_cells == n * 20
    # the former metric (each grid's own known cells) halves the fused flicker for nothing
    assert fused.flicker_known == 25 / (n * n)
    assert single.flicker_known == single.flicker


def test_flips_on_remembered_cells_show_only_in_the_own_known_row() -> None:
    n = 20
    observed = np.zeros((n, n), bool)
    observed[:10] = True
    occ0 = np.zeros((n, n), bool)
    occ1 = occ0.copy()
    occ1[15, 15] = True  # a flip where no camera looks (e.g. moved history)
    s = bench.Score()
    everywhere = np.ones((n, n), bool)
    _pair(s, occ0, everywhere, occ1, everywhere, observed)
    assert s.flips == 0 and s.flips_known == 1


def _car(x: float, y: float, v: float = 0.0, label: str = "car") -> ObjectMotion:
    return ObjectMotion(x, y, 0.0, 4.5, 1.9, v, 0.0, 0.0, speed_sigma=0.1, label=label)


def test_track_line_counts_vehicle_tracks_only_and_splits_the_unmatched() -> None:
    z = np.zeros((4, 4))
    f = bench.Frame(0.0, Pose2D(0.0, 0.0, 0.0), z, z > 0, z > 0, z > 0,
                    gt_motion=[_car(0.0, 0.0), _car(20.0, 0.0, 5.0)])
    after_f = [_car(0.5, 0.0), _car(20.5, 0.0, 5.0),  # on the parked / the moving GT car
               _car(3.0, 0.0),  # 3 m from a GT car: unmatched, not far
               _car(60.0, 0.0, label="truck"),  # far from every GT car and from the ego
               _car(5.0, 5.0, label="pedestrian")]  # not a vehicle: counted apart
    line = bench.track_speed_summary([[f, f]], [[[], after_f]], FusionConfig())
    assert "on parked GT vehicles n 1," in line and "on moving GT vehicles n 1," in line
    assert "2 of 4 vehicle tracks > 2 m from any GT vehicle (1 > 4 m; 1 >= 30 m" in line
    assert "1 tracks of other classes" in line
