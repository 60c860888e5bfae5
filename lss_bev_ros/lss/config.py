"""Typed, frozen configuration of the Lift-Splat-Shoot model (no ROS, no torch).

Defaults reproduce the paper / reference release (nv-tlabs/lift-splat-shoot ``src/train.py``):
a 200 x 200 BEV grid of 0.5 m cells over [-50, 50) m in x and y, one 20 m z slab over [-10, 10) m,
41 depth bins 4, 5, ..., 44 m, and 6 cameras of 900 x 1600 px resized/cropped to 128 x 352 px.

BEV tensor layout (kept from the reference, documented here once)
-----------------------------------------------------------------
Pooling and the model return ``B x C x X x Y`` tensors (``bev[b, c, ix, iy]``):

* axis -2 (``ix``, ``GridConfig.nx[0]`` cells) runs along ego **x (forward)**; cell ``ix`` covers
  ``x in [xbound[0] + ix * dx[0], xbound[0] + (ix + 1) * dx[0])`` metres (centre ``bx[0] + ix*dx``);
* axis -1 (``iy``, ``GridConfig.nx[1]`` cells) runs along ego **y (left)**, likewise for y.

``nav_msgs/OccupancyGrid`` (docs/ARCHITECTURE.md) is row-major with row = y index and column = x
index, origin at the lower corner ``(xbound[0], ybound[0])``. So the grid for batch item ``b`` and
channel ``c`` is the **transpose** ``bev[b, c].T`` (shape Y x X, row ``iy``, column ``ix``); see
:func:`GridConfig.occupancy_grid_origin` and :func:`GridConfig.to_occupancy_layout`.

Voxel index convention: a point at ego ``p`` (metres) goes to cell
``((p - (bx - dx / 2)) / dx).long()``, i.e. truncation toward zero exactly as in the reference.
Consequently points up to one cell *below* the lower bound (``-1 < (p - lo) / dx < 0``) land in
cell 0; everything else outside ``[lo, hi)`` is dropped. Both pooling paths share this rule.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

# nuScenes camera channels in the order the reference feeds them to the model
from lss_bev_ros.calibration import NUSCENES_CAMERAS as NUSCENES_CAMS

Bound = tuple[float, float, float]  # (lower m, upper m, step m)


POOLING_MODES: tuple[str, ...] = ("precomputed", "cumsum")
SUPPORTED_TRUNKS: tuple[str, ...] = ("efficientnet-b0",)
#: Camera feature-map strides: 16 (reference: EfficientNet-B0 reduction_4), 8 (one more
#: :class:`lss.model.Up` that fuses reduction_3, twice the rows and columns of lifted features)
#: or 4 (another that fuses reduction_2, four times the rows and columns).
SUPPORTED_DOWNSAMPLES: tuple[int, ...] = (16, 8, 4)
#: BEV encoder architectures (``lss.model.BEV_ENCODERS`` maps each name to its module):
#: ``resnet18`` is the reference decoder (62.4 GFLOP at 200 x 200), ``slim`` the CPU one.
BEV_ENCODER_NAMES: tuple[str, ...] = ("resnet18", "slim")


def _bound(value: Any, name: str) -> Bound:
    vals = tuple(float(v) for v in value)
    if len(vals) != 3:
        raise ValueError(f"{name} must be (lower, upper, step), got {value!r}")
    lo, hi, step = vals
    if not step > 0 or not hi > lo:
        raise ValueError(f"{name} needs upper > lower and step > 0, got {value!r}")
    return vals  # type: ignore[return-value]


def _cells(b: Bound, name: str) -> int:
    n = (b[1] - b[0]) / b[2]
    if abs(n - round(n)) > 1e-6:
        raise ValueError(f"{name} range {b[1] - b[0]} m is not a whole number of {b[2]} m cells")
    return round(n)


@dataclass(frozen=True)
class GridConfig:
    """BEV voxel grid in ``base_link`` (x forward, y left, z up), all bounds in metres.

    ``dbound`` is the depth discretisation of the camera frustum (``arange(lo, hi, step)``).
    """

    xbound: Bound = (-50.0, 50.0, 0.5)
    ybound: Bound = (-50.0, 50.0, 0.5)
    zbound: Bound = (-10.0, 10.0, 20.0)
    dbound: Bound = (4.0, 45.0, 1.0)

    def __post_init__(self) -> None:
        for name in ("xbound", "ybound", "zbound", "dbound"):
            object.__setattr__(self, name, _bound(getattr(self, name), name))
        for name in ("xbound", "ybound", "zbound"):
            _cells(getattr(self, name), name)

    @property
    def dx(self) -> tuple[float, float, float]:
        """Cell size (x, y, z) in metres."""
        return (self.xbound[2], self.ybound[2], self.zbound[2])

    @property
    def bx(self) -> tuple[float, float, float]:
        """Centre (x, y, z) of cell (0, 0, 0) in metres."""
        x, y, z = self.xbound, self.ybound, self.zbound
        return (x[0] + x[2] / 2.0, y[0] + y[2] / 2.0, z[0] + z[2] / 2.0)

    @property
    def lower(self) -> tuple[float, float, float]:
        """Lower corner (x, y, z) of the grid in metres (``bx - dx / 2``)."""
        return (self.xbound[0], self.ybound[0], self.zbound[0])

    @property
    def nx(self) -> tuple[int, int, int]:
        """Number of cells (X, Y, Z)."""
        return (
            _cells(self.xbound, "xbound"),
            _cells(self.ybound, "ybound"),
            _cells(self.zbound, "zbound"),
        )

    @property
    def num_depth_bins(self) -> int:
        """D: number of depth bins, ``len(torch.arange(*dbound))`` (41 by default)."""
        lo, hi, step = self.dbound
        return math.ceil((hi - lo) / step - 1e-9)

    @property
    def depths(self) -> tuple[float, ...]:
        """Depth (m) of every bin: ``lo, lo + step, ...`` (< hi)."""
        lo, _, step = self.dbound
        return tuple(lo + i * step for i in range(self.num_depth_bins))

    @property
    def bev_shape(self) -> tuple[int, int]:
        """(X, Y) = spatial shape of the BEV tensor, (200, 200) by default."""
        return (self.nx[0], self.nx[1])

    def occupancy_grid_origin(self) -> tuple[float, float]:
        """Origin (x, y) in metres of cell (row 0, col 0) of a nav_msgs/OccupancyGrid."""
        return (self.xbound[0], self.ybound[0])

    @staticmethod
    def to_occupancy_layout(bev_xy: Any) -> Any:
        """Map one ``X x Y`` BEV plane (numpy or torch) to OccupancyGrid layout ``Y x X``.

        Row = y index, column = x index; a transpose (a view, not a copy).
        """
        return bev_xy.T

    def to_dict(self) -> dict[str, list[float]]:
        return {k: list(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GridConfig:
        return cls(**{k: tuple(v) for k, v in d.items()})


@dataclass(frozen=True)
class ImageConfig:
    """Camera image geometry and augmentation ranges (reference ``data_aug_conf``).

    Sizes are (H, W) in pixels; ``rot_lim`` in degrees; ``resize_lim``/``bot_pct_lim`` fractions.
    ``src_size`` is the nominal raw image size; :mod:`preprocess` uses each image's real size.
    """

    final_dim: tuple[int, int] = (128, 352)
    src_size: tuple[int, int] = (900, 1600)
    resize_lim: tuple[float, float] = (0.193, 0.225)
    bot_pct_lim: tuple[float, float] = (0.0, 0.22)
    rot_lim: tuple[float, float] = (-5.4, 5.4)
    rand_flip: bool = True
    ncams: int = 6
    cams: tuple[str, ...] = field(default=NUSCENES_CAMS)

    def __post_init__(self) -> None:
        for name in ("final_dim", "src_size"):
            v = tuple(int(x) for x in getattr(self, name))
            if len(v) != 2 or min(v) <= 0:
                raise ValueError(f"{name} must be (H, W) > 0, got {getattr(self, name)!r}")
            object.__setattr__(self, name, v)
        for name in ("resize_lim", "bot_pct_lim", "rot_lim"):
            v = tuple(float(x) for x in getattr(self, name))
            if len(v) != 2 or v[0] > v[1]:
                raise ValueError(f"{name} must be (low, high) with low <= high")
            object.__setattr__(self, name, v)
        object.__setattr__(self, "cams", tuple(str(c) for c in self.cams))
        if self.ncams < 1:
            raise ValueError("ncams must be >= 1")

    def feature_size(self, downsample: int) -> tuple[int, int]:
        """(fH, fW): camera feature map size in cells, final_dim // downsample."""
        return (self.final_dim[0] // downsample, self.final_dim[1] // downsample)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ImageConfig:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


@dataclass(frozen=True)
class LSSConfig:
    """Whole-model configuration.

    ``pooling``: ``"precomputed"`` (indices cached per calibration, per frame only gather +
    scatter-add; default for inference) or ``"cumsum"`` (reference sort + cumsum trick).
    ``downsample``: camera feature-map stride, 16 (EfficientNet-B0 reduction_4, the reference)
    or 8 (reduction_4 upsampled once more and fused with reduction_3; see ``CamEncode``).
    ``bev_encoder``: ``"resnet18"`` (reference decoder, reference weights load) or ``"slim"``
    (:class:`lss.model.SlimBevEncode`, ~10x fewer FLOPs, same output grid).
    """

    grid: GridConfig = field(default_factory=GridConfig)
    image: ImageConfig = field(default_factory=ImageConfig)
    cam_channels: int = 64
    out_channels: int = 1
    downsample: int = 16
    trunk: str = "efficientnet-b0"
    pooling: str = "precomputed"
    bev_encoder: str = "resnet18"

    def __post_init__(self) -> None:
        if self.bev_encoder not in BEV_ENCODER_NAMES:
            raise ValueError(
                f"bev_encoder must be one of {BEV_ENCODER_NAMES}, got {self.bev_encoder!r}"
            )
        if self.pooling not in POOLING_MODES:
            raise ValueError(f"pooling must be one of {POOLING_MODES}, got {self.pooling!r}")
        if self.trunk not in SUPPORTED_TRUNKS:
            raise ValueError(f"trunk must be one of {SUPPORTED_TRUNKS}, got {self.trunk!r}")
        if self.downsample not in SUPPORTED_DOWNSAMPLES:
            raise ValueError(
                f"downsample must be one of {SUPPORTED_DOWNSAMPLES} (EfficientNet-B0 reduction_4, "
                f"reduction_3 or reduction_2 endpoint), got {self.downsample!r}"
            )
        h, w = self.image.final_dim
        if h % self.downsample or w % self.downsample:
            raise ValueError(f"final_dim {self.image.final_dim} must be divisible by downsample")
        if self.cam_channels < 1 or self.out_channels < 1:
            raise ValueError("cam_channels and out_channels must be >= 1")

    # derived -------------------------------------------------------------------------------
    @property
    def depth_bins(self) -> int:
        """D: number of depth bins."""
        return self.grid.num_depth_bins

    @property
    def feature_size(self) -> tuple[int, int]:
        """(fH, fW) of the camera feature map, (8, 22) by default."""
        return self.image.feature_size(self.downsample)

    @property
    def bev_channels(self) -> int:
        """Channels of the pooled BEV tensor: cam_channels * Z."""
        return self.cam_channels * self.grid.nx[2]

    # factories -----------------------------------------------------------------------------
    @classmethod
    def default(cls) -> LSSConfig:
        """The paper / reference-release configuration (128 x 352 input, 41 depth bins)."""
        return cls()

    @classmethod
    def small(cls, **overrides: Any) -> LSSConfig:
        """A cheaper configuration for CPU training and tests, same 200 x 200 BEV grid.

        * ``final_dim`` 64 x 176 (feature map 4 x 11): the camera encoder costs ~1/4;
        * ``dbound`` (4, 45, 2): 21 depth bins of 2 m over the same 4..44 m range;
        * everything else (6 cameras, 64 camera channels, BEV encoder) as the default, so the
          BEV encoder weights are interchangeable with the full model. Reference checkpoints do
          not load into it (depthnet and frustum differ).
        """
        cfg = cls(
            grid=GridConfig(dbound=(4.0, 45.0, 2.0)),
            image=ImageConfig(final_dim=(64, 176)),
        )
        return replace(cfg, **overrides) if overrides else cfg

    @classmethod
    def small_cpu(cls, **overrides: Any) -> LSSConfig:
        """:meth:`small` with the slim BEV encoder and a stride-8 camera feature map: for CPUs.

        Same cameras, 64 x 176 input, 21 depth bins and 0.5 m 200 x 200 grid as :meth:`small`;
        the BEV encoder (:class:`lss.model.SlimBevEncode`) costs ~6.5 instead of 62.4 GFLOP per
        frame, and the camera features are 8 x 22 instead of 4 x 11 (``downsample`` 8: one more
        ``Up`` fusing EfficientNet reduction_3; camera encoder 4.9 instead of 3.3 GFLOP), so a
        feature column spans ~3 deg instead of ~6: 11.4 GFLOP per frame in all, 5.8x fewer
        than :meth:`small` (``bench/lss_stages.py --flops-only``). Checkpoints store their
        config, so a ``small_cpu`` file written with ``downsample`` 16 still loads as such.
        """
        cfg = replace(cls.small(), bev_encoder="slim", downsample=8)
        return replace(cfg, **overrides) if overrides else cfg

    def replace(self, **changes: Any) -> LSSConfig:
        """Copy with some fields changed (dataclasses.replace)."""
        return replace(self, **changes)

    # (de)serialisation: plain data only, so checkpoints load with weights_only=True ---------
    def to_dict(self) -> dict[str, Any]:
        return {
            "grid": self.grid.to_dict(),
            "image": self.image.to_dict(),
            "cam_channels": self.cam_channels,
            "out_channels": self.out_channels,
            "downsample": self.downsample,
            "trunk": self.trunk,
            "pooling": self.pooling,
            "bev_encoder": self.bev_encoder,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LSSConfig:
        # bev_encoder is absent from checkpoints written before it existed: resnet18
        known = {
            "grid",
            "image",
            "cam_channels",
            "out_channels",
            "downsample",
            "trunk",
            "pooling",
            "bev_encoder",
        }
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown LSSConfig keys: {sorted(unknown)}")
        kw = dict(d)
        if "grid" in kw:
            kw["grid"] = GridConfig.from_dict(kw["grid"])
        if "image" in kw:
            kw["image"] = ImageConfig.from_dict(kw["image"])
        return cls(**kw)


#: Named configs (one registry: training, ``bench/``, ``bev_node``'s ``model_config``).
#: ``small_cpu``: made for CPUs (the committed ``models/lss_small_cpu_80x352_synth.pt``, trained
#: at 80 x 352, and ``models/lss_small_cpu_synth.pt`` at 64 x 176); ``small``:
#: the older ``models/lss_small_synth.pt``; ``full``: reference Lift-Splat-Shoot.
MODEL_CONFIGS: dict[str, Callable[[], LSSConfig]] = {
    "small": LSSConfig.small,
    "small_cpu": LSSConfig.small_cpu,
    "full": LSSConfig.default,
}
