"""Reduced precision only where it helps: CPU feature detection and ``precision: auto`` (no ROS).

bf16 autocast is fast only on CPUs that compute in bf16 natively (Intel AMX ``amx_bf16``,
AVX-512 ``avx512_bf16`` on Intel Cooper Lake+ / AMD Zen 4+); elsewhere oneDNN emulates it and it
is several times *slower* than fp32. Measured with ``bench/backends.py --weights
models/lss_small_synth.pt --threads 1`` on a 2-core AMD EPYC with AVX2 only: fp32 1138 ms/frame,
bf16 autocast 11160 ms/frame (0.10x). On CUDA, fp16 autocast is the usual win.

    choice = resolve_precision("auto", "cpu", parity=torch_parity_check(model, probe_inputs))
    choice.precision  # "bf16" | "fp16" | "fp32" | what was requested
    choice.reason     # one line for the log / diagnostics
    choice.warning    # True: the requested precision is expected to be slow or unverified

:func:`read_cpu_features` reads ``/proc/cpuinfo`` flags and
``torch.backends.cpu.get_cpu_capability()``; :func:`resolve_precision` decides.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor, nn

#: /proc/cpuinfo flags that mean bf16 arithmetic in hardware.
NATIVE_BF16_FLAGS: tuple[str, ...] = ("amx_bf16", "avx512_bf16")
#: Precision names accepted by :func:`resolve_precision` (``auto`` plus backends.PRECISIONS).
REQUESTS: tuple[str, ...] = ("auto", "fp32", "fp16", "bf16", "int8")
#: Largest share of BEV cells whose occupancy (p > 0.5) may differ from fp32 on the probe frame.
DEFAULT_MAX_FLIP_FRACTION = 1e-3
#: The slowdown measured where bf16 is emulated (see module docstring).
EMULATED_BF16_MEASURED = (
    "measured 0.10x of fp32 (11160 vs 1138 ms/frame) on a 2-core AMD EPYC with AVX2 only"
)

ParityCheck = Callable[[str], float]  # precision -> share of flipped BEV cells vs fp32, 0..1


@dataclass(frozen=True)
class CpuFeatures:
    """What this CPU offers: ``model_name`` (``/proc/cpuinfo`` model name), its ``flags`` and
    torch's dispatch level (``torch.backends.cpu.get_cpu_capability()``: DEFAULT, AVX2, AVX512,
    ...)."""

    model_name: str
    flags: frozenset[str]
    torch_capability: str

    @property
    def native_bf16(self) -> bool:
        """True when the CPU computes bf16 in hardware (AMX or AVX-512 BF16)."""
        return any(f in self.flags for f in NATIVE_BF16_FLAGS)

    def describe(self) -> str:
        """One line, e.g. ``AMD EPYC (torch AVX2; no amx_bf16/avx512_bf16)``."""
        have = [f for f in NATIVE_BF16_FLAGS if f in self.flags]
        bf = ", ".join(have) if have else "no " + "/".join(NATIVE_BF16_FLAGS)
        return f"{self.model_name or 'unknown CPU'} (torch {self.torch_capability}; {bf})"


def parse_cpuinfo(text: str, torch_capability: str = "") -> CpuFeatures:
    """CpuFeatures from the text of ``/proc/cpuinfo`` (first processor's model name / flags;
    ``Features`` on ARM)."""
    model, flags = "", frozenset[str]()
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key = key.strip().lower()
        if key == "model name" and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = frozenset(value.split())
    return CpuFeatures(model, flags, torch_capability)


def read_cpu_features(cpuinfo: str | Path = "/proc/cpuinfo") -> CpuFeatures:
    """This machine's CpuFeatures (empty flags where ``cpuinfo`` is unreadable, e.g. macOS)."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        text = ""
    return parse_cpuinfo(text, torch.backends.cpu.get_cpu_capability())


class PrecisionChoice(NamedTuple):
    """Result of :func:`resolve_precision`."""

    precision: str  # what to pass to create_backend(precision=...)
    reason: str  # one line saying why (log it; put it in /diagnostics when ``warning``)
    warning: bool = False  # the choice is expected to be slow, or its accuracy is unverified


def resolve_precision(
    requested: str,
    device: str | torch.device,
    *,
    parity: ParityCheck | None = None,
    features: CpuFeatures | None = None,
    max_flip_fraction: float = DEFAULT_MAX_FLIP_FRACTION,
) -> PrecisionChoice:
    """Decide the inference precision for ``device``.

    ``auto``: on CUDA fp16, on a CPU with native bf16 bf16, in both cases only when
    ``parity(candidate)`` (share of BEV cells that flip against fp32 on a probe frame, see
    :func:`torch_parity_check`) is at most ``max_flip_fraction``; otherwise fp32. An explicit
    precision is kept; an explicit ``bf16`` on a CPU without native bf16 is kept with
    ``warning=True`` and a reason naming the expected slowdown. ``features`` defaults to
    :func:`read_cpu_features`. Raises ValueError for an unknown ``requested``.
    """
    if requested not in REQUESTS:
        raise ValueError(f"precision must be one of {REQUESTS}, got {requested!r}")
    dev = torch.device(device)
    if dev.type == "cuda":
        if requested != "auto":
            return PrecisionChoice(requested, f"{requested} requested on {dev}")
        return _checked("fp16", f"CUDA device {dev}", parity, max_flip_fraction)
    feats = features if features is not None else read_cpu_features()
    if requested == "bf16" and not feats.native_bf16:
        return PrecisionChoice(
            "bf16",
            f"bf16 requested on {feats.describe()}: bf16 is emulated there and expected to be "
            f"much SLOWER than fp32 ({EMULATED_BF16_MEASURED}); use fp32 or auto",
            warning=True,
        )
    if requested != "auto":
        return PrecisionChoice(requested, f"{requested} requested on {feats.describe()}")
    if not feats.native_bf16:
        return PrecisionChoice(
            "fp32", f"auto: fp32, {feats.describe()} has no native bf16 (emulated bf16 is slower)"
        )
    return _checked("bf16", feats.describe(), parity, max_flip_fraction)


def _checked(
    candidate: str, where: str, parity: ParityCheck | None, max_flip_fraction: float
) -> PrecisionChoice:
    if parity is None:
        return PrecisionChoice(
            "fp32", f"auto: fp32, {candidate} would suit {where} but no parity check was given"
        )
    try:
        flips = float(parity(candidate))
    except Exception as exc:  # a precision the runtime cannot run is not a choice
        return PrecisionChoice(
            "fp32", f"auto: fp32, {candidate} parity check failed on {where}: {exc}", warning=True
        )
    if not math.isfinite(flips) or flips > max_flip_fraction:
        return PrecisionChoice(
            "fp32",
            f"auto: fp32, {candidate} flipped {flips:.3%} of BEV cells against fp32 on the probe "
            f"frame (limit {max_flip_fraction:.3%}) on {where}",
            warning=True,
        )
    return PrecisionChoice(
        candidate,
        f"auto: {candidate} on {where} (parity vs fp32 on the probe frame: {flips:.3%} of cells "
        "flipped)",
    )


def torch_parity_check(
    model: nn.Module, inputs: Sequence[Tensor], threshold: float = 0.5
) -> ParityCheck:
    """A :data:`ParityCheck` for an LSS ``model`` on one probe frame.

    ``inputs``: ``(imgs, rots, trans, intrins, post_rots, post_trans)`` on the model's device,
    e.g. the rig's calibration with a blank (zero) image batch. The check runs the model in
    fp32 and under autocast to the candidate dtype and returns the share of BEV cells whose
    ``sigmoid > threshold`` differs (0..1).
    """
    dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16}

    @torch.no_grad()
    def check(precision: str) -> float:
        if precision not in dtypes:
            raise ValueError(f"no autocast parity check for {precision!r}")
        dev = next(model.parameters()).device
        was_training = model.training
        model.eval()
        try:
            ref = model(*inputs).float().sigmoid() > threshold
            with torch.autocast(dev.type, dtype=dtypes[precision]):
                low = model(*inputs).float().sigmoid() > threshold
        finally:
            model.train(was_training)
        return float((ref != low).float().mean())

    return check
