"""Fixtures for the LSS core tests (pure torch, no ROS)."""

from __future__ import annotations

import pytest
import torch

torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _lss_seed() -> None:
    torch.manual_seed(0)
