"""Fixtures of the objects tests: one tiny generated nuScenes-schema dataset with devkit splits."""

from __future__ import annotations

from pathlib import Path

import pytest

SEED = 5
N_SCENES = 2
SAMPLES = 4
VERSION = "v1.0-mini"


@pytest.fixture(scope="session")
def eval_data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 scenes x 4 key frames (seed 5); splits.json: synth_train = scene 0, synth_val = 1."""
    from lss_bev_ros.data.synthetic import generate_dataset, write_eval_splits

    root = tmp_path_factory.mktemp("objects_eval_data")
    generate_dataset(root, n_scenes=N_SCENES, samples_per_scene=SAMPLES, seed=SEED,
                     progress=False)
    write_eval_splits(root, VERSION, N_SCENES, 1)
    return root


@pytest.fixture(scope="session")
def eval_nusc(eval_data_root: Path):
    """The dataset loaded by the unmodified nuScenes devkit."""
    from nuscenes.nuscenes import NuScenes

    return NuScenes(version=VERSION, dataroot=str(eval_data_root), verbose=False)
