"""Segmentation metrics and latency statistics (numpy in, Python floats out; no ROS, no torch).

Shared by the ROS evaluation node, the offline evaluator and training. Masks may be numpy arrays,
anything `np.asarray` accepts, or torch tensors (moved to the CPU); non-zero means "occupied".

* `Confusion`: tp / fp / fn / tn cell counts of one prediction against one reference, restricted
  to an optional `valid` mask; counts of several frames add up with `+`.
* `iou`, `precision`, `recall`: NaN where undefined (empty denominator).
* `RunningMetrics`: per-frame means (NaN frames skipped) and pooled totals over all frames.
* `LatencyStats`: p50 / p90 / p99 over a bounded window of recent latencies.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

NAN = float("nan")


def as_numpy(x: Any) -> np.ndarray:
    """`x` as a numpy array; torch tensors are detached and moved to the CPU first."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _as_bool(x: Any) -> np.ndarray:
    a = as_numpy(x)
    return a if a.dtype == np.bool_ else a != 0


def _ratio(num: int, den: int) -> float:
    return float(num) / float(den) if den > 0 else NAN


@dataclass(frozen=True)
class Confusion:
    """Cell counts of a binary prediction against a reference."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    @classmethod
    def from_masks(cls, pred: Any, target: Any, valid: Any | None = None) -> Confusion:
        """Counts over cells where `valid` is true (all cells when None); shapes must match.

        pred, target, valid: same-shaped masks (any dtype; non-zero = true).
        """
        p = _as_bool(pred)
        t = _as_bool(target)
        if p.shape != t.shape:
            raise ValueError(f"pred shape {p.shape} != target shape {t.shape}")
        if valid is not None:
            v = _as_bool(valid)
            if v.shape != p.shape:
                raise ValueError(f"valid shape {v.shape} != pred shape {p.shape}")
            p = p[v]
            t = t[v]
        tp = int(np.count_nonzero(p & t))
        fp = int(np.count_nonzero(p & ~t))
        fn = int(np.count_nonzero(~p & t))
        tn = int(p.size) - tp - fp - fn
        return cls(tp, fp, fn, tn)

    @classmethod
    def from_scores(
        cls, scores: Any, target: Any, threshold: float = 0.5, valid: Any | None = None
    ) -> Confusion:
        """Counts of `scores > threshold` against `target` (e.g. probabilities, or logits with
        threshold 0)."""
        return cls.from_masks(as_numpy(scores) > threshold, target, valid)

    def __add__(self, other: Confusion) -> Confusion:
        return Confusion(
            self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn
        )

    @property
    def total(self) -> int:
        """Number of counted cells."""
        return self.tp + self.fp + self.fn + self.tn

    @property
    def iou(self) -> float:
        """tp / (tp + fp + fn); NaN when both prediction and reference are empty."""
        return iou(self)

    @property
    def precision(self) -> float:
        """tp / (tp + fp); NaN when nothing is predicted."""
        return precision(self)

    @property
    def recall(self) -> float:
        """tp / (tp + fn); NaN when the reference is empty."""
        return recall(self)

    def as_dict(self) -> dict[str, float]:
        """Counts and derived values, for logs / JSON."""
        return {
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "tn": self.tn,
            "iou": self.iou,
            "precision": self.precision,
            "recall": self.recall,
        }


def iou(c: Confusion) -> float:
    """Intersection over union tp / (tp + fp + fn); NaN when undefined."""
    return _ratio(c.tp, c.tp + c.fp + c.fn)


def precision(c: Confusion) -> float:
    """tp / (tp + fp); NaN when undefined."""
    return _ratio(c.tp, c.tp + c.fp)


def recall(c: Confusion) -> float:
    """tp / (tp + fn); NaN when undefined."""
    return _ratio(c.tp, c.tp + c.fn)


class _NanMean:
    """Mean of the finite values added (NaN values are counted separately)."""

    __slots__ = ("n", "n_nan", "total")

    def __init__(self) -> None:
        self.total = 0.0
        self.n = 0
        self.n_nan = 0

    def add(self, v: float) -> None:
        if math.isnan(v):
            self.n_nan += 1
        else:
            self.total += v
            self.n += 1

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else NAN


class RunningMetrics:
    """Metrics accumulated over frames.

    `mean_*`: mean of the per-frame values, skipping frames where the value is NaN;
    `pooled_*`: the value of the summed counts (every cell weighs the same).
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget all frames."""
        self.totals = Confusion()
        self.frame_count = 0
        self._iou = _NanMean()
        self._precision = _NanMean()
        self._recall = _NanMean()

    def update(self, c: Confusion) -> Confusion:
        """Add one frame's counts; returns them for chaining."""
        self.totals = self.totals + c
        self.frame_count += 1
        self._iou.add(c.iou)
        self._precision.add(c.precision)
        self._recall.add(c.recall)
        return c

    def update_masks(self, pred: Any, target: Any, valid: Any | None = None) -> Confusion:
        """`update(Confusion.from_masks(pred, target, valid))`."""
        return self.update(Confusion.from_masks(pred, target, valid))

    def extend(self, frames: Iterable[Confusion]) -> None:
        """Add several frames."""
        for c in frames:
            self.update(c)

    @property
    def mean_iou(self) -> float:
        """Mean per-frame IoU (NaN frames skipped); NaN before any defined frame."""
        return self._iou.mean

    @property
    def mean_precision(self) -> float:
        """Mean per-frame precision (NaN frames skipped)."""
        return self._precision.mean

    @property
    def mean_recall(self) -> float:
        """Mean per-frame recall (NaN frames skipped)."""
        return self._recall.mean

    @property
    def pooled_iou(self) -> float:
        """IoU of the summed counts."""
        return self.totals.iou

    @property
    def pooled_precision(self) -> float:
        """Precision of the summed counts."""
        return self.totals.precision

    @property
    def pooled_recall(self) -> float:
        """Recall of the summed counts."""
        return self.totals.recall

    def summary(self) -> dict[str, float]:
        """All running values as a flat dict."""
        return {
            "frame_count": self.frame_count,
            "mean_iou": self.mean_iou,
            "mean_precision": self.mean_precision,
            "mean_recall": self.mean_recall,
            "pooled_iou": self.pooled_iou,
            "pooled_precision": self.pooled_precision,
            "pooled_recall": self.pooled_recall,
            **{k: getattr(self.totals, k) for k in ("tp", "fp", "fn", "tn")},
        }


class LatencyStats:
    """Percentiles over the most recent `window` latencies (e.g. milliseconds)."""

    def __init__(self, window: int = 1000) -> None:
        if window < 1:
            raise ValueError("window must be >= 1")
        self.window = window
        self._values: deque[float] = deque(maxlen=window)
        self.total_count = 0

    def add(self, latency: float) -> None:
        """Record one latency (NaN / inf are ignored)."""
        v = float(latency)
        if math.isfinite(v):
            self._values.append(v)
            self.total_count += 1

    def extend(self, latencies: Iterable[float]) -> None:
        """Record several latencies."""
        for v in latencies:
            self.add(v)

    def reset(self) -> None:
        """Forget all values."""
        self._values.clear()
        self.total_count = 0

    def __len__(self) -> int:
        return len(self._values)

    def percentile(self, q: float) -> float:
        """q-th percentile (0..100, linear interpolation) of the window; NaN when empty."""
        if not self._values:
            return NAN
        return float(np.percentile(np.fromiter(self._values, dtype=np.float64), q))

    @property
    def p50(self) -> float:
        """Median of the window."""
        return self.percentile(50)

    @property
    def p90(self) -> float:
        """90th percentile of the window."""
        return self.percentile(90)

    @property
    def p99(self) -> float:
        """99th percentile of the window."""
        return self.percentile(99)

    @property
    def mean(self) -> float:
        """Mean of the window; NaN when empty."""
        return float(np.mean(self._values)) if self._values else NAN

    @property
    def max(self) -> float:
        """Largest value in the window; NaN when empty."""
        return float(max(self._values)) if self._values else NAN

    def summary(self) -> dict[str, float]:
        """p50 / p90 / p99 / mean / max of the window, and counts."""
        return {
            "p50": self.p50,
            "p90": self.p90,
            "p99": self.p99,
            "mean": self.mean,
            "max": self.max,
            "window_count": len(self),
            "total_count": self.total_count,
        }
