"""Report files of ``lss-bev-bag eval``: per-frame CSV/JSON, summary table, plots, video.

Plots use matplotlib's Agg backend (no display). Layout of ``out_dir``::

    frames.csv, frames.json      per-frame IoU / precision / recall / counts / latency / stages
    summary.json, summary.txt    run summary and the table printed by the CLI
    iou_over_time.png            per-frame IoU, its running mean and the scored (observed)
                                 share of the grid over bag time
    latency_hist.png             per-frame latency histogram (+ p50 / p90 / p99)
    bev_samples/frame_NNNN.png   prediction | vs reference (TP green, FP red, FN blue, cells
                                 the reference does not know light grey = not scored, cells
                                 no camera sees dark grey), each panel with its legend

Every metric printed or plotted names what it is compared against and on which cells
(:func:`metric_basis`, e.g. "vs LiDAR-visibility (observed cells, 26 % of grid)").
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from lss_bev_ros.eval.reference import ReferenceKind
from lss_bev_ros.visualization import (
    bev_legend,
    colorize_bev,
    draw_legend,
    draw_text_block,
    hstack_padded,
    reference_label,
    tile_cameras,
)

if TYPE_CHECKING:
    from lss_bev_ros.eval.evaluator import FrameResult
    from rosbag_tools.evaluate import EvalReport


def _num(v: Any) -> Any:
    """JSON-safe number (NaN/inf -> None)."""
    if isinstance(v, float | np.floating):
        f = float(v)
        return f if math.isfinite(f) else None
    if isinstance(v, np.integer):
        return int(v)
    return v


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    return _num(obj)


def _fmt(v: Any, digits: int = 4) -> str:
    if isinstance(v, float):
        return "nan" if not math.isfinite(v) else f"{v:.{digits}f}"
    return str(v)


def _observed_only(kind: str | None) -> bool:
    try:
        return ReferenceKind.parse(kind or "lidar").scores_observed_only
    except ValueError:
        return False


def metric_basis(reference: str | None, observed_fraction: float = math.nan,
                 description: str = "") -> str:
    """What a metric is compared against and on which cells, for captions and titles:
    ``"vs LiDAR-visibility (observed cells, 26 % of grid)"``, ``"vs GT boxes (all cells)"``.

    ``reference``: the ReferenceKind name; ``observed_fraction``: share of the grid's cells
    scored (0..1, NaN: unknown); ``description``: the evaluator's reference description
    (its ", visible cells only" suffix marks the camera-visible region)."""
    label = reference_label(reference)
    frac = (f", {100.0 * observed_fraction:.0f} % of grid"
            if math.isfinite(observed_fraction) else "")
    if _observed_only(reference):
        cells = "observed cells"
    elif description.endswith("visible cells only"):
        cells = "camera-visible cells"
    else:
        cells, frac = "all cells", ""
    return f"vs {label} ({cells}{frac})"


def _summary_basis(s: dict[str, Any]) -> str:
    frac = s.get("mean_observed_fraction", math.nan)
    return metric_basis(s.get("reference"), frac if isinstance(frac, float) else math.nan,
                        str(s.get("reference_description") or ""))


def frame_observed_fractions(report: EvalReport) -> np.ndarray:
    """Per-frame share of the grid's cells scored (0..1): ``FrameRecord.observed_fraction``
    when recorded, else scored cells (tp + fp + fn + tn) over the grid's cells (known from a
    sample picture); NaN where neither is known."""
    n_cells = report.samples[0].probability.size if report.samples else 0
    out = []
    for f in report.frames:
        v = getattr(f, "observed_fraction", None)
        if v is None:
            v = (f.tp + f.fp + f.fn + f.tn) / n_cells if n_cells else math.nan
        out.append(float(v))
    return np.array(out, dtype=float)


def _fused_lines(f: dict) -> list[str]:
    """The temporally fused grid (fusion_node's core) against the same reference."""
    if not f:
        return []
    return [f"{'fused IoU':<12}{_fmt(f.get('mean_iou', math.nan)):>12}   "
            f"(ego-motion-compensated temporal fusion, {f.get('frames_evaluated', 0)} frames, "
            "same reference)"]


def _objects_lines(o: dict) -> list[str]:
    """Devkit detection / tracking scores of the objects (``--objects --dataroot``)."""
    if not o:
        return []
    if "mAP" not in o:
        return ["", f"objects    {o.get('frames', 0)} frames; {o.get('scored', '')}"]
    return ["", f"objects (nuScenes devkit vs the dataroot's ground truth, "
                f"{o.get('key_frames', 0)} key frames)",
            "  " + "  ".join(f"{k} {_fmt(o.get(k, math.nan))}" for k in
                             ("mAP", "NDS", "car_AP", "mATE", "mAOE", "mAVE")),
            "  " + "  ".join(f"{k} {_fmt(o.get(k, math.nan))}" for k in
                             ("AMOTA", "AMOTP", "IDS"))]


def summary_table(report: EvalReport) -> str:
    """Metrics and per-stage latency percentiles as a plain-text table."""
    s = report.summary
    lines = [
        f"bag        {s.get('bag')}",
        f"weights    {s.get('weights')}   backend {s.get('backend')}",
        f"reference  {s.get('reference_description')}",
        f"frames     {s.get('frames_evaluated')} evaluated / {s.get('frames_processed')} "
        f"processed, {s.get('unmatched_count', 0)} unmatched; "
        f"{_fmt(s.get('throughput_fps', math.nan), 2)} frames/s",
        "",
        f"scored     {_summary_basis(s)}, mean over frames",
        "",
        f"{'metric':<12}{'mean/frame':>12}{'pooled':>10}   ({_summary_basis(s)})",
        f"{'IoU':<12}{_fmt(s.get('mean_iou', math.nan)):>12}"
        f"{_fmt(s.get('pooled_iou', math.nan)):>10}",
        f"{'precision':<12}{_fmt(s.get('mean_precision', math.nan)):>12}"
        f"{_fmt(s.get('pooled_precision', math.nan)):>10}",
        f"{'recall':<12}{_fmt(s.get('mean_recall', math.nan)):>12}"
        f"{_fmt(s.get('pooled_recall', math.nan)):>10}",
        *_fused_lines(s.get("fused") or {}),
        *_objects_lines(s.get("objects") or {}),
        "",
        f"{'stage (ms)':<16}{'p50':>9}{'p90':>9}{'p99':>9}{'mean':>9}",
    ]
    for name, st in report.stage_stats.items():
        lines.append(f"{name:<16}{_fmt(st['p50'], 1):>9}{_fmt(st['p90'], 1):>9}"
                     f"{_fmt(st['p99'], 1):>9}{_fmt(st['mean'], 1):>9}")
    lines.append(f"{'frame latency':<16}{_fmt(s.get('latency_p50_ms', math.nan), 1):>9}"
                 f"{_fmt(s.get('latency_p90_ms', math.nan), 1):>9}"
                 f"{_fmt(s.get('latency_p99_ms', math.nan), 1):>9}"
                 f"{_fmt(s.get('latency_mean_ms', math.nan), 1):>9}")
    if s.get("errors"):
        lines.append("")
        lines.append("input errors: " + ", ".join(f"{k}={v}" for k, v in s["errors"].items()))
    return "\n".join(lines)


def write_frames(report: EvalReport, out_dir: Path) -> tuple[Path, Path]:
    """frames.csv and frames.json."""
    rows = [f.row() for f in report.frames]
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    csv_path = out_dir / "frames.csv"
    with csv_path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys or ["index"])
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k, "") for k in keys})
    json_path = out_dir / "frames.json"
    json_path.write_text(json.dumps(_jsonable(rows), indent=1))
    return csv_path, json_path


def plot_iou(report: EvalReport, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.5), dpi=100)
    if report.frames:
        t0 = report.frames[0].stamp
        t = np.array([f.stamp - t0 for f in report.frames])
        iou = np.array([f.iou for f in report.frames], dtype=float)
        running = np.array([np.nanmean(iou[: i + 1]) if np.isfinite(iou[: i + 1]).any()
                            else np.nan for i in range(len(iou))])
        ax.plot(t, iou, ".-", label="IoU per frame")
        ax.plot(t, running, "-", label="running mean")
        frac = frame_observed_fractions(report)
        if _observed_only(report.summary.get("reference")) and np.isfinite(frac).any():
            ax.plot(t, frac, ":", color="0.4", label="scored (observed) share of grid")
    ax.set_xlabel("bag time (s)")
    ax.set_ylabel("IoU / share of grid")
    ax.set_ylim(0, 1)
    ax.set_title(f"BEV IoU {_summary_basis(report.summary)}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_latency(report: EvalReport, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lat = np.array([f.latency_ms for f in report.frames], dtype=float)
    lat = lat[np.isfinite(lat)]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    if lat.size:
        ax.hist(lat, bins=min(30, max(5, lat.size // 2)), color="tab:blue", alpha=0.8)
        for q, style in ((50, "-"), (90, "--"), (99, ":")):
            v = float(np.percentile(lat, q))
            ax.axvline(v, color="k", linestyle=style, label=f"p{q} {v:.0f} ms")
        ax.legend()
    ax.set_xlabel("frame latency (ms): decode + BEV + grid encoding")
    ax.set_ylabel("frames")
    ax.set_title(f"latency ({report.summary.get('backend', '')})")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def bev_panels(prob: np.ndarray, visible: np.ndarray | None, reference: np.ndarray | None,
               observed: np.ndarray | None, *, threshold: float, reference_kind: str | None,
               iou: float, observed_fraction: float = math.nan, title: str = "",
               scale: int = 2) -> list[np.ndarray]:
    """The BEV pictures of one frame, each captioned and with its legend: the prediction
    (probability colours, cells no camera sees grey) and, with a ``reference`` (X x Y bool),
    the outcomes against it (TP / FP / FN; cells outside ``observed`` (X x Y bool, None: all
    scored) light grey: not scored). ``prob`` X x Y 0..1 indexed [ix, iy]; ``iou`` 0..1;
    ``observed_fraction``: scored share of the grid (0..1, NaN: from ``observed``)."""
    pred = colorize_bev(prob, visible, threshold=threshold, scale=scale)
    coverage = 100.0 * float(np.mean(visible)) if visible is not None else 100.0
    draw_text_block(pred, [f"{title} prediction".strip(),
                           f"camera coverage {coverage:.0f} % of grid"])
    draw_legend(pred, bev_legend())
    panels = [pred]
    if reference is not None:
        if not math.isfinite(observed_fraction) and observed is not None:
            observed_fraction = float(np.mean(observed))
        basis = metric_basis(reference_kind, observed_fraction)
        out = colorize_bev(prob, visible, reference, observed=observed, threshold=threshold,
                           scale=scale)
        draw_text_block(out, [basis, f"IoU {_fmt(float(iou), 3)} at p > {threshold:g}"])
        draw_legend(out, bev_legend(reference=True, observed=observed is not None))
        panels.append(out)
    return panels


def write_samples(report: EvalReport, out_dir: Path, threshold: float) -> list[Path]:
    """Prediction | vs-reference pictures of the sampled frames (see :func:`bev_panels`;
    a sample's ``observed`` mask, when it has one, marks the cells the reference scores)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    t0 = report.frames[0].stamp if report.frames else 0.0
    fractions = dict(zip((f.stamp for f in report.frames), frame_observed_fractions(report),
                         strict=True))
    kind = report.summary.get("reference")
    for i, s in enumerate(report.samples):
        parts = bev_panels(s.probability, s.visible, s.reference, getattr(s, "observed", None),
                           threshold=threshold, reference_kind=kind, iou=s.iou,
                           observed_fraction=fractions.get(s.stamp, math.nan),
                           title=f"t={s.stamp - t0:.2f}s")
        img = hstack_padded(parts)
        p = out_dir / f"frame_{i:04d}.png"
        cv2.imwrite(str(p), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        paths.append(p)
    return paths


def write_report(report: EvalReport, out_dir: Path) -> EvalReport:
    """All report files into ``out_dir`` (created); fills ``report.files``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    report.out_dir = out_dir
    csv_path, json_path = write_frames(report, out_dir)
    report.files.update({"frames_csv": csv_path, "frames_json": json_path})
    summ = dict(report.summary)
    summ["stages_ms"] = report.stage_stats
    (out_dir / "summary.json").write_text(json.dumps(_jsonable(summ), indent=2))
    (out_dir / "summary.txt").write_text(summary_table(report) + "\n")
    report.files["summary_json"] = out_dir / "summary.json"
    report.files["summary_txt"] = out_dir / "summary.txt"
    report.files["iou_plot"] = plot_iou(report, out_dir / "iou_over_time.png")
    report.files["latency_plot"] = plot_latency(report, out_dir / "latency_hist.png")
    thr = float(report.summary.get("threshold", 0.5))
    for i, p in enumerate(write_samples(report, out_dir / "bev_samples", thr)):
        report.files[f"bev_sample_{i}"] = p
    return report


class VideoWriter:
    """Annotated video (cameras + BEV prediction vs reference) via ``cv2.VideoWriter``.

    The BEV part is :func:`bev_panels`' outcome picture (or the prediction without a
    reference), captioned with what it is compared against (``reference``: the ReferenceKind
    name) and with its legend. ``.mp4`` uses the ``mp4v`` codec, ``.avi`` MJPG. Frames are
    written as they are evaluated, into a hidden temporary file beside ``path``
    (``.<name>.partial<suffix>``) that becomes
    ``path`` only on ``close(success=True)``; ``close(success=False)`` (or leaving a ``with``
    block by an exception) deletes it, so a failed evaluation never leaves a partial video.
    """

    def __init__(self, path: Path, fps: float | None = None, threshold: float = 0.5,
                 height: int = 400, reference: str = "") -> None:
        if path.suffix.lower() not in (".mp4", ".avi"):
            raise ValueError(f"video must be .mp4 or .avi, got {path.name}")
        self.path = path
        self.partial_path = path.with_name(f".{path.stem}.partial{path.suffix}")
        self.fps = float(fps) if fps else 2.0
        self.threshold = threshold
        self.height = height
        self.reference = reference
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None
        self._t0: float | None = None
        self.frames = 0

    def add(self, images: dict[str, np.ndarray], prob: np.ndarray, known: np.ndarray,
            reference: np.ndarray | None, result: FrameResult,
            observed: np.ndarray | None = None) -> None:
        """One frame: camera images (name -> H x W x 3 RGB), ``prob`` / ``known`` /
        ``reference`` / ``observed`` X x Y (see :func:`bev_panels`), its metrics."""
        bev = bev_panels(prob, known, reference, observed, threshold=self.threshold,
                         reference_kind=self.reference or None, iou=result.iou,
                         observed_fraction=float(getattr(result, "observed_fraction",
                                                         math.nan)))[-1]
        cams = tile_cameras(images, tile_size=(self.height // 2, self.height * 8 // 9))
        frame = hstack_padded([cams, bev], height=self.height)
        if self._t0 is None:
            self._t0 = result.stamp
        cv2.putText(frame, f"t={result.stamp - self._t0:.2f}s IoU={_fmt(result.iou, 3)} "
                    f"mean={_fmt(result.mean_iou, 3)} vs {reference_label(self.reference)}",
                    (8, self.height - 10),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
        h, w = frame.shape[:2]
        w -= w % 2
        frame = np.ascontiguousarray(frame[:h - h % 2, :w])
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fourcc = cv2.VideoWriter_fourcc(*("mp4v" if self.path.suffix.lower() == ".mp4"
                                              else "MJPG"))
            self._size = (frame.shape[1], frame.shape[0])
            self._writer = cv2.VideoWriter(str(self.partial_path), fourcc, self.fps, self._size)
            if not self._writer.isOpened():
                self._writer = None
                self.partial_path.unlink(missing_ok=True)
                raise RuntimeError(f"cv2.VideoWriter cannot open {self.partial_path}")
        if (frame.shape[1], frame.shape[0]) != self._size:
            frame = cv2.resize(frame, self._size)
        self._writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        self.frames += 1

    def close(self, success: bool = True) -> None:
        """Finish the video: on ``success`` move it to :attr:`path` (when it has frames),
        otherwise delete the partial file. Idempotent."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
            if success and self.frames:
                os.replace(self.partial_path, self.path)
        self.partial_path.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(success=exc_type is None)
