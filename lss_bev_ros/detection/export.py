"""``lss-bev-export-yolo``: YOLO weights -> ONNX (dynamic batch) or TensorRT engine.

Uses ultralytics' own exporter, i.e. the workflow Jetson users know::

    YOLO("best.pt").export(format="engine", half=True, dynamic=True, batch=16, workspace=4)

* ``--format onnx``: ``N x 3 x H x W`` input with dynamic batch (and spatial size); runs here
  with onnxruntime; the detector node loads the ``.onnx`` directly.
* ``--format engine``: TensorRT FP16 (``--half``), dynamic batch 1..``--batch`` (default 16),
  ``--workspace`` GB of builder scratch memory; needs an NVIDIA GPU and TensorRT's Python
  bindings. The build can take minutes on a Jetson; the engine is written next to the weights
  (or to ``--out``), named by precision and batch, and is specific to that GPU + TensorRT version.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
import time
from pathlib import Path

from lss_bev_ros.detection.detector import (
    DetectorLoadError,
    import_ultralytics,
    resolve_weights,
)

TENSORRT_HELP = (
    "TensorRT Python bindings are not installed, so no .engine can be built here. "
    "Jetson: install JetPack (it ships TensorRT; `sudo apt install python3-libnvinfer "
    "python3-libnvinfer-dev`) and create the venv with --system-site-packages; x86 + NVIDIA GPU: "
    "`pip install tensorrt`. Until then use --format onnx (runs with onnxruntime)."
)


class ExportError(RuntimeError):
    """The export cannot run here (missing runtime, no GPU, bad weights)."""


def default_output(weights: Path, fmt: str, half: bool, batch: int, dynamic: bool) -> Path:
    """``best.pt`` -> ``best.onnx`` / ``best_fp16_b16.engine`` (precision and batch in the name)."""
    if fmt == "onnx":
        return weights.with_suffix(".onnx")
    tag = f"{'fp16' if half else 'fp32'}_b{batch}{'' if dynamic else 'static'}"
    return weights.with_name(f"{weights.stem}_{tag}.engine")


def export_yolo(
    weights: str | Path,
    fmt: str = "onnx",
    imgsz: int = 640,
    batch: int = 16,
    half: bool = False,
    dynamic: bool = True,
    workspace_gb: float = 4.0,
    device: str | None = None,
    out: str | Path | None = None,
    opset: int | None = None,
    force: bool = False,
) -> Path:
    """Export ``weights`` (.pt) and return the written file.

    An existing output is reused unless ``force`` (engine builds are slow; delete or force to
    rebuild after changing TensorRT, GPU or options).
    """
    if fmt not in ("onnx", "engine"):
        raise ExportError(f"unsupported format {fmt!r} (onnx or engine)")
    try:
        src = resolve_weights(weights)
    except DetectorLoadError as exc:
        raise ExportError(str(exc)) from exc
    if src.suffix.lower() != ".pt":
        raise ExportError(f"export needs PyTorch weights (.pt), got {src}")
    if batch < 1:
        raise ExportError("batch must be >= 1")
    if fmt == "engine":
        if importlib.util.find_spec("tensorrt") is None:
            raise ExportError(TENSORRT_HELP)
        import torch

        if not torch.cuda.is_available():
            raise ExportError("TensorRT engines are built on an NVIDIA GPU; torch sees no CUDA")
        device = device or "0"
    else:
        device = device or "cpu"
        if half and device == "cpu":
            print("note: --half ignored for ONNX on CPU (fp16 ONNX export needs a GPU)")
            half = False
    target = Path(out) if out else default_output(src, fmt, half, batch, dynamic)
    if target.exists() and not force:
        print(f"{target} exists; reusing it (--force to rebuild)")
        return target
    import_ultralytics()
    from ultralytics import YOLO

    kwargs = {
        "format": fmt, "imgsz": imgsz, "dynamic": dynamic, "batch": batch,
        "quantize": 16 if half else None,
        "device": device, "simplify": importlib.util.find_spec("onnxslim") is not None,
        "verbose": False,
    }
    if fmt == "engine":
        kwargs["workspace"] = workspace_gb
    if opset:
        kwargs["opset"] = opset
    what = "TensorRT engine (this can take several minutes)" if fmt == "engine" else "ONNX"
    print(f"exporting {src} -> {what}, imgsz {imgsz}, "
          f"{'dynamic batch 1..' + str(batch) if dynamic else 'batch ' + str(batch)}"
          f"{', fp16' if half else ''}; output {target}", flush=True)
    t0 = time.perf_counter()
    try:
        written = Path(YOLO(str(src), task="detect").export(**kwargs))
    except Exception as exc:
        raise ExportError(f"ultralytics export to {fmt} failed: {exc}") from exc
    if written.resolve() != target.resolve():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(written), target)
    print(f"wrote {target} ({target.stat().st_size / 1e6:.1f} MB) in "
          f"{time.perf_counter() - t0:.1f} s", flush=True)
    return target


def main(argv: list[str] | None = None) -> int:
    """CLI entry point (``lss-bev-export-yolo --help``)."""
    parser = argparse.ArgumentParser(
        prog="lss-bev-export-yolo",
        description="Export YOLO .pt weights to ONNX (dynamic batch) or a TensorRT engine "
        "(FP16, dynamic batch 1..N) with ultralytics' exporter.",
    )
    parser.add_argument("weights", help="YOLO .pt weights (e.g. models/yolo_synth/*.pt)")
    parser.add_argument("--format", choices=("onnx", "engine"), default="onnx")
    parser.add_argument("--imgsz", type=int, default=640, help="input size (long side), px")
    parser.add_argument("--batch", type=int, default=16,
                        help="max batch of the dynamic profile (engine: 1..batch)")
    parser.add_argument("--half", action="store_true", help="FP16 (engine; ignored on CPU)")
    parser.add_argument("--static", action="store_true", help="fixed batch instead of dynamic")
    parser.add_argument("--workspace", type=float, default=4.0,
                        help="TensorRT builder workspace, GB")
    parser.add_argument("--device", default=None, help="cpu (onnx default) or GPU index")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default: best)")
    parser.add_argument("--out", default=None, help="output path (default: next to weights)")
    parser.add_argument("--force", action="store_true", help="rebuild an existing output")
    args = parser.parse_args(argv)
    try:
        export_yolo(args.weights, args.format, args.imgsz, args.batch, args.half,
                    not args.static, args.workspace, args.device, args.out, args.opset,
                    args.force)
    except Exception as exc:
        print(f"lss-bev-export-yolo: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
