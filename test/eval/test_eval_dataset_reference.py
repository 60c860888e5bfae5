"""The visibility-aware LiDAR reference ranks models as the GT footprints do.

On frames the committed checkpoint never saw (a freshly generated synthetic scene, other seed),
scored with ``lss.train.evaluate``: trained > trained with wrong extrinsics > untrained, both
against GT box footprints and against what LiDAR observed.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from lss_bev_ros.data.dataset import LSSDataset
from lss_bev_ros.data.synthetic import generate_dataset
from lss_bev_ros.eval.dataset_reference import lidar_points_ego, visibility_references
from lss_bev_ros.lss.checkpoint import load_checkpoint
from lss_bev_ros.lss.model import LiftSplatShoot
from lss_bev_ros.lss.train import EvalResult, evaluate

WEIGHTS = Path(__file__).resolve().parents[2] / "models" / "lss_small_synth.pt"
N_SAMPLES = 3


@pytest.fixture(scope="module")
def heldout(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, LSSDataset]:
    from nuscenes.nuscenes import NuScenes

    root = tmp_path_factory.mktemp("heldout")
    generate_dataset(root, n_scenes=1, samples_per_scene=N_SAMPLES, seed=4242, progress=False)
    nusc = NuScenes(version="v1.0-mini", dataroot=str(root), verbose=False)
    _, cfg, _ = load_checkpoint(WEIGHTS)
    return nusc, LSSDataset(nusc, [s["name"] for s in nusc.scene], cfg, is_train=False)


def yawed(batch: list[torch.Tensor]) -> list[torch.Tensor]:
    """Wrong extrinsics: every camera rotated 30 deg about ego z."""
    a = math.radians(30.0)
    rz = torch.tensor(
        [[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0], [0.0, 0.0, 1.0]]
    )
    return [batch[0], rz @ batch[1], *batch[2:]]


@pytest.fixture(scope="module")
def scores(heldout: tuple[object, LSSDataset]) -> dict[str, EvalResult]:
    nusc, ds = heldout
    refs = visibility_references(nusc, ds.tokens, ds.cfg.grid)
    trained, cfg, _ = load_checkpoint(WEIGHTS)
    torch.manual_seed(0)
    untrained = LiftSplatShoot(cfg)
    return {
        "trained": evaluate(trained, ds, visibility=refs),
        "yawed": evaluate(trained, ds, visibility=refs, transform=yawed),
        "untrained": evaluate(untrained, ds, visibility=refs),
    }


def test_lidar_points_are_in_ego_frame_with_roof_origin(heldout: tuple[object, LSSDataset]) -> None:
    nusc, ds = heldout
    pts, origin = lidar_points_ego(nusc, ds.tokens[0])
    assert pts.shape[1] == 3 and len(pts) > 1000
    assert 1.0 < origin[2] < 3.0  # roof mount, metres above the ground
    assert np.percentile(pts[:, 2], 5) < 0.3  # ground returns near z = 0 in base_link


def test_gt_footprints_rank_trained_over_wrong_extrinsics_over_untrained(
    scores: dict[str, EvalResult],
) -> None:
    iou = {k: np.nan_to_num(r.iou) for k, r in scores.items()}
    assert iou["trained"] > iou["yawed"] > iou["untrained"], iou


def test_lidar_visibility_ranks_trained_over_wrong_extrinsics_over_untrained(
    scores: dict[str, EvalResult],
) -> None:
    iou = {}
    for k, r in scores.items():
        assert r.visibility is not None
        iou[k] = np.nan_to_num(r.visibility.pooled_iou)
    assert iou["trained"] > iou["yawed"] > iou["untrained"], iou


def test_lidar_observes_part_but_not_all_of_the_grid(scores: dict[str, EvalResult]) -> None:
    assert 0.02 < scores["trained"].observed_fraction < 0.9
