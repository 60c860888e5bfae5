"""Report pictures and texts of ``lss-bev-bag eval`` (rosbag_tools.report): BEV panels with a
legend that show prediction, reference outcomes, cells the reference does not score and the
camera coverage; every metric names what it is compared against."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np

from lss_bev_ros.visualization import (
    FN_RGB,
    FP_RGB,
    NOT_SCORED_SWATCH,
    TP_RGB,
    UNSEEN_RGB,
    probability_rgb,
)
from rosbag_tools.report import metric_basis, summary_table, write_samples

N = 200  # cells per side


def _frame() -> SimpleNamespace:
    """A BevSample-like frame: a car 15 m ahead found (TP), a false alarm 20 m left and a
    missed car 30 m behind; LiDAR observed only a band around the ego; the right 30 columns
    (y < -35 m) are outside the camera coverage."""
    prob = np.zeros((N, N), np.float32)
    ref = np.zeros((N, N), bool)
    prob[126:134, 96:104] = 0.9  # x = 15 m: TP
    ref[126:134, 96:104] = True
    prob[96:104, 136:144] = 0.9  # y = 20 m: FP
    ref[36:44, 96:104] = True  # x = -30 m: FN
    observed = np.zeros((N, N), bool)
    observed[30:170, 60:150] = True
    visible = np.ones((N, N), bool)
    visible[:, :30] = False
    return SimpleNamespace(stamp=100.5, probability=prob, visible=visible, reference=ref,
                           observed=observed, iou=1 / 3, images=None)


def _report(sample: SimpleNamespace) -> SimpleNamespace:
    scored = int(sample.observed.sum())
    frames = [SimpleNamespace(stamp=100.0 + 0.5 * i, iou=1 / 3, precision=0.5, recall=0.5,
                              tp=64, fp=64, fn=64, tn=scored - 192) for i in range(2)]
    summary = {"reference": "lidar_visibility", "mean_observed_fraction": scored / N**2,
               "reference_description": "LiDAR returns ...", "mean_iou": 1 / 3,
               "pooled_iou": 1 / 3, "threshold": 0.5}
    return SimpleNamespace(frames=frames, samples=[sample], summary=summary, stage_stats={})


def _picture(tmp_path: Path) -> np.ndarray:
    (path,) = write_samples(_report(_frame()), tmp_path, threshold=0.5)
    bgr = cv2.imread(str(path))
    assert bgr is not None and bgr.shape == (2 * N, 4 * N, 3)  # prediction | vs reference
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _count(img: np.ndarray, rgb: tuple[int, int, int]) -> int:
    return int(np.all(img == np.array(rgb, np.uint8), axis=2).sum())


def test_reference_panel_shades_unscored_cells_and_shows_outcomes(tmp_path: Path) -> None:
    out = _picture(tmp_path)[:, 2 * N :]  # right panel, 2 px per cell, forward up, left left
    grid = out[50:355]  # between the caption and the legend
    assert tuple(out[2 * (199 - 100), 2 * (199 - 170)]) == NOT_SCORED_SWATCH  # not observed
    assert tuple(out[2 * (199 - 100), 2 * (199 - 10)]) == UNSEEN_RGB  # no camera
    # 8 x 8 cells of 2 x 2 px each: found car, false alarm, and the missed (observed) car
    assert _count(grid, TP_RGB) == _count(grid, FP_RGB) == _count(grid, FN_RGB) == 256


def test_every_panel_has_a_legend_of_what_it_draws(tmp_path: Path) -> None:
    img = _picture(tmp_path)
    # legend boxes along the bottom, left of the unseen strip (x >= 340 in each panel)
    pred_legend, ref_legend = img[355:, :300], img[355:, 2 * N : 2 * N + 300]
    lut = {probability_rgb(k / 255) for k in range(256)}
    colours = {tuple(int(v) for v in px) for px in pred_legend.reshape(-1, 3)}
    assert len(colours & lut) >= 10  # the probability colour ramp
    assert _count(pred_legend, UNSEEN_RGB) >= 36  # "no camera" swatch (camera coverage)
    for rgb in (TP_RGB, FP_RGB, FN_RGB, NOT_SCORED_SWATCH, UNSEEN_RGB):
        assert _count(ref_legend, rgb) >= 36, rgb  # one solid swatch each
    assert _count(img[:, : 2 * N], TP_RGB) == 0  # no outcomes in the prediction panel


def test_metrics_name_their_reference_and_scored_cells() -> None:
    assert metric_basis("lidar_visibility", 0.264) == (
        "vs LiDAR-visibility (observed cells, 26 % of grid)")
    assert metric_basis("gt_boxes", 1.0) == "vs GT boxes (all cells)"
    assert metric_basis("lidar", 0.8, "LiDAR ..., visible cells only") == (
        "vs LiDAR returns (camera-visible cells, 80 % of grid)")
    report = _report(_frame())
    frac = report.summary["mean_observed_fraction"]
    text = summary_table(report)
    assert f"vs LiDAR-visibility (observed cells, {100 * frac:.0f} % of grid)" in text
