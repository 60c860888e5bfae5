"""Fixtures of the pipeline tests: a tiny synthetic nuScenes dataroot and its rig file."""

from __future__ import annotations

from pathlib import Path

import pytest

from lss_bev_ros.calibration import load_rig_yaml, rig_from_nuscenes, save_rig_yaml


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> Path:
    """One synthetic scene of 4 key frames (seed 7: not a training scene of the checkpoint)."""
    from lss_bev_ros.data.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("synth")
    generate_dataset(root, n_scenes=1, samples_per_scene=4, seed=7, progress=False)
    return root


@pytest.fixture(scope="session")
def synth_rig_file(synth_root: Path) -> Path:
    """Rig calibration YAML (full 1600 x 900 images) of the synthetic dataset."""
    from nuscenes.nuscenes import NuScenes

    nusc = NuScenes("v1.0-mini", str(synth_root), verbose=False)
    path = save_rig_yaml(rig_from_nuscenes(nusc, nusc.sample[0]["token"]),
                         synth_root / "rig.yaml")
    assert load_rig_yaml(path).lidar_rotation is not None
    return path
