"""Fixtures for the rosbag tool tests: one tiny synthetic nuScenes scene and its bag."""

from __future__ import annotations

from pathlib import Path

import pytest
from rosbags.rosbag2 import StoragePlugin, Writer

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


def write_bag_with_bad_record(path: Path, n: int = 6, bad_index: int = 3) -> Path:
    """A valid /odom bag except record ``bad_index``, whose CDR payload is garbage."""
    from rosbag_tools.bagio import TYPESTORE, make_qos
    from rosbag_tools.convert import odometry_msg

    with Writer(path, version=8, storage_plugin=StoragePlugin.MCAP) as w:
        conn = w.add_connection("/odom", "nav_msgs/msg/Odometry", typestore=TYPESTORE,
                                offered_qos_profiles=[make_qos()])
        for i in range(n):
            t = 1_000_000_000 + i * 100_000_000
            if i == bad_index:
                raw = b"\x00\x01\x00\x00" + b"\xff" * 7
            else:
                raw = TYPESTORE.serialize_cdr(
                    odometry_msg(t, (i, 0, 0), (1, 0, 0, 0), (1, 0, 0), (0, 0, 0)),
                    "nav_msgs/msg/Odometry")
            w.write(conn, t, raw)
    return path


@pytest.fixture
def bad_record_bag(tmp_path: Path) -> Path:
    """/odom x 6 with record 3 undecodable (x = 0, 1, 2, <bad>, 4, 5)."""
    return write_bag_with_bad_record(tmp_path / "bad")


TRAINED = Path(__file__).resolve().parents[2] / "models" / "lss_small_synth.pt"


@pytest.fixture(scope="session")
def lss_weights(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """(checkpoint, threshold) for the eval tests: the trained synthetic-data model when the
    repository has it, else an untrained LSSConfig.small() (seed 0) saved in our format, with a
    threshold under its near-constant output so that predictions are not empty."""
    if TRAINED.is_file():
        return TRAINED, 0.5
    import torch

    from lss_bev_ros.lss.checkpoint import save_checkpoint
    from lss_bev_ros.lss.config import LSSConfig
    from lss_bev_ros.lss.model import LiftSplatShoot

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "lss_small_untrained.pt"
    save_checkpoint(path, LiftSplatShoot(LSSConfig.small()))
    return path, 0.45


EVAL_REFERENCE = "lidar_in_boxes"  # exercises both the LiDAR and the GT-box paths


@pytest.fixture(scope="session")
def offline(synth_bag: Path, lss_weights, tmp_path_factory: pytest.TempPathFactory):
    """One offline evaluation of the whole bag (report + video), shared by the eval tests."""
    from rosbag_tools.evaluate import EvalOptions, evaluate_bag

    weights, thr = lss_weights
    out = tmp_path_factory.mktemp("eval")
    opts = EvalOptions(weights=weights, threshold=thr, reference=EVAL_REFERENCE,
                       progress=False, n_sample_images=3, video=out / "replay.mp4",
                       torch_threads=1)  # 2 intra-op threads crawl on a shared 2-core box
    return evaluate_bag(synth_bag, out, opts), out
