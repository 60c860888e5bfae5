"""Centre-distance matching helpers of the benchmarks."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np

from lss_bev_ros.objects.matching import ground_distances, nearest_on_ground


def _p(x: float, y: float) -> SimpleNamespace:
    return SimpleNamespace(x=x, y=y)


def test_ground_distances_is_tracks_by_references() -> None:
    d = ground_distances([_p(0, 0), _p(3, 4)], [_p(0, 0), _p(6, 8), _p(0, 4)])
    assert d.shape == (2, 3)
    np.testing.assert_allclose(d, [[0, 10, 4], [5, 5, 3]])
    assert ground_distances([], [_p(1, 1)]).shape == (0, 1)


def test_nearest_on_ground_picks_the_closest_and_handles_none() -> None:
    refs = [_p(10, 0), _p(1, 1), _p(-1, 1)]
    d, g = nearest_on_ground(0.0, 0.0, refs)
    assert g is refs[1] and math.isclose(d, math.sqrt(2))  # tie: the first
    d, g = nearest_on_ground(9.0, 0.0, refs)
    assert g is refs[0] and math.isclose(d, 1.0)
    assert nearest_on_ground(0.0, 0.0, []) == (math.inf, None)
