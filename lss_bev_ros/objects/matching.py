"""Centre-distance matching of objects to reference objects on the ground plane (ROS-free).

The benchmarks' bookkeeping (which GT vehicle a track is on, duplicates, false tracks); the
devkit's own matching stays in :mod:`lss_bev_ros.objects.nuscenes_eval`. Positions are ``x``,
``y`` in metres, all in one frame.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol, TypeVar

import numpy as np
from scipy.spatial.distance import cdist


class OnGround(Protocol):
    """Anything with a ground-plane position (m)."""

    @property
    def x(self) -> float: ...

    @property
    def y(self) -> float: ...


T = TypeVar("T", bound=OnGround)


def ground_distances(a: Sequence[OnGround], b: Sequence[OnGround]) -> np.ndarray:
    """len(a) x len(b) centre distances (m)."""
    pa = np.array([[o.x, o.y] for o in a], dtype=float).reshape(-1, 2)
    pb = np.array([[o.x, o.y] for o in b], dtype=float).reshape(-1, 2)
    return cdist(pa, pb)


def nearest_on_ground(x: float, y: float, candidates: Sequence[T]) -> tuple[float, T | None]:
    """(distance in m, the candidate whose centre is nearest to (x, y)); (inf, None) when there
    are none. Ties go to the first."""
    best: T | None = None
    best_d = math.inf
    for c in candidates:
        d = math.hypot(c.x - x, c.y - y)
        if d < best_d:
            best, best_d = c, d
    return best_d, best
