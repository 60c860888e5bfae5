"""The flicker of ``bench/bev_fusion.py`` (issue 14's measure) is counted on the same cells for
every grid kind: the cells a camera observed in both frames. A fused grid also reports cells it
remembers but no camera observes now; steady remembered cells must not lower its flicker."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np

_PATH = Path(__file__).resolve().parents[2] / "bench" / "bev_fusion.py"
_spec = importlib.util.spec_from_file_location("bench_bev_fusion", _PATH)
assert _spec is not None and _spec.loader is not None
bench = importlib.util.module_from_spec(_spec)
sys.modules["bench_bev_fusion"] = bench
_spec.loader.exec_module(bench)


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
