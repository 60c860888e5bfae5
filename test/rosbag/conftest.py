"""Fixtures for the rosbag tool tests: one tiny synthetic nuScenes scene and its bag."""

from __future__ import annotations

from pathlib import Path

import pytest

N_SAMPLES = 5


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1-scene, 5-sample synthetic nuScenes root (real devkit schema)."""
    from lss_bev_ros.data.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("nuscenes")
    generate_dataset(root, n_scenes=1, samples_per_scene=N_SAMPLES, seed=7, progress=False)
    return root


@pytest.fixture(scope="session")
def nusc(synth_root: Path):
    from nuscenes.nuscenes import NuScenes

    return NuScenes(version="v1.0-mini", dataroot=str(synth_root), verbose=False)


@pytest.fixture(scope="session")
def synth_bag(synth_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The scene converted to an MCAP rosbag2 directory."""
    from rosbag_tools.convert import convert_dataset

    out = tmp_path_factory.mktemp("bags")
    (res,) = convert_dataset(synth_root, out, progress=False)
    return res.bag
