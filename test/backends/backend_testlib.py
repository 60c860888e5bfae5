"""Shared helpers for the backend tests (unique module name: imported from test files)."""

from __future__ import annotations

import torch
from torch import nn

from lss_bev_ros.backends.rig import calibration_tensors, random_images
from lss_bev_ros.lss.config import LSSConfig
from lss_bev_ros.lss.model import LiftSplatShoot

#: Decision threshold on probabilities (sigmoid(logit) >= 0.5 <=> logit >= 0).
THRESHOLD_LOGIT = 0.0


def sharpened_model(cfg: LSSConfig, seed: int = 0) -> LiftSplatShoot:
    """A random-weight model whose logits vary like a trained one's.

    A fresh LSS (zero-init residual BatchNorms, unit running stats) gives almost constant
    logits, which would make mask parity trivially true. Here every BatchNorm gets random
    affine parameters and running statistics measured on random images (like a trained
    network's), and the head is rescaled so that the logits of the test images have std ~3 and
    median 0: about half the cells are positive and many lie close to the threshold, the
    hardest case for mask parity.
    """
    torch.manual_seed(seed)
    model = LiftSplatShoot(cfg).eval()
    g = torch.Generator().manual_seed(seed)
    calib = calibration_tensors(cfg)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        for m in bns:
            n = m.num_features
            m.weight.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.copy_((torch.rand(n, generator=g) - 0.5) * 0.4)
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration passes
            m.train()
        # running statistics from the data, as training would leave them: activations stay
        # O(1) through both encoders instead of fading out
        for i in range(2):
            model(random_images(cfg, seed=1000 + i), *calib)
        for m in bns:
            m.momentum = 0.1
        model.eval()
        logits = model(random_images(cfg, seed=123), *calib)
        head = model.bevencode.up2[-1]
        scale = 3.0 / float(logits.std().clamp_min(1e-12))
        head.weight.mul_(scale)
        head.bias.mul_(scale)
        head.bias.sub_(float(logits.median()) * scale)
    model.head_gain = scale  # type: ignore[attr-defined]  # reported by the tests
    return model


def mask_mismatch(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fraction of cells whose decision (logit >= threshold) differs."""
    return float(((a >= THRESHOLD_LOGIT) != (b >= THRESHOLD_LOGIT)).float().mean())


__all__ = ["calibration_tensors", "mask_mismatch", "random_images", "sharpened_model"]
