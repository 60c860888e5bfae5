"""Lift-Splat-Shoot model (Philion & Fidler, ECCV 2020) with separable, timeable stages.

Architecture and parameter names follow the reference release (nv-tlabs/lift-splat-shoot
``src/models.py``) so its checkpoints load (see :mod:`.checkpoint`): ``camencode.trunk`` is an
EfficientNet-B0 (built with ``EfficientNet.from_name``, never downloaded), ``camencode.up1``
fuses reduction_5 (320 ch, x2 up) with reduction_4 (112 ch) into 512 ch, ``camencode.depthnet``
is a 1 x 1 conv to D + C; ``bevencode`` is the ResNet-18 based BEV decoder. With
``cfg.downsample`` 8 (not in the reference) ``camencode.up2`` fuses that with reduction_3 (40 ch)
into 128 ch at 1/8 resolution; ``cfg.bev_encoder`` "slim" swaps in :class:`SlimBevEncode`.

Stages (also exposed one by one for timing / deployment)::

    geom = model.get_geometry(rots, trans, intrins, post_rots, post_trans)  # B x N x D x h x w x 3
    feats = model.get_cam_feats(imgs)  # B x N x D x h x w x C   (h, w = H/s, W/s; s = downsample)
    bev = model.voxel_pooling(geom, feats)  # B x (C*Z) x X x Y
    out = model.bev_encode(bev)  # B x outC x X x Y

Constants (frustum, dx, bx, nx) are non-persistent buffers derived from the config, so the
state dict holds only learned weights; the config is saved beside it (:mod:`.checkpoint`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import SUPPORTED_DOWNSAMPLES, LSSConfig
from .geometry import create_frustum, frustum_to_ego
from .pooling import FixedPooling, PrecomputedPooling, cumsum_pool

#: EfficientNet-B0 channels at the 1/4 (reduction_2), 1/8 (reduction_3), 1/16 (reduction_4) and
#: 1/32 (reduction_5) endpoints.
_B0_RED2_CH, _B0_RED3_CH, _B0_RED4_CH, _B0_RED5_CH = 24, 40, 112, 320
#: Channels of the extra stride-8 fusion (``CamEncode.up2``), kept small: it runs at 4x the cells.
_STRIDE8_CH = 128
#: Channels of the extra stride-4 fusion (``CamEncode.up3``): 16x the cells of stride 16.
_STRIDE4_CH = 64


class Up(nn.Module):
    """Upsample ``x1`` to ``x2``'s size (bilinear, align_corners), concat ``[x2, x1]``, 2 convs.

    For exact multiples this equals the reference ``nn.Upsample(scale_factor)``; other sizes
    (e.g. a 176 px wide input, whose 1/32 map is 6 wide and 1/16 map 11 wide) are resized to fit.
    """

    def __init__(self, in_channels: int, out_channels: int, scale_factor: int = 2) -> None:
        super().__init__()
        self.scale_factor = scale_factor
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        h, w = x1.shape[-2:]
        H, W = x2.shape[-2:]
        s = self.scale_factor
        if (h * s, w * s) == (H, W):
            x1 = F.interpolate(x1, scale_factor=s, mode="bilinear", align_corners=True)
        else:
            x1 = F.interpolate(x1, size=(int(H), int(W)), mode="bilinear", align_corners=True)
        return self.conv(torch.cat([x2, x1], dim=1))


def _build_efficientnet_b0() -> nn.Module:
    """EfficientNet-B0 trunk, random init (no download), export-friendly swish, no head."""
    from efficientnet_pytorch import EfficientNet

    trunk = EfficientNet.from_name("efficientnet-b0")
    trunk.set_swish(memory_efficient=False)  # plain x*sigmoid(x): traceable / ONNX-exportable
    # The classification head is never used by LSS; drop it (its reference weights are ignored
    # when loading, see checkpoint.REFERENCE_IGNORED_PREFIXES).
    for name in ("_conv_head", "_bn1", "_avg_pooling", "_dropout", "_fc"):
        if hasattr(trunk, name):
            delattr(trunk, name)
    return trunk


class CamEncode(nn.Module):
    """Image -> per-pixel depth distribution x context features ("lift").

    ``forward``: ``BN x 3 x H x W`` normalised images -> ``BN x D x H/s x W/s x C`` features
    (channels last, so the pooling can view it as ``points x C`` without a copy), ``s`` =
    ``downsample``: 16 as the reference (reduction_5 up x2 ++ reduction_4 -> ``up1`` -> 512 ch),
    or 8: ``up1``'s output up x2 ++ reduction_3 (40 ch) -> ``up2`` -> 128 ch (not in the
    reference; twice the feature rows and columns for small inputs such as 64 x 176), or 4:
    ``up2``'s output up x2 ++ reduction_2 (24 ch) -> ``up3`` -> 64 ch (four times the rows and
    columns of the reference).
    """

    def __init__(
        self, D: int, C: int, trunk: str = "efficientnet-b0", downsample: int = 16
    ) -> None:
        super().__init__()
        if trunk != "efficientnet-b0":
            raise ValueError(f"unsupported trunk {trunk!r}")
        if downsample not in SUPPORTED_DOWNSAMPLES:
            raise ValueError(
                f"downsample must be one of {SUPPORTED_DOWNSAMPLES}, got {downsample!r}"
            )
        self.D = D
        self.C = C
        self.downsample = downsample
        self.trunk = _build_efficientnet_b0()
        self.up1 = Up(_B0_RED5_CH + _B0_RED4_CH, 512)
        head_in = 512
        if downsample <= 8:
            self.up2 = Up(512 + _B0_RED3_CH, _STRIDE8_CH)
            head_in = _STRIDE8_CH
        if downsample == 4:
            self.up3 = Up(_STRIDE8_CH + _B0_RED2_CH, _STRIDE4_CH)
            head_in = _STRIDE4_CH
        self.depthnet = nn.Conv2d(head_in, D + C, kernel_size=1, padding=0)
        # Index of the last block at 1/16 (reduction_4), 1/8 (reduction_3) and 1/4 (reduction_2)
        # resolution, found from the strides: the reference collects them by comparing
        # feature-map sizes.
        strides = [max(b._depthwise_conv.stride) for b in self.trunk._blocks]
        s2 = [i for i, s in enumerate(strides) if s > 1]
        self._red4_idx = s2[-1] - 1
        self._red3_idx = s2[-2] - 1
        self._red2_idx = s2[-3] - 1

    def get_eff_depth(self, x: Tensor) -> Tensor:
        """``BN x 3 x H x W`` -> ``BN x 512 x H/16 x W/16`` (reduction_5 up x2 ++ reduction_4),
        or ``BN x 128 x H/8 x W/8`` with ``downsample`` 8 (that, up x2 ++ reduction_3), or
        ``BN x 64 x H/4 x W/4`` with ``downsample`` 4 (that, up x2 ++ reduction_2)."""
        t = self.trunk
        x = t._swish(t._bn0(t._conv_stem(x)))
        red2 = red3 = red4 = x
        n_blocks = len(t._blocks)
        for idx, block in enumerate(t._blocks):
            rate = t._global_params.drop_connect_rate
            if rate:
                rate *= float(idx) / n_blocks
            x = block(x, drop_connect_rate=rate)
            if idx == self._red2_idx:
                red2 = x
            elif idx == self._red3_idx:
                red3 = x
            elif idx == self._red4_idx:
                red4 = x
        x = self.up1(x, red4)
        if self.downsample <= 8:
            x = self.up2(x, red3)
        if self.downsample == 4:
            x = self.up3(x, red2)
        return x

    def get_depth_feat(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Returns (depth ``BN x D x h x w`` softmax, features ``BN x D x h x w x C``)."""
        x = self.depthnet(self.get_eff_depth(x))
        depth = x[:, : self.D].softmax(dim=1)
        ctx = x[:, self.D : self.D + self.C].permute(0, 2, 3, 1).contiguous()  # BN x h x w x C
        # outer product, contiguous channels-last: BN x D x h x w x C
        feats = depth.unsqueeze(-1) * ctx.unsqueeze(1)
        return depth, feats

    def forward(self, x: Tensor) -> Tensor:
        return self.get_depth_feat(x)[1]


class BevEncode(nn.Module):
    """BEV decoder: ResNet-18 stem + layer1-3, two up blocks.

    ``B x inC x X x Y`` -> ``B x outC x X x Y`` (X, Y divisible by 8).
    """

    def __init__(self, inC: int, outC: int) -> None:
        super().__init__()
        from torchvision.models.resnet import resnet18

        trunk = resnet18(weights=None, zero_init_residual=True)
        self.conv1 = nn.Conv2d(inC, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = trunk.bn1
        self.relu = trunk.relu
        self.layer1 = trunk.layer1
        self.layer2 = trunk.layer2
        self.layer3 = trunk.layer3
        self.up1 = Up(64 + 256, 256, scale_factor=4)
        self.up2 = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
            nn.Conv2d(256, 128, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, outC, kernel_size=1, padding=0),
        )

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x1 = self.layer1(x)
        x = self.layer3(self.layer2(x1))
        x = self.up1(x, x1)
        return self.up2(x)


class SlimBevEncode(nn.Module):
    """CPU-sized BEV decoder: the :class:`BevEncode` layout with thin layers.

    3 x 3 stride-2 stem to ``widths[0]`` channels (1/2 resolution), two torchvision ResNet
    ``BasicBlock`` per stage at 1/2, 1/4, 1/8 resolution with ``widths`` channels, one
    :class:`Up` (1/8 -> 1/2, skip from stage 1) and a x2 head. ``B x inC x X x Y`` ->
    ``B x outC x X x Y`` (X, Y divisible by 8). At 200 x 200 with inC 64: ~6.5 GFLOP
    (:class:`BevEncode`: 62.4).
    """

    def __init__(self, inC: int, outC: int, widths: tuple[int, int, int] = (32, 64, 128)) -> None:
        super().__init__()
        from torchvision.models.resnet import BasicBlock

        w1, w2, w3 = widths

        def stage(cin: int, cout: int, stride: int) -> nn.Sequential:
            down = None
            if stride != 1 or cin != cout:
                down = nn.Sequential(
                    nn.Conv2d(cin, cout, kernel_size=1, stride=stride, bias=False),
                    nn.BatchNorm2d(cout),
                )
            return nn.Sequential(BasicBlock(cin, cout, stride, down), BasicBlock(cout, cout))

        self.conv1 = nn.Conv2d(inC, w1, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(w1)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = stage(w1, w1, 1)
        self.layer2 = stage(w1, w2, 2)
        self.layer3 = stage(w2, w3, 2)
        self.up1 = Up(w1 + w3, 2 * w1, scale_factor=4)
        self.up2 = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
            nn.Conv2d(2 * w1, w1, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(w1),
            nn.ReLU(inplace=True),
            nn.Conv2d(w1, outC, kernel_size=1, padding=0),
        )

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(x)))  # B x w1 x X/2 x Y/2
        x1 = self.layer1(x)
        x = self.layer3(self.layer2(x1))  # B x w3 x X/8 x Y/8
        x = self.up1(x, x1)  # B x 2*w1 x X/2 x Y/2
        return self.up2(x)


#: ``LSSConfig.bev_encoder`` name -> module class (``config.BEV_ENCODER_NAMES`` lists the keys).
BEV_ENCODERS: Mapping[str, type[nn.Module]] = {"resnet18": BevEncode, "slim": SlimBevEncode}


class LiftSplatShoot(nn.Module):
    """The full model. ``forward(imgs, rots, trans, intrins, post_rots, post_trans)`` ->
    ``B x outC x X x Y`` BEV logits (200 x 200 by default; axes x forward, y left).

    Inputs: ``imgs`` ``B x N x 3 x H x W`` ImageNet-normalised; calibration tensors as in
    :mod:`.geometry`. With ``cfg.pooling == "precomputed"`` the geometry and the pooling
    indices are computed only when the calibration tensors change (content hash).
    """

    def __init__(self, cfg: LSSConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg if cfg is not None else LSSConfig()
        self.D = cfg.depth_bins
        self.camC = cfg.cam_channels
        self.downsample = cfg.downsample
        g = cfg.grid
        self.register_buffer("dx", torch.tensor(g.dx, dtype=torch.float32), persistent=False)
        self.register_buffer("bx", torch.tensor(g.bx, dtype=torch.float32), persistent=False)
        self.register_buffer("nx", torch.tensor(g.nx, dtype=torch.long), persistent=False)
        self.register_buffer(
            "frustum", create_frustum(g, cfg.image, cfg.downsample), persistent=False
        )
        self.camencode = CamEncode(self.D, self.camC, cfg.trunk, cfg.downsample)
        self.bevencode = BEV_ENCODERS[cfg.bev_encoder](cfg.bev_channels, cfg.out_channels)
        self.pooler = PrecomputedPooling(g)

    # stages ------------------------------------------------------------------------------------
    def get_geometry(
        self, rots: Tensor, trans: Tensor, intrins: Tensor, post_rots: Tensor, post_trans: Tensor
    ) -> Tensor:
        """Ego (x, y, z) in metres of every frustum point: ``B x N x D x fH x fW x 3``."""
        return frustum_to_ego(self.frustum, rots, trans, intrins, post_rots, post_trans)

    def get_cam_feats(self, imgs: Tensor) -> Tensor:
        """``B x N x 3 x H x W`` -> ``B x N x D x fH x fW x C`` lifted features (contiguous)."""
        B, N, C, H, W = imgs.shape
        x = self.camencode(imgs.reshape(B * N, C, H, W))
        return x.view(B, N, *x.shape[1:])

    def voxel_pooling(self, geom: Tensor, feats: Tensor) -> Tensor:
        """Sum features per BEV cell: ``B x (C*Z) x X x Y`` (method per ``cfg.pooling``).

        ``precomputed`` keys its cache on the geometry content here; :meth:`forward` keys it on
        the (much smaller) calibration tensors instead.
        """
        if self.cfg.pooling == "cumsum":
            return cumsum_pool(geom, feats, self.cfg.grid)
        return self.pooler.pool(geom, feats)

    def bev_encode(self, bev: Tensor) -> Tensor:
        """``B x (C*Z) x X x Y`` -> ``B x outC x X x Y`` logits."""
        return self.bevencode(bev)

    # whole model ---------------------------------------------------------------------------
    def ensure_pooling(
        self, rots: Tensor, trans: Tensor, intrins: Tensor, post_rots: Tensor, post_trans: Tensor
    ) -> bool:
        """Make the precomputed pooling match this calibration; True if it was rebuilt."""
        calib = (rots, trans, intrins, post_rots, post_trans)
        return self.pooler.ensure_calibration(calib, lambda: self.get_geometry(*calib))

    def forward(
        self,
        imgs: Tensor,
        rots: Tensor,
        trans: Tensor,
        intrins: Tensor,
        post_rots: Tensor,
        post_trans: Tensor,
    ) -> Tensor:
        """``B x N x 3 x H x W`` images + calibration -> ``B x outC x X x Y`` logits."""
        if self.cfg.pooling == "precomputed":
            self.ensure_pooling(rots, trans, intrins, post_rots, post_trans)
            bev = self.pooler(self.get_cam_feats(imgs))
        else:
            geom = self.get_geometry(rots, trans, intrins, post_rots, post_trans)
            bev = cumsum_pool(geom, self.get_cam_feats(imgs), self.cfg.grid)
        return self.bev_encode(bev)

    def forward_from_geometry(self, imgs: Tensor, geom: Tensor) -> Tensor:
        """Skip the geometry stage: ``imgs`` + precomputed ``geom`` -> logits."""
        return self.bev_encode(self.voxel_pooling(geom, self.get_cam_feats(imgs)))

    def forward_timed(
        self,
        imgs: Tensor,
        rots: Tensor,
        trans: Tensor,
        intrins: Tensor,
        post_rots: Tensor,
        post_trans: Tensor,
        timer: Any = None,
    ) -> tuple[Tensor, dict[str, float]]:
        """Like :meth:`forward`, also returning per-stage milliseconds (see :mod:`.timing`)."""
        from .timing import run_staged

        return run_staged(self, (imgs, rots, trans, intrins, post_rots, post_trans), timer)

    # deployment ------------------------------------------------------------------------------
    def fixed_rig(
        self,
        rots: Tensor,
        trans: Tensor,
        intrins: Tensor,
        post_rots: Tensor,
        post_trans: Tensor,
        method: str = "index_add",
    ) -> FixedRigLSS:
        """A module ``imgs -> logits`` for this calibration (indices baked in as buffers).

        Shares the camera / BEV encoder weights with ``self`` (not a copy). Static shapes:
        batch size and camera count are those of the calibration tensors.
        """
        with torch.no_grad():
            geom = self.get_geometry(rots, trans, intrins, post_rots, post_trans)
        pooling = FixedPooling(geom, self.cfg.grid, method=method)
        return FixedRigLSS(self.camencode, pooling, self.bevencode)


class FixedRigLSS(nn.Module):
    """Per-frame part of LSS for a fixed rig: camera encoder + fixed pooling + BEV encoder.

    ``forward(imgs)``: ``B x N x 3 x H x W`` -> ``B x outC x X x Y``. Its only input is the
    image tensor; the pooling indices are buffers, so ``torch.onnx.export(m, (imgs,))`` gives
    one static graph.
    """

    def __init__(self, camencode: CamEncode, pooling: FixedPooling, bevencode: nn.Module) -> None:
        super().__init__()
        self.camencode = camencode
        self.pooling = pooling
        self.bevencode = bevencode

    def forward(self, imgs: Tensor) -> Tensor:
        B, N, C, H, W = imgs.shape
        x = self.camencode(imgs.reshape(B * N, C, H, W))
        feats = x.view(B, N, *x.shape[1:])
        return self.bevencode(self.pooling(feats))
