"""ONNX export of the per-frame LSS graphs (whole model and stages), pure torch + onnx.

Graphs (input -> output, ``N`` cameras, dynamic in every graph):

* ``whole``: ``imgs`` (``1 x N x 3 x H x W``) + pooling indices (see
  :mod:`.static_graph`) -> ``logits`` (``1 x outC x X x Y``). Camera encoder, pooling and BEV
  encoder in one static graph; the geometry is folded into the index inputs, so the file does
  not depend on the rig.
* ``camera_encoder``: ``imgs`` -> ``feats`` (``1 x N x D x fH x fW x C``).
* ``bev_encoder``: ``bev`` (``1 x (C*Z) x X x Y``) -> ``logits``.
* ``baked``: ``imgs`` -> ``logits`` with the indices of one calibration baked in as constants.

Opset 18 (default): ``ScatterND`` / ``ScatterElements`` with ``reduction="add"`` need >= 16, and
18 is the newest opset that every runtime we target consumes (onnxruntime >= 1.14, TensorRT
8.6 / 10.x parsers) and the default of the torch exporters. 17 also works (``--opset 17``).

Export uses torch's TorchScript-based exporter (``dynamo=False``): the torch.export-based one
needs the ``onnxscript`` package, which is not part of this project's environment.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .static_graph import (
    POOLING_INPUTS,
    BevEncoderStage,
    CameraEncoderStage,
    StaticLSS,
    baked_module,
    pooling_indices,
)

DEFAULT_OPSET = 18
GRAPHS: tuple[str, ...] = ("whole", "camera_encoder", "bev_encoder", "baked")


def _export(
    module: nn.Module,
    args: tuple[Tensor, ...],
    input_names: list[str],
    output_names: list[str],
    dynamic_axes: dict[str, dict[int, str]],
    opset: int,
) -> bytes:
    buf = io.BytesIO()
    module = module.eval()
    with torch.no_grad(), warnings.catch_warnings():
        # the TorchScript exporter is deprecated upstream but is the one that runs without
        # onnxscript; tracer warnings about python ints are expected for static sizes
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message="Constant folding", category=UserWarning)
        torch.onnx.export(
            module,
            args,
            buf,
            input_names=input_names,
            output_names=output_names,
            dynamic_axes=dynamic_axes,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    return buf.getvalue()


def example_inputs(model: nn.Module, geom: Tensor, pooling_op: str) -> dict[str, Tensor]:
    """CPU example inputs of the whole graph for a geometry ``1 x N x D x fH x fW x 3``."""
    H, W = model.cfg.image.final_dim
    N = geom.shape[1]
    feeds = {"imgs": torch.zeros(1, N, 3, H, W)}
    feeds.update({k: v.cpu() for k, v in pooling_indices(geom, model.cfg, pooling_op).items()})
    return feeds


def export_graph(
    model: nn.Module,
    graph: str,
    geom: Tensor | None = None,
    calib: tuple[Tensor, ...] | None = None,
    pooling_op: str = "gather_cumsum",
    opset: int = DEFAULT_OPSET,
    num_cams: int | None = None,
) -> bytes:
    """Serialized ONNX model of one graph (see module doc). The model is exported on the CPU in
    float32; it is not modified (its weights are shared, not copied).

    ``geom`` (``1 x N x D x fH x fW x 3``) gives realistic example indices for ``whole`` (any
    rig works, only shapes matter); ``calib`` (rots, trans, intrins, post_rots, post_trans) is
    required for ``baked``. ``num_cams`` sets the example camera count (default: the config's).
    """
    if graph not in GRAPHS:
        raise ValueError(f"graph must be one of {GRAPHS}, got {graph!r}")
    if opset < 16:
        raise ValueError("opset must be >= 16 (ScatterND / ScatterElements reductions)")
    cfg = model.cfg
    H, W = cfg.image.final_dim
    X, Y = cfg.grid.bev_shape
    device = next(model.parameters()).device
    if device.type != "cpu":
        raise ValueError("move the model to the CPU before exporting")
    N = int(num_cams or (geom.shape[1] if geom is not None else cfg.image.ncams))
    cams = {1: "num_cams"}
    if graph == "camera_encoder":
        return _export(CameraEncoderStage(model), (torch.zeros(1, N, 3, H, W),), ["imgs"],
                       ["feats"], {"imgs": cams, "feats": cams}, opset)
    if graph == "bev_encoder":
        bev = torch.zeros(1, cfg.bev_channels, X, Y)
        return _export(BevEncoderStage(model), (bev,), ["bev"], ["logits"], {}, opset)
    if graph == "baked":
        if calib is None:
            raise ValueError("graph 'baked' needs the calibration tensors")
        module = baked_module(model, calib)
        return _export(module, (torch.zeros(1, calib[0].shape[1], 3, H, W),), ["imgs"],
                       ["logits"], {}, opset)
    if geom is None:
        raise ValueError("graph 'whole' needs an example geometry (model.get_geometry(...))")
    feeds = example_inputs(model, geom, pooling_op)
    names = ["imgs", *POOLING_INPUTS[pooling_op]]
    dyn: dict[str, dict[int, str]] = {"imgs": cams}
    if pooling_op == "scatter_nd":
        dyn["cell_index"] = {0: "num_points"}
    else:
        dyn["src_index"] = {0: "num_kept"}
        dyn["seg_end"] = {0: "num_segments"}
    return _export(StaticLSS(model, pooling_op), tuple(feeds[n] for n in names), names,
                   ["logits"], dyn, opset)


def check_onnx(data: bytes | str | Path) -> Any:
    """Load + ``onnx.checker.check_model(full_check=True)``; returns the ModelProto."""
    import onnx

    proto = onnx.load_from_string(data) if isinstance(data, bytes) else onnx.load(str(data))
    onnx.checker.check_model(proto, full_check=True)
    return proto


def op_types(data: bytes) -> set[str]:
    """Set of ONNX operator types in a serialized model."""
    return {n.op_type for n in check_onnx(data).graph.node}
