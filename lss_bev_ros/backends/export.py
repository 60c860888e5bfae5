"""``lss-bev-export``: export an LSS checkpoint to ONNX (whole per-frame model and/or stages).

Examples::

    lss-bev-export --checkpoint runs/lss.pt --rig rig.yaml --out export/
    lss-bev-export --checkpoint runs/lss.pt --graphs whole camera_encoder bev_encoder \\
        --pooling-op gather_cumsum --opset 18 --verify

Writes into ``--out``: ``lss_<graph>.onnx`` per graph, ``pooling_indices_<op>.npz`` (the index
inputs of the whole graph for this rig, so a C++ / trtexec user can feed them), and
``manifest.json`` (inputs, outputs, shapes, opset, model hash, rig fingerprint). Without
``--rig`` the nuScenes-like default rig is used; the ``whole`` graph itself is rig-independent,
only ``baked`` and the index file depend on the rig. ``--verify`` runs every graph in
onnxruntime against torch on random images and prints the max abs logit error.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .engine_cache import _atomic_write, model_hash
from .onnx_export import DEFAULT_OPSET, GRAPHS, check_onnx, export_graph
from .static_graph import POOLING_INPUTS, POOLING_OPS, pooling_indices


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lss-bev-export",
        description="Export a Lift-Splat-Shoot checkpoint to ONNX (whole model / stages) for "
        "onnxruntime and TensorRT.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", type=Path, help="checkpoint (lss_bev_ros or reference)")
    src.add_argument("--random-weights", action="store_true",
                     help="no checkpoint: random weights (for pipeline tests)")
    p.add_argument("--small", action="store_true",
                   help="with --random-weights: LSSConfig.small() instead of the default")
    p.add_argument("--rig", type=Path, default=None,
                   help="rig calibration YAML (default: nuScenes-like rig)")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--graphs", nargs="+", choices=GRAPHS,
                   default=["whole", "camera_encoder", "bev_encoder"])
    p.add_argument("--pooling-op", choices=POOLING_OPS, default="gather_cumsum",
                   help="gather_cumsum: scatter-free (TensorRT, fastest on onnxruntime CPU); "
                   "scatter_nd: ScatterND(add), onnxruntime only (CPU: threads=1)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset (>= 16)")
    p.add_argument("--verify", action="store_true",
                   help="compare every exported graph with torch in onnxruntime")
    return p


def _load(args: argparse.Namespace) -> Any:
    from lss_bev_ros.lss.config import LSSConfig
    from lss_bev_ros.lss.model import LiftSplatShoot

    if args.checkpoint is not None:
        from lss_bev_ros.lss.checkpoint import load_checkpoint

        model, _, _ = load_checkpoint(args.checkpoint, map_location="cpu")
        return model.eval()
    torch.manual_seed(0)
    cfg = LSSConfig.small() if args.small else LSSConfig()
    return LiftSplatShoot(cfg).eval()


def _verify(model: Any, graph: str, data: bytes, calib: tuple, op: str) -> float:
    import onnxruntime as ort

    from .rig import random_images

    so = ort.SessionOptions()
    if op == "scatter_nd":
        so.intra_op_num_threads = 1  # the CPU ScatterND add races when multi-threaded
    sess = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
    imgs = random_images(model.cfg, calib[0].shape[1], seed=1)
    with torch.no_grad():
        geom = model.get_geometry(*calib)
        feats = model.get_cam_feats(imgs)
        bev = model.voxel_pooling(geom, feats)
        ref = model.bev_encode(bev)
        if graph == "camera_encoder":
            out = sess.run(None, {"imgs": imgs.numpy()})[0]
            return float(np.abs(out - feats.numpy()).max())
        if graph == "bev_encoder":
            out = sess.run(None, {"bev": bev.numpy()})[0]
            return float(np.abs(out - ref.numpy()).max())
        feeds = {"imgs": imgs.numpy()}
        if graph == "whole":
            feeds.update({k: v.numpy() for k, v in pooling_indices(geom, model.cfg, op).items()})
        out = sess.run(None, feeds)[0]
        return float(np.abs(out - ref.numpy()).max())


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from lss_bev_ros.calibration import CalibrationError, load_rig_yaml

    from .rig import calibration_tensors

    try:
        model = _load(args)
        rig = load_rig_yaml(args.rig) if args.rig is not None else None
    except (FileNotFoundError, ValueError, CalibrationError) as exc:
        print(f"lss-bev-export: {exc}", file=sys.stderr)
        return 2
    cfg = model.cfg
    if args.opset < 16:
        print("lss-bev-export: --opset must be >= 16", file=sys.stderr)
        return 2
    calib = calibration_tensors(cfg, rig)
    with torch.no_grad():
        geom = model.get_geometry(*calib)
    args.out.mkdir(parents=True, exist_ok=True)
    H, W = cfg.image.final_dim
    X, Y = cfg.grid.bev_shape
    N = int(calib[0].shape[1])
    manifest: dict[str, Any] = {
        "model_hash": model_hash(model.state_dict(), cfg.to_dict()),
        "config": cfg.to_dict(),
        "opset": args.opset,
        "pooling_op": args.pooling_op,
        "rig": str(args.rig) if args.rig else "nuscenes_like_rig",
        "rig_fingerprint": rig.fingerprint() if rig is not None else None,
        "cameras": list(rig.names) if rig is not None else list(cfg.image.cams[:N]),
        "graphs": {},
    }
    idx = pooling_indices(geom, cfg, args.pooling_op)
    index_file = args.out / f"pooling_indices_{args.pooling_op}.npz"
    np.savez(index_file, **{k: v.numpy() for k, v in idx.items()})
    io = {
        "whole": ({"imgs": [1, N, 3, H, W],
                   **{k: list(idx[k].shape) for k in POOLING_INPUTS[args.pooling_op]}},
                  {"logits": [1, cfg.out_channels, X, Y]}),
        "camera_encoder": ({"imgs": [1, N, 3, H, W]}, {"feats": [1, N, cfg.grid.num_depth_bins,
                                                                 *cfg.feature_size,
                                                                 cfg.cam_channels]}),
        "bev_encoder": ({"bev": [1, cfg.bev_channels, X, Y]},
                        {"logits": [1, cfg.out_channels, X, Y]}),
        "baked": ({"imgs": [1, N, 3, H, W]}, {"logits": [1, cfg.out_channels, X, Y]}),
    }
    status = 0
    for graph in args.graphs:
        t0 = time.perf_counter()
        data = export_graph(model, graph, geom=geom, calib=calib, pooling_op=args.pooling_op,
                            opset=args.opset)
        check_onnx(data)
        path = args.out / f"lss_{graph}.onnx"
        _atomic_write(path, data)
        entry: dict[str, Any] = {"file": path.name, "inputs": io[graph][0],
                                 "outputs": io[graph][1], "bytes": len(data)}
        msg = f"{graph}: {path} ({len(data) / 1e6:.1f} MB, {time.perf_counter() - t0:.1f} s)"
        if args.verify:
            err = _verify(model, graph, data, calib, args.pooling_op)
            entry["verify_max_abs_err"] = err
            ok = err < 1e-3
            status |= 0 if ok else 1
            msg += f", onnxruntime vs torch max abs err {err:.2e} ({'ok' if ok else 'FAILED'})"
        manifest["graphs"][graph] = entry
        print(msg)
    manifest["pooling_index_file"] = index_file.name
    _atomic_write(args.out / "manifest.json", json.dumps(manifest, indent=2).encode())
    print(f"manifest: {args.out / 'manifest.json'}")
    return status


__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())
