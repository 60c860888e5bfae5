"""precision: auto picks reduced precision only where the hardware has it and parity holds."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from lss_bev_ros.backends.cpu_features import (
    DEFAULT_MAX_FLIP_FRACTION,
    CpuFeatures,
    parse_cpuinfo,
    read_cpu_features,
    resolve_precision,
    torch_parity_check,
)
from lss_bev_ros.backends.rig import calibration_tensors, random_images
from lss_bev_ros.lss.checkpoint import load_checkpoint
from lss_bev_ros.lss.config import LSSConfig

WEIGHTS = Path(__file__).resolve().parents[2] / "models" / "lss_small_synth.pt"
EPYC_AVX2 = CpuFeatures("AMD EPYC 7B13", frozenset({"sse4_2", "avx", "avx2", "fma"}), "AVX2")
XEON_AMX = CpuFeatures(
    "Intel(R) Xeon(R) Platinum 8480+",
    frozenset({"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}),
    "AVX512",
)
CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9B14
flags\t\t: fpu sse avx2 avx512f avx512_bf16 avx512_vnni

processor\t: 1
model name\t: AMD EPYC 9B14
flags\t\t: fpu sse avx2 avx512f avx512_bf16 avx512_vnni
"""


def never(_: str) -> float:
    raise AssertionError("the parity check must not run here")


def test_cpuinfo_flags_with_avx512_bf16_mean_native_bf16() -> None:
    f = parse_cpuinfo(CPUINFO, "AVX512")
    assert f.model_name == "AMD EPYC 9B14" and f.native_bf16
    assert "avx512_bf16" in f.describe()


def test_avx2_only_cpu_has_no_native_bf16() -> None:
    assert not EPYC_AVX2.native_bf16 and "no amx_bf16/avx512_bf16" in EPYC_AVX2.describe()


def test_this_machine_reports_torch_capability() -> None:
    f = read_cpu_features()
    assert f.torch_capability == torch.backends.cpu.get_cpu_capability()


def test_auto_is_fp32_on_cpu_without_native_bf16() -> None:
    choice = resolve_precision("auto", "cpu", parity=never, features=EPYC_AVX2)
    assert choice.precision == "fp32" and not choice.warning


def test_explicit_bf16_without_native_bf16_warns_about_the_slowdown() -> None:
    choice = resolve_precision("bf16", "cpu", features=EPYC_AVX2)
    assert choice.precision == "bf16" and choice.warning
    assert "SLOWER" in choice.reason and "0.10x" in choice.reason


def test_auto_is_bf16_on_native_bf16_cpu_when_parity_holds() -> None:
    choice = resolve_precision("auto", "cpu", parity=lambda p: 0.0, features=XEON_AMX)
    assert choice.precision == "bf16" and not choice.warning


def test_auto_falls_back_to_fp32_when_parity_fails() -> None:
    choice = resolve_precision("auto", "cpu", parity=lambda p: 0.02, features=XEON_AMX)
    assert choice.precision == "fp32" and choice.warning and "2.000%" in choice.reason


def test_auto_without_parity_check_stays_fp32() -> None:
    assert resolve_precision("auto", "cpu", features=XEON_AMX).precision == "fp32"


def test_auto_is_fp16_on_cuda_when_parity_holds() -> None:
    seen: list[str] = []
    choice = resolve_precision("auto", "cuda", parity=lambda p: seen.append(p) or 0.0)
    assert choice.precision == "fp16" and seen == ["fp16"]


def test_unknown_precision_is_refused() -> None:
    with pytest.raises(ValueError, match="fp8"):
        resolve_precision("fp8", "cpu", features=EPYC_AVX2)


def test_trained_model_bf16_parity_on_a_blank_probe_frame_is_within_the_default_limit() -> None:
    model, cfg, _ = load_checkpoint(WEIGHTS)
    probe = (torch.zeros_like(random_images(cfg)), *calibration_tensors(cfg))
    assert torch_parity_check(model, probe)("bf16") <= DEFAULT_MAX_FLIP_FRACTION


class NearThreshold(nn.Module):
    """Logit = image - 1 by a 1 x 1 conv: 1.001 - 1 > 0 in fp32, but 1.001 rounds to 1 in bf16."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, kernel_size=1)
        with torch.no_grad():
            self.conv.weight.fill_(1.0)
            self.conv.bias.fill_(-1.0)

    def forward(self, imgs: torch.Tensor, *calib: torch.Tensor) -> torch.Tensor:
        return self.conv(imgs[:, 0, :1])


def test_parity_check_counts_cells_that_flip_in_bf16() -> None:
    probe = (torch.full((1, 1, 3, 4, 4), 1.001), *calibration_tensors(LSSConfig.small_cpu()))
    assert torch_parity_check(NearThreshold(), probe)("bf16") == 1.0
