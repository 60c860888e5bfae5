"""The per-frame LSS graph with geometry folded into precomputed pooling indices (pure torch).

For a fixed rig, geometry ("lift" points -> BEV cells) depends only on the calibration, so it is
computed once per calibration and turned into integer index tensors. What runs per frame is a
static graph: camera encoder -> gather / scatter-add (or gather / cumsum) -> BEV encoder.

The indices are *graph inputs*, not constants, so one exported ONNX file (and one TensorRT engine
built from it) serves every rig with the same camera count and image size; changing the
calibration never triggers a re-export or an engine rebuild. (:func:`baked_module` gives the
variant with the indices baked in as constants, for tools that want an images-only graph.)

Pooling formulations (``pooling_op``), both sum the same points per cell and match
:class:`lss_bev_ros.lss.pooling.FixedPooling`:

* ``"scatter_nd"``: input ``cell_index`` (``P`` int64, one per frustum point, out-of-grid points
  go to a dummy cell that is sliced off); one ONNX ``ScatterND(reduction="add")`` (opset >= 16).
  Plain float32 sums, the closest to torch. onnxruntime CPU / CUDA run it, but the CPU kernel
  is only correct single-threaded (its parallel add races on duplicate indices, onnxruntime
  issues #18048 / #23396, so the backend refuses it with ``threads != 1``); the TensorRT ONNX
  parser does **not** support ScatterND reductions (onnx-tensorrt issue 957).
* ``"gather_cumsum"``: inputs ``src_index`` (``K``), ``seg_end`` (``U``), ``cell_segment``
  (``Z*X*Y``), int32: gather the kept rows sorted by cell, ``CumSum``, gather segment ends,
  difference, gather per cell. Only Gather / CumSum / Sub / Concat, which the TensorRT ONNX
  parser (8.x, 10.x) supports; as fast as ``scatter_nd`` on onnxruntime CPU (bench). The float32
  prefix sum adds a small rounding error (as the reference's ``QuickCumsum``: ~1e-5 relative on
  the pooled features, up to ~3e-3 on logits of std ~5 in the parity test); it must stay in
  float32 in reduced-precision engines (the TensorRT builder pins it).

Shapes: ``P = N * D * fH * fW`` frustum points, ``K <= P`` points inside the grid, ``U <= K``
occupied cells. Batch size is 1 (one rig snapshot per frame).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from lss_bev_ros.lss.config import LSSConfig
from lss_bev_ros.lss.pooling import voxel_coords

POOLING_OPS: tuple[str, ...] = ("scatter_nd", "gather_cumsum")

#: Graph input names per pooling op (after ``imgs``).
POOLING_INPUTS: dict[str, tuple[str, ...]] = {
    "scatter_nd": ("cell_index",),
    "gather_cumsum": ("src_index", "seg_end", "cell_segment"),
}


def num_cells(cfg: LSSConfig) -> int:
    """Z * X * Y cells of the BEV voxel grid."""
    X, Y, Z = cfg.grid.nx
    return X * Y * Z


def pooling_indices(geom: Tensor, cfg: LSSConfig, op: str) -> dict[str, Tensor]:
    """Index tensors (on ``geom``'s device) that fold ``geom`` into the pooling.

    Args:
        geom: ``1 x N x D x fH x fW x 3`` ego points (m) from ``model.get_geometry``.
        op: one of :data:`POOLING_OPS`.

    Returns:
        ``{input name: tensor}`` in :data:`POOLING_INPUTS` order; int64 for ``scatter_nd``
        (ONNX ScatterND requires it), int32 for ``gather_cumsum``. Cell index convention matches
        :class:`~lss_bev_ros.lss.pooling.FixedPooling` (``(z * X + ix) * Y + iy``).
    """
    if op not in POOLING_OPS:
        raise ValueError(f"pooling_op must be one of {POOLING_OPS}, got {op!r}")
    if geom.dim() != 6 or geom.shape[0] != 1 or geom.shape[-1] != 3:
        raise ValueError(f"geom must be 1 x N x D x fH x fW x 3, got {tuple(geom.shape)}")
    X, Y, _ = cfg.grid.nx
    coords, kept = voxel_coords(geom, cfg.grid)  # P x 3 (ix, iy, iz), P
    cell = (coords[:, 2] * X + coords[:, 0]) * Y + coords[:, 1]
    ncell = num_cells(cfg)
    if op == "scatter_nd":
        return {"cell_index": torch.where(kept, cell, torch.full_like(cell, ncell)).contiguous()}
    src = torch.nonzero(kept).squeeze(1)
    dst, order = torch.sort(cell[src], stable=True)
    src = src[order]
    last = torch.ones_like(dst, dtype=torch.bool)
    last[:-1] = dst[1:] != dst[:-1]
    seg_end = torch.nonzero(last).squeeze(1)
    cell_segment = torch.zeros(ncell, dtype=torch.long, device=geom.device)
    cell_segment[dst[seg_end]] = torch.arange(1, seg_end.numel() + 1, device=geom.device)
    if src.numel() == 0:  # no point in the grid: keep the graph valid with one zero segment
        src = torch.zeros(1, dtype=torch.long, device=geom.device)
        seg_end = torch.zeros(1, dtype=torch.long, device=geom.device)
    # int32 is enough (P < 2**31) and is what TensorRT takes for Gather indices
    return {
        "src_index": src.to(torch.int32).contiguous(),
        "seg_end": seg_end.to(torch.int32),
        "cell_segment": cell_segment.to(torch.int32),
    }


class _ScatterAddRows(torch.autograd.Function):
    """``zeros(num_rows, C).index_add_(0, index, rows)``, exported as ``ScatterND(add)``.

    torch's TorchScript ONNX exporter refuses ``index_add`` with duplicate indices and exports
    ``index_put(accumulate=True)`` incorrectly, so the symbolic is written out here.
    """

    @staticmethod
    def forward(ctx: Any, rows: Tensor, index: Tensor, num_rows: int) -> Tensor:
        return rows.new_zeros((num_rows, rows.shape[1])).index_add_(0, index, rows)

    @staticmethod
    def symbolic(g: Any, rows: Any, index: Any, num_rows: int) -> Any:
        def const(values: list[int]) -> Any:
            return g.op("Constant", value_t=torch.tensor(values, dtype=torch.long))

        channels = g.op("Slice", g.op("Shape", rows), const([1]), const([2]))
        shape = g.op("Concat", const([num_rows]), channels, axis_i=0)
        zeros = g.op("ConstantOfShape", shape, value_t=torch.tensor([0.0], dtype=torch.float32))
        zeros = g.op("CastLike", zeros, rows)
        idx = g.op("Unsqueeze", index, const([1]))
        return g.op("ScatterND", zeros, idx, rows, reduction_s="add")


def pool_flat(flat: Tensor, op: str, num_cell: int, *index: Tensor) -> Tensor:
    """Sum point features per cell: ``P x C`` -> ``num_cell x C`` (cell-major buffer)."""
    if op == "scatter_nd":
        (cell_index,) = index
        return _ScatterAddRows.apply(flat, cell_index, num_cell + 1)[:num_cell]
    src_index, seg_end, cell_segment = index
    csum = flat.index_select(0, src_index).cumsum(0)  # K x C
    ends = csum.index_select(0, seg_end)  # U x C
    sums = torch.cat((ends.new_zeros((1, ends.shape[1])), ends[:1], ends[1:] - ends[:-1]), 0)
    return sums.index_select(0, cell_segment)  # segment 0 = the zero row (empty cell)


def collapse_z(vox: Tensor, cfg: LSSConfig) -> Tensor:
    """``(Z*X*Y) x C`` -> ``1 x (C*Z) x X x Y`` (channel ``z*C + c``), as the model's pooling."""
    X, Y, Z = cfg.grid.nx
    C = vox.shape[-1]
    return vox.view(1, Z, X, Y, C).permute(0, 1, 4, 2, 3).reshape(1, Z * C, X, Y)


class StaticLSS(nn.Module):
    """Whole per-frame model: ``forward(imgs, *pooling indices) -> 1 x outC x X x Y`` logits.

    Shares ``model.camencode`` / ``model.bevencode`` (no copy). ``imgs``: ``1 x N x 3 x H x W``
    float (normalised). Exports to ONNX with a dynamic camera count (``N``) and dynamic
    ``K``/``U`` for ``gather_cumsum``.
    """

    def __init__(self, model: nn.Module, pooling_op: str = "scatter_nd") -> None:
        super().__init__()
        if pooling_op not in POOLING_OPS:
            raise ValueError(f"pooling_op must be one of {POOLING_OPS}, got {pooling_op!r}")
        self.cfg: LSSConfig = model.cfg
        self.pooling_op = pooling_op
        self.num_cell = num_cells(self.cfg)
        self.camencode = model.camencode
        self.bevencode = model.bevencode

    def forward(self, imgs: Tensor, *index: Tensor) -> Tensor:
        feats = CameraEncoderStage.encode(self.camencode, imgs)  # 1 x N x D x fH x fW x C
        flat = feats.reshape(-1, feats.shape[-1])  # P x C
        if flat.dtype != torch.float32:  # reduced precision (autocast): always pool in float32
            flat = flat.float()
        vox = pool_flat(flat, self.pooling_op, self.num_cell, *index)
        return self.bevencode(collapse_z(vox, self.cfg))


class CameraEncoderStage(nn.Module):
    """``1 x N x 3 x H x W`` -> ``1 x N x D x fH x fW x C`` lifted features."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.camencode = model.camencode

    @staticmethod
    def encode(camencode: nn.Module, imgs: Tensor) -> Tensor:
        B, N, C, H, W = imgs.shape
        x = camencode(imgs.reshape(B * N, C, H, W))  # BN x D x fH x fW x C
        return x.reshape(B, N, x.shape[1], x.shape[2], x.shape[3], x.shape[4])

    def forward(self, imgs: Tensor) -> Tensor:
        return self.encode(self.camencode, imgs)


class BevEncoderStage(nn.Module):
    """``1 x (C*Z) x X x Y`` pooled BEV features -> ``1 x outC x X x Y`` logits."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.bevencode = model.bevencode

    def forward(self, bev: Tensor) -> Tensor:
        return self.bevencode(bev)


def baked_module(model: nn.Module, calib: tuple[Tensor, ...]) -> nn.Module:
    """``imgs -> logits`` for one calibration with the indices baked in as constants
    (``model.fixed_rig`` with the exportable ``gather_cumsum`` pooling)."""
    return model.fixed_rig(*calib, method="gather_cumsum")
