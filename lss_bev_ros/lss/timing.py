"""Per-stage wall-clock timing of the LSS pipeline (milliseconds).

Stage names published by the nodes (``lss_bev_ros/PipelineTiming``) and printed by the bench:
:data:`STAGES` = ``geometry``, ``camera_encoder``, ``voxel_pooling``, ``bev_encoder``, plus
``total``.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from .model import LiftSplatShoot

STAGES: tuple[str, ...] = ("geometry", "camera_encoder", "voxel_pooling", "bev_encoder")


class StageTimer:
    """Accumulates wall-clock milliseconds per named stage, in first-use order.

    ``with timer.stage("camera_encoder"): ...``. With ``cuda_sync`` (default: whether CUDA is
    initialised) ``torch.cuda.synchronize()`` is called at both ends of every stage so the
    asynchronous GPU work is attributed to the right stage. Re-entering a name adds to it.
    """

    def __init__(self, cuda_sync: bool | None = None) -> None:
        if cuda_sync is None:
            cuda_sync = torch.cuda.is_available() and torch.cuda.is_initialized()
        self.cuda_sync = cuda_sync
        self._ms: OrderedDict[str, float] = OrderedDict()

    def _sync(self) -> None:
        if self.cuda_sync:
            torch.cuda.synchronize()

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self._sync()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            self._ms[name] = self._ms.get(name, 0.0) + (time.perf_counter() - t0) * 1e3

    def reset(self) -> None:
        self._ms.clear()

    def results(self) -> OrderedDict[str, float]:
        """Copy of ``name -> milliseconds``."""
        return OrderedDict(self._ms)


def run_staged(
    model: LiftSplatShoot,
    inputs: Sequence[Tensor],
    timer: StageTimer | None = None,
    force_geometry: bool = False,
) -> tuple[Tensor, OrderedDict[str, float]]:
    """Run ``model`` on ``inputs = (imgs, rots, trans, intrins, post_rots, post_trans)`` stage by
    stage, the same computation as ``model(*inputs)``.

    Returns ``(logits, times)`` with ``times`` = ordered ``geometry``, ``camera_encoder``,
    ``voxel_pooling``, ``bev_encoder``, ``total`` in ms. With ``cfg.pooling == "precomputed"``
    the ``geometry`` stage is the calibration check (and geometry + index build on a change);
    ``force_geometry`` recomputes the geometry every call, as the ``cumsum`` path does.
    Call under ``torch.no_grad()`` for inference timings.
    """
    timer = timer if timer is not None else StageTimer()
    timer.reset()
    imgs, *calib = inputs
    t0 = time.perf_counter()
    if timer.cuda_sync:
        torch.cuda.synchronize()
    precomputed = model.cfg.pooling == "precomputed"
    geom = None
    with timer.stage("geometry"):
        if precomputed and not force_geometry:
            model.ensure_pooling(*calib)
        else:
            geom = model.get_geometry(*calib)
            if precomputed:
                model.pooler.ensure_geometry(geom)
    with timer.stage("camera_encoder"):
        feats = model.get_cam_feats(imgs)
    with timer.stage("voxel_pooling"):
        if precomputed:
            bev = model.pooler(feats)
        else:
            bev = model.voxel_pooling(geom, feats)  # type: ignore[arg-type]
    with timer.stage("bev_encoder"):
        out = model.bev_encode(bev)
    if timer.cuda_sync:
        torch.cuda.synchronize()
    times = timer.results()
    times["total"] = (time.perf_counter() - t0) * 1e3
    return out, times
