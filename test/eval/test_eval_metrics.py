"""Unit tests of lss_bev_ros.eval.metrics (hand-computed cases)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lss_bev_ros.eval.metrics import (
    Confusion,
    LatencyStats,
    RunningMetrics,
    iou,
    precision,
    recall,
)

PRED = np.array([[1, 1, 0, 0], [1, 0, 0, 0]], dtype=bool)
TARGET = np.array([[1, 0, 1, 0], [1, 0, 0, 0]], dtype=bool)


def test_confusion_hand_computed() -> None:
    c = Confusion.from_masks(PRED, TARGET)
    assert (c.tp, c.fp, c.fn, c.tn) == (2, 1, 1, 4)
    assert c.total == 8
    assert iou(c) == pytest.approx(2 / 4)
    assert precision(c) == pytest.approx(2 / 3)
    assert recall(c) == pytest.approx(2 / 3)
    assert c.as_dict()["iou"] == pytest.approx(0.5)


def test_valid_mask_restricts_cells() -> None:
    valid = np.array([[1, 1, 0, 1], [1, 1, 1, 1]], dtype=bool)  # hides the false negative
    c = Confusion.from_masks(PRED, TARGET, valid)
    assert (c.tp, c.fp, c.fn, c.tn) == (2, 1, 0, 4)
    assert c.recall == 1.0


def test_undefined_values_are_nan() -> None:
    empty = np.zeros((3, 3), dtype=bool)
    c = Confusion.from_masks(empty, empty)
    assert (c.tp, c.fp, c.fn, c.tn) == (0, 0, 0, 9)
    assert math.isnan(c.iou) and math.isnan(c.precision) and math.isnan(c.recall)
    only_target = Confusion.from_masks(empty, ~empty)
    assert only_target.iou == 0.0 and only_target.recall == 0.0
    assert math.isnan(only_target.precision)


def test_accepts_torch_and_numeric_inputs_and_checks_shapes() -> None:
    c = Confusion.from_masks(torch.tensor(PRED.astype(np.float32)), torch.tensor(TARGET))
    assert (c.tp, c.fp, c.fn, c.tn) == (2, 1, 1, 4)
    s = Confusion.from_scores(torch.tensor([0.9, 0.2, 0.7]), [1, 1, 0], threshold=0.5)
    assert (s.tp, s.fp, s.fn, s.tn) == (1, 1, 1, 0)
    with pytest.raises(ValueError, match="shape"):
        Confusion.from_masks(PRED, TARGET[:1])
    with pytest.raises(ValueError, match="valid"):
        Confusion.from_masks(PRED, TARGET, np.ones(3, dtype=bool))
    assert Confusion(1, 2, 3, 4) + Confusion(1, 1, 1, 1) == Confusion(2, 3, 4, 5)


def test_running_metrics_means_and_pooled() -> None:
    rm = RunningMetrics()
    assert rm.frame_count == 0 and math.isnan(rm.mean_iou) and math.isnan(rm.pooled_iou)
    rm.update(Confusion(tp=1, fp=1, fn=0, tn=0))  # iou 0.5, precision 0.5, recall 1
    rm.update(Confusion(tp=9, fp=0, fn=1, tn=0))  # iou 0.9, precision 1, recall 0.9
    rm.update(Confusion(tp=0, fp=0, fn=0, tn=5))  # all NaN: skipped by the means
    assert rm.frame_count == 3
    assert rm.mean_iou == pytest.approx(0.7)
    assert rm.mean_precision == pytest.approx(0.75)
    assert rm.mean_recall == pytest.approx(0.95)
    assert rm.pooled_iou == pytest.approx(10 / 12)
    assert rm.pooled_precision == pytest.approx(10 / 11)
    assert rm.pooled_recall == pytest.approx(10 / 11)
    summary = rm.summary()
    assert summary["tn"] == 5 and summary["frame_count"] == 3
    rm.update_masks(PRED, TARGET)
    assert rm.frame_count == 4
    rm.reset()
    assert rm.frame_count == 0 and rm.totals == Confusion()


def test_latency_window_and_percentiles() -> None:
    lat = LatencyStats(window=100)
    assert math.isnan(lat.p50) and len(lat) == 0
    lat.extend(range(1, 201))  # only 101..200 stay in the window
    assert len(lat) == 100 and lat.total_count == 200
    assert lat.p50 == pytest.approx(150.5)
    assert lat.p90 == pytest.approx(np.percentile(np.arange(101, 201), 90))
    assert lat.p99 == pytest.approx(np.percentile(np.arange(101, 201), 99))
    assert lat.max == 200.0 and lat.mean == pytest.approx(150.5)
    lat.add(float("nan"))
    assert lat.total_count == 200
    assert set(lat.summary()) >= {"p50", "p90", "p99"}
    lat.reset()
    assert len(lat) == 0
    with pytest.raises(ValueError):
        LatencyStats(window=0)
