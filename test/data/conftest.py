"""Fixtures of the synthetic-data tests: one small generated nuScenes-schema dataset."""

from __future__ import annotations

from pathlib import Path

import pytest

SEED = 3
N_SCENES = 2
SAMPLES = 3


@pytest.fixture(scope="session")
def synth_data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 scenes x 3 key frames, seed 3."""
    from lss_bev_ros.data.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("synth_data")
    generate_dataset(root, n_scenes=N_SCENES, samples_per_scene=SAMPLES, seed=SEED, progress=False)
    return root


@pytest.fixture(scope="session")
def nusc(synth_data_root: Path):
    """The dataset loaded by the unmodified nuScenes devkit."""
    from nuscenes.nuscenes import NuScenes

    return NuScenes(version="v1.0-mini", dataroot=str(synth_data_root), verbose=False)
