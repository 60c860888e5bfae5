"""Voxel ("splat") pooling of lifted camera features into the BEV grid, pure torch.

Two interchangeable implementations (``allclose`` on the same input, see test/lss):

* :func:`cumsum_pool` - the reference algorithm: voxel index per point, drop points outside the
  grid, sort by voxel rank, cumulative sum, differences at rank boundaries (``QuickCumsum`` with
  its custom backward), scatter into ``B x C x Z x X x Y`` and collapse Z. Everything, including
  the sort, runs per frame.
* :class:`PrecomputedPooling` / :class:`FixedPooling` - for a fixed rig the geometry only
  changes with the calibration, so the kept point indices and their flat destination cell are
  computed once; per frame it is a single ``index_add`` (scatter-add) of the feature rows into
  a zeroed ``cells x C`` buffer. No sort, no data-dependent shapes, so it traces/exports with
  static shapes. Differentiable w.r.t. the features (gather and index_add
  both have gradients); not w.r.t. the geometry (integer cells), like the reference.

Output of both: ``B x (C*Z) x X x Y`` with channel ``z*C + c`` and axes (x forward, y left);
see :mod:`.config` for the mapping onto nav_msgs/OccupancyGrid. The reference path returns NCHW
(contiguous) memory, the precomputed path a channels-last view of the same values.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from .config import GridConfig

SEGMENT_METHODS: tuple[str, ...] = ("index_add", "gather_cumsum")


def _grid_tensors(grid: GridConfig, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    dx = torch.tensor(grid.dx, dtype=torch.float32, device=device)
    bx = torch.tensor(grid.bx, dtype=torch.float32, device=device)
    nx = torch.tensor(grid.nx, dtype=torch.long, device=device)
    return dx, bx, nx


def voxel_coords(geom: Tensor, grid: GridConfig) -> tuple[Tensor, Tensor]:
    """Integer voxel coordinates and in-grid mask of ego points.

    Args:
        geom: ``B x N x D x H x W x 3`` ego points (m).

    Returns:
        ``(coords, kept)``: ``P x 3`` long (ix, iy, iz) with ``P = B*N*D*H*W`` and ``P`` bool.
        Index rule ``((geom - (bx - dx/2)) / dx).long()`` (truncation, as the reference).
    """
    dx, bx, nx = _grid_tensors(grid, geom.device)
    g = geom.detach().to(torch.float32)
    coords = ((g - (bx - dx / 2.0)) / dx).long().view(-1, 3)
    kept = (
        (coords[:, 0] >= 0)
        & (coords[:, 0] < nx[0])
        & (coords[:, 1] >= 0)
        & (coords[:, 1] < nx[1])
        & (coords[:, 2] >= 0)
        & (coords[:, 2] < nx[2])
    )
    return coords, kept


# ---------------------------------------------------------------------------------------------
# reference path
# ---------------------------------------------------------------------------------------------
class QuickCumsum(torch.autograd.Function):
    """Sum of consecutive rows with equal rank (rows sorted by rank), with a cheap backward.

    forward(x ``K x C``, geom ``K x 4`` long, ranks ``K``) -> (``U x C`` sums, ``U x 4``).
    The gradient of each input row is the gradient of the segment it belongs to.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, geom_feats: Tensor, ranks: Tensor) -> tuple[Tensor, Tensor]:
        x = x.cumsum(0)
        kept = torch.ones(x.shape[0], device=x.device, dtype=torch.bool)
        kept[:-1] = ranks[1:] != ranks[:-1]
        x, geom_feats = x[kept], geom_feats[kept]
        x = torch.cat((x[:1], x[1:] - x[:-1]))
        ctx.save_for_backward(kept)
        ctx.mark_non_differentiable(geom_feats)
        return x, geom_feats

    @staticmethod
    def backward(ctx: Any, gradx: Tensor, gradgeom: Tensor) -> tuple[Tensor, None, None]:
        (kept,) = ctx.saved_tensors
        back = torch.cumsum(kept, 0)
        back[kept] -= 1
        return gradx[back], None, None


def cumsum_pool(geom: Tensor, feats: Tensor, grid: GridConfig) -> Tensor:
    """Reference voxel pooling (sort + cumsum trick), everything recomputed per call.

    Args:
        geom: ``B x N x D x H x W x 3`` ego points (m).
        feats: ``B x N x D x H x W x C`` lifted features.

    Returns:
        ``B x (C*Z) x X x Y`` summed features per BEV cell.
    """
    B, N, D, H, W, C = feats.shape
    P = B * N * D * H * W
    X, Y, Z = grid.nx
    x = feats.reshape(P, C)
    coords, kept = voxel_coords(geom, grid)
    batch_ix = torch.arange(B, device=feats.device).repeat_interleave(P // B).view(P, 1)
    coords = torch.cat((coords, batch_ix), 1)  # P x 4 (ix, iy, iz, b)
    x, coords = x[kept], coords[kept]
    ranks = coords[:, 0] * (Y * Z * B) + coords[:, 1] * (Z * B) + coords[:, 2] * B + coords[:, 3]
    sorts = ranks.argsort()
    x, coords, ranks = x[sorts], coords[sorts], ranks[sorts]
    x, coords = QuickCumsum.apply(x, coords, ranks)
    final = torch.zeros((B, C, Z, X, Y), device=x.device, dtype=x.dtype)
    final[coords[:, 3], :, coords[:, 2], coords[:, 0], coords[:, 1]] = x
    return torch.cat(final.unbind(dim=2), 1)  # B x (C*Z) x X x Y


# ---------------------------------------------------------------------------------------------
# precomputed path
# ---------------------------------------------------------------------------------------------
def tensor_key(*tensors: Tensor) -> str:
    """Content hash (blake2b) of tensors: shape, dtype and values. Cheap for calibration-sized
    inputs (a few hundred floats); ~1 ms per MB for geometry tensors."""
    h = hashlib.blake2b(digest_size=16)
    for t in tensors:
        a = t.detach()
        h.update(f"{tuple(a.shape)}|{a.dtype}|".encode())
        h.update(a.to("cpu").contiguous().numpy().tobytes())
    return h.hexdigest()


class FixedPooling(nn.Module):
    """Per-frame pooling for one fixed geometry; indices are registered buffers.

    Only static-shape gather / scatter-add ops, so ``torch.jit.trace`` / ``torch.onnx.export``
    (``opset_version >= 16``) produce a graph whose only input is the feature tensor.

    Cells are numbered ``((b * X + ix) * Y + iy) * Z + iz`` so the result buffer
    ``(B*X*Y*Z) x C`` *is* the BEV tensor in channels-last memory order: the output
    ``B x (C*Z) x X x Y`` (channel ``z*C + c``) is a view, no transpose copy. Convolutions accept
    it as is (``torch.channels_last``); call ``.contiguous()`` if a consumer needs NCHW memory.

    ``method="index_add"`` (default) buffers:
        ``dst_idx``: ``P`` long, destination cell of every frustum point (``P = B*N*D*H*W``);
        points outside the grid go to a dump row ``B*X*Y*Z`` that is sliced off. Per frame:
        ``zeros(cells + 1, C).index_add_(0, dst_idx, feats.view(P, C))`` - one op.
    ``method="gather_cumsum"`` buffers (no scatter at all, for runtimes without scatter-add):
        ``src_idx`` (``K``, in-grid points sorted by cell), ``seg_end`` (``U``, last sorted row of
        each occupied cell), ``cell_seg`` (``B*X*Y*Z``, 1-based segment per cell, 0 = empty).
        Per frame: gather, cumsum, gather, difference, gather. Float32 cumsum like the
        reference (~1e-6 relative error for large sums).
    """

    def __init__(self, geom: Tensor, grid: GridConfig, method: str = "index_add") -> None:
        super().__init__()
        if method not in SEGMENT_METHODS:
            raise ValueError(f"method must be one of {SEGMENT_METHODS}, got {method!r}")
        if geom.dim() != 6 or geom.shape[-1] != 3:
            raise ValueError(f"geom must be B x N x D x H x W x 3, got {tuple(geom.shape)}")
        self.grid = grid
        self.method = method
        self.geom_shape: tuple[int, ...] = tuple(geom.shape[:-1])  # B, N, D, H, W
        B = geom.shape[0]
        X, Y, Z = grid.nx
        self.num_cells = B * X * Y * Z
        coords, kept = voxel_coords(geom, grid)
        P = coords.shape[0]
        b = torch.arange(B, device=geom.device).repeat_interleave(P // B)
        cell = ((b * X + coords[:, 0]) * Y + coords[:, 1]) * Z + coords[:, 2]
        self.num_points = int(kept.sum())  # K: frustum points inside the grid
        if method == "index_add":
            dst = torch.where(kept, cell, torch.full_like(cell, self.num_cells))
            self.register_buffer("dst_idx", dst.contiguous())
        else:
            src = torch.nonzero(kept).squeeze(1)
            dst, order = torch.sort(cell[src], stable=True)  # segments = runs of equal cells
            src = src[order]
            last = torch.ones_like(dst, dtype=torch.bool)
            last[:-1] = dst[1:] != dst[:-1]
            seg_end = torch.nonzero(last).squeeze(1)
            cell_seg = torch.zeros(self.num_cells, dtype=torch.long, device=geom.device)
            cell_seg[dst[seg_end]] = torch.arange(1, seg_end.numel() + 1, device=geom.device)
            self.register_buffer("src_idx", src.contiguous())
            self.register_buffer("seg_end", seg_end.contiguous())
            self.register_buffer("cell_seg", cell_seg)

    def forward(self, feats: Tensor) -> Tensor:
        """``B x N x D x H x W x C`` features -> ``B x (C*Z) x X x Y`` BEV (sum per cell)."""
        if not torch.jit.is_tracing() and tuple(feats.shape[:-1]) != self.geom_shape:
            raise ValueError(
                f"features {tuple(feats.shape)} do not match the pooling geometry "
                f"{self.geom_shape} x C"
            )
        B = self.geom_shape[0]
        X, Y, Z = self.grid.nx
        C = feats.shape[-1]
        flat = feats.reshape(-1, C)  # P x C (a view when feats is contiguous)
        if self.method == "index_add":
            vox = flat.new_zeros((self.num_cells + 1, C))
            if torch.onnx.is_in_onnx_export():
                # torch.onnx exports index_add / index_put(accumulate) as plain (overwriting)
                # scatters - wrong with repeated cells. scatter_add with an expanded index maps
                # to ScatterElements(reduction="add") (opset >= 16): same values.
                vox = vox.scatter_add(0, self.dst_idx.view(-1, 1).expand(-1, C), flat)
            else:
                vox = vox.index_add_(0, self.dst_idx, flat)
            vox = vox[: self.num_cells]
        else:
            csum = flat.index_select(0, self.src_idx).cumsum(0)  # K x C, sorted by cell
            ends = csum.index_select(0, self.seg_end)  # U x C
            sums = torch.cat((ends.new_zeros((1, C)), ends[:1], ends[1:] - ends[:-1]), 0)
            vox = sums.index_select(0, self.cell_seg)  # row 0 = empty cell
        # (B*X*Y*Z) x C memory == B x X x Y x (Z*C): a channels-last view of B x (C*Z) x X x Y
        return vox.view(B, X, Y, Z * C).permute(0, 3, 1, 2)


class PrecomputedPooling(nn.Module):
    """Cache of :class:`FixedPooling` keyed by calibration (or geometry) content.

    * :meth:`ensure_calibration` hashes the (small) calibration tensors; on a hit nothing is
      computed (not even the geometry), on a miss ``geometry_fn()`` is called and the indices
      are rebuilt. :meth:`ensure_geometry` does the same keyed on the geometry tensor itself.
    * Changing any calibration value, the batch/camera count or the device rebuilds;
      :meth:`invalidate` forces the next call to rebuild. ``num_builds`` counts rebuilds.
    * Not thread-safe: use one instance per inference thread.
    """

    def __init__(self, grid: GridConfig, method: str = "index_add") -> None:
        super().__init__()
        if method not in SEGMENT_METHODS:
            raise ValueError(f"method must be one of {SEGMENT_METHODS}, got {method!r}")
        self.grid = grid
        self.method = method
        # Held in a plain dict, not as a sub-module: the cache must not appear in state_dict().
        # It is keyed by device as well, so model.to(device) leads to a rebuild on next use.
        self._cache: dict[str, Any] = {"fixed": None, "key": None}
        self.num_builds = 0

    @property
    def fixed(self) -> FixedPooling | None:
        """The cached :class:`FixedPooling` (None when invalid)."""
        return self._cache["fixed"]

    @property
    def key(self) -> str | None:
        """Key of the cached indices (None when invalid)."""
        return self._cache["key"]

    @property
    def is_valid(self) -> bool:
        return self.fixed is not None

    def invalidate(self) -> None:
        """Drop the cached indices; the next ``ensure_*`` call rebuilds."""
        self._cache.update(fixed=None, key=None)

    def build(self, geom: Tensor, key: str | None = None) -> FixedPooling:
        """(Re)build the indices for ``geom`` (``B x N x D x H x W x 3``) unconditionally."""
        fixed = FixedPooling(geom, self.grid, method=self.method)
        self._cache.update(fixed=fixed, key=key)
        self.num_builds += 1
        return fixed

    def ensure_geometry(self, geom: Tensor) -> bool:
        """Rebuild if ``geom`` differs from the cached one. Returns True when rebuilt."""
        key = "geom:" + str(geom.device) + tensor_key(geom)
        if self.fixed is not None and key == self.key:
            return False
        self.build(geom, key)
        return True

    def ensure_calibration(
        self,
        calibration: tuple[Tensor, ...],
        geometry_fn: Callable[[], Tensor],
    ) -> bool:
        """Rebuild (calling ``geometry_fn()``) if ``calibration`` changed. True when rebuilt.

        ``calibration`` is e.g. ``(rots, trans, intrins, post_rots, post_trans)``; the key covers
        their shapes, dtypes, values and device.
        """
        key = "calib:" + str(calibration[0].device) + tensor_key(*calibration)
        if self.fixed is not None and key == self.key:
            return False
        self.build(geometry_fn(), key)
        return True

    def forward(self, feats: Tensor) -> Tensor:
        """Pool ``B x N x D x H x W x C`` features with the cached indices."""
        fixed = self.fixed
        if fixed is None:
            raise RuntimeError("PrecomputedPooling has no indices: call ensure_* or build first")
        return fixed(feats)

    def pool(self, geom: Tensor, feats: Tensor) -> Tensor:
        """Drop-in for :func:`cumsum_pool`: ensure indices for ``geom``, then pool."""
        self.ensure_geometry(geom)
        return self(feats)
