"""One backend registry: every list of backend choices is read from ``BACKENDS``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lss_bev_ros.backends import (
    BACKEND_NAMES,
    BACKENDS,
    BackendOptionError,
    backend_class,
    backend_option_names,
    create_backend,
)
from lss_bev_ros.lss.config import LSSConfig
from lss_bev_ros.lss.model import LiftSplatShoot

REPO = Path(__file__).resolve().parents[2]


def test_every_registered_backend_class_imports_and_has_its_name():
    assert tuple(BACKENDS) == BACKEND_NAMES
    for name in BACKEND_NAMES:
        assert backend_class(name).__name__ == BACKENDS[name][1]


def test_bev_node_and_cli_choices_are_the_registry():
    from lss_bev_ros.nodes.bev_node import BevNode
    from rosbag_tools.cli import build_parser

    spec = next(p for p in BevNode.PARAMS if p.name == "backend")
    assert tuple(spec.choices) == BACKEND_NAMES
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "cmd").choices["eval"]
    action = next(a for a in sub._actions if a.dest == "backend")
    assert tuple(action.choices) == BACKEND_NAMES


def test_readme_backend_table_lists_exactly_the_registry():
    text = (REPO / "README.md").read_text()
    section = text.split("## Inference backends", 1)[1].split("\n## ", 1)[0]
    names = re.findall(r"^\| `(\w+)` \|", section, flags=re.M)
    assert tuple(names) == BACKEND_NAMES


def test_unknown_option_is_rejected_by_signature_with_the_accepted_ones():
    model = LiftSplatShoot(LSSConfig.small())
    with pytest.raises(BackendOptionError, match="channels_last"):
        create_backend("torch", model, "cpu", "fp32", chanels_last=True)
    assert "channels_last" in backend_option_names("torch")
    assert "threads" in backend_option_names("onnxruntime")
