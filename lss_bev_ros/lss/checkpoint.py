"""Checkpoint save/load with ``torch.load(weights_only=True)`` only, plus the reference layout.

Our format (a plain dict, loadable without unpickling any class)::

    {"format": "lss_bev_ros/lss", "version": 1,
     "config": LSSConfig.to_dict(),          # plain lists / numbers / strings
     "state_dict": {name: tensor},           # weights only (constants are rebuilt from config)
     "extra": {...}}                         # plain data: numbers, strings, lists, dicts, tensors

Reference release layout (nv-tlabs/lift-splat-shoot ``model525000.pt``): a bare state dict with
keys ``camencode.trunk.*``, ``camencode.up1.*``, ``camencode.depthnet.*``, ``bevencode.*`` and the
constants ``dx``, ``bx``, ``nx``, ``frustum`` (stored there as Parameters), optionally prefixed
``module.`` (DataParallel). Our parameter names equal the reference ones, so loading maps keys
1:1, drops the unused EfficientNet head (:data:`REFERENCE_IGNORED_PREFIXES`) and checks the
constants against the config (:func:`config_from_reference_state_dict` infers it).
"""

from __future__ import annotations

import os
import pickle
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .config import GridConfig, ImageConfig, LSSConfig
from .model import LiftSplatShoot

FORMAT = "lss_bev_ros/lss"
VERSION = 1
#: Constants the reference stored as Parameters; ours are non-persistent buffers.
REFERENCE_CONSTANTS: tuple[str, ...] = ("dx", "bx", "nx", "frustum")
#: EfficientNet classification head, present in the reference state dict, unused by LSS.
REFERENCE_IGNORED_PREFIXES: tuple[str, ...] = (
    "camencode.trunk._conv_head.",
    "camencode.trunk._bn1.",
    "camencode.trunk._fc.",
)

_PLAIN = (str, int, float, bool, type(None))


def _check_plain(obj: Any, where: str = "extra") -> None:
    """Raise TypeError unless ``obj`` is data that ``weights_only=True`` can load."""
    if isinstance(obj, (*_PLAIN, Tensor)):
        return
    if isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _check_plain(v, f"{where}[{i}]")
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"{where}: dict keys must be str/int, got {type(k).__name__}")
            _check_plain(v, f"{where}[{k!r}]")
        return
    raise TypeError(
        f"{where}: {type(obj).__name__} is not plain data (str/int/float/bool/None/list/tuple/"
        "dict/Tensor); it could not be loaded with weights_only=True"
    )


def save_checkpoint(
    path: str | os.PathLike[str],
    model: LiftSplatShoot,
    cfg: LSSConfig | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``model`` weights, ``cfg`` (default ``model.cfg``) and ``extra`` atomically."""
    cfg = cfg if cfg is not None else model.cfg
    extra_d = dict(extra or {})
    _check_plain(extra_d)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "config": cfg.to_dict(),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "extra": extra_d,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _torch_load(path: Path, map_location: Any) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        msg = str(e)
        if "Unsupported global" in msg or "GLOBAL" in msg:
            what = next((ln.strip() for ln in msg.splitlines() if "GLOBAL" in ln), "")
            raise ValueError(
                f"refusing to load {path}: it holds objects other than tensors and plain data, "
                f"which torch.load(weights_only=True) rejects ({what or msg.splitlines()[0]})"
            ) from e
        raise ValueError(f"corrupt or unreadable checkpoint {path}: {_short(msg)}") from e
    except Exception as e:  # garbage input makes the unpickler fail in many ways
        raise ValueError(
            f"corrupt or unreadable checkpoint {path}: {type(e).__name__}: {_short(str(e))}"
        ) from e


def _short(msg: str) -> str:
    """The informative line of a (long, multi-line) torch.load error."""
    lines = [ln.strip() for ln in msg.splitlines() if ln.strip()]
    for ln in lines:
        if ln.startswith("Unsupported"):
            return ln[:300]
    for ln in lines:
        _, sep, rest = ln.partition("Unpickler error:")
        if sep and rest.strip():
            return rest.strip()[:300]
    return lines[-1][:300] if lines else ""


def _strip_module_prefix(sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
    if sd and all(k.startswith("module.") for k in sd):
        return {k[len("module.") :]: v for k, v in sd.items()}
    return dict(sd)


def is_reference_state_dict(obj: Any) -> bool:
    """True for a bare reference-style state dict (``camencode.*`` / ``bevencode.*`` keys)."""
    if not isinstance(obj, Mapping) or not obj:
        return False
    keys = [k.removeprefix("module.") for k in obj if isinstance(k, str)]
    return any(k.startswith("camencode.") for k in keys) and any(
        k.startswith("bevencode.") for k in keys
    )


def config_from_reference_state_dict(sd: Mapping[str, Tensor], downsample: int = 16) -> LSSConfig:
    """Infer the :class:`LSSConfig` of a reference state dict from its constants and shapes.

    Grid from ``dx``/``bx``/``nx``, depth bins and final image size from ``frustum``
    (``D x fH x fW x 3``: depths, u up to W - 1, v up to H - 1), C from ``depthnet``, outC from
    the last BEV conv. Falls back to the defaults for anything missing.
    """
    sd = _strip_module_prefix(sd)
    default = LSSConfig()
    grid, image = default.grid, default.image
    if all(k in sd for k in ("dx", "bx", "nx")):
        dx, bx, nx = (sd[k].detach().double().cpu() for k in ("dx", "bx", "nx"))
        bounds = []
        for i in range(3):
            lo = float(bx[i] - dx[i] / 2)
            bounds.append((lo, lo + float(nx[i]) * float(dx[i]), float(dx[i])))
        dbound = grid.dbound
        if "frustum" in sd:
            ds = sd["frustum"][:, 0, 0, 2].double()
            step = float(ds[1] - ds[0]) if ds.numel() > 1 else grid.dbound[2]
            dbound = (float(ds[0]), float(ds[-1]) + step, step)
        grid = GridConfig(
            xbound=tuple(round(v, 6) for v in bounds[0]),  # type: ignore[arg-type]
            ybound=tuple(round(v, 6) for v in bounds[1]),  # type: ignore[arg-type]
            zbound=tuple(round(v, 6) for v in bounds[2]),  # type: ignore[arg-type]
            dbound=tuple(round(v, 6) for v in dbound),  # type: ignore[arg-type]
        )
    if "frustum" in sd:
        fr = sd["frustum"]
        W = round(float(fr[0, 0, -1, 0])) + 1
        H = round(float(fr[0, -1, 0, 1])) + 1
        image = ImageConfig(final_dim=(H, W))
    D = grid.num_depth_bins
    cam_c = default.cam_channels
    if "camencode.depthnet.weight" in sd:
        cam_c = int(sd["camencode.depthnet.weight"].shape[0]) - D
    out_c = default.out_channels
    if "bevencode.up2.4.weight" in sd:
        out_c = int(sd["bevencode.up2.4.weight"].shape[0])
    return LSSConfig(
        grid=grid, image=image, cam_channels=cam_c, out_channels=out_c, downsample=downsample
    )


def convert_reference_state_dict(
    sd: Mapping[str, Tensor], model: LiftSplatShoot, check_constants: bool = True
) -> dict[str, Tensor]:
    """Map a reference-layout state dict onto ``model``'s (strip ``module.``, drop constants and
    the unused EfficientNet head). With ``check_constants`` a ``dx``/``bx``/``nx``/``frustum``
    that disagrees with the model's config raises ValueError."""
    sd = _strip_module_prefix(sd)
    out: dict[str, Tensor] = {}
    for k, v in sd.items():
        if k in REFERENCE_CONSTANTS:
            if check_constants:
                ours = getattr(model, k)
                if tuple(v.shape) != tuple(ours.shape) or not torch.allclose(
                    v.detach().cpu().double(), ours.detach().cpu().double(), atol=1e-4
                ):
                    raise ValueError(
                        f"reference checkpoint constant {k!r} does not match the model config "
                        f"({tuple(v.shape)} vs {tuple(ours.shape)}); pass the matching LSSConfig"
                    )
            continue
        if k.startswith(REFERENCE_IGNORED_PREFIXES):
            continue
        out[k] = v
    return out


def to_reference_state_dict(model: LiftSplatShoot) -> dict[str, Tensor]:
    """``model`` weights in the reference layout (constants included as the reference had them;
    the EfficientNet head, which we do not build, is absent)."""
    sd = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    for k in REFERENCE_CONSTANTS:
        sd[k] = getattr(model, k).detach().cpu().clone()
    return sd


def load_checkpoint(
    path: str | os.PathLike[str],
    map_location: Any = "cpu",
    cfg: LSSConfig | None = None,
    strict: bool = True,
) -> tuple[LiftSplatShoot, LSSConfig, dict[str, Any]]:
    """Load our format or a reference release state dict; returns ``(model, cfg, extra)``.

    Only ``torch.load(..., weights_only=True)`` is used: files holding pickled objects other
    than tensors / plain data are refused with ValueError. ``cfg`` overrides the stored (or, for
    reference files, inferred) config, e.g. to pick ``pooling="cumsum"``; the grid, image size,
    channels must still match the weights. The model is returned in eval mode.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: unreadable/corrupt file, refused content, unknown layout, or weights that
            do not fit the config.
    """
    path = Path(path)
    obj = _torch_load(path, map_location)
    extra: dict[str, Any] = {}
    if isinstance(obj, Mapping) and obj.get("format") == FORMAT:
        version = obj.get("version")
        if version != VERSION:
            raise ValueError(f"{path}: unsupported checkpoint version {version!r}")
        try:
            stored = LSSConfig.from_dict(obj["config"])
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{path}: invalid config in checkpoint: {e}") from e
        cfg = cfg if cfg is not None else stored
        if not isinstance(obj.get("state_dict"), Mapping):
            raise ValueError(f"{path}: checkpoint has no state_dict")
        model = LiftSplatShoot(cfg)
        sd = dict(obj["state_dict"])
        extra = dict(obj.get("extra") or {})
    elif is_reference_state_dict(obj):
        cfg = cfg if cfg is not None else config_from_reference_state_dict(obj)
        model = LiftSplatShoot(cfg)
        sd = convert_reference_state_dict(obj, model)
        extra = {"source": "reference", "path": str(path)}
    else:
        raise ValueError(
            f"{path}: not an lss_bev_ros checkpoint nor a reference LSS state dict "
            f"(top-level keys: {list(obj)[:8] if isinstance(obj, Mapping) else type(obj)})"
        )
    try:
        model.load_state_dict(sd, strict=strict)
    except RuntimeError as e:
        raise ValueError(f"{path}: weights do not fit the model config: {e}") from e
    if isinstance(map_location, (str, torch.device)):
        model.to(map_location)
    return model.eval(), cfg, extra
