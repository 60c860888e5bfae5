"""VideoWriter (issue 13, item 7): the video appears at its path only when evaluation succeeded."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from rosbag_tools.report import VideoWriter


def _add_frame(video: VideoWriter, i: int) -> None:
    prob = np.zeros((200, 200), np.float32)
    prob[90:110, 90 + i : 110 + i] = 0.9
    images = {"CAM_FRONT": np.full((90, 160, 3), 40 * i % 255, np.uint8)}
    result = SimpleNamespace(stamp=100.0 + 0.5 * i, iou=0.5, mean_iou=0.5)  # FrameResult fields
    video.add(images, prob, np.ones_like(prob, bool), None, result)


def _frames(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def test_video_is_moved_into_place_on_success(tmp_path: Path) -> None:
    path = tmp_path / "replay.mp4"
    with VideoWriter(path, fps=2.0) as video:
        for i in range(3):
            _add_frame(video, i)
        assert not path.exists() and video.partial_path.exists()  # still being written
    assert path.exists() and not video.partial_path.exists()
    assert _frames(path) == 3


def test_failed_run_leaves_no_video(tmp_path: Path) -> None:
    path = tmp_path / "replay.mp4"
    video = VideoWriter(path)

    def failing_run() -> None:
        with video:
            _add_frame(video, 0)
            _add_frame(video, 1)
            raise RuntimeError("bag read failed after 2 frames")

    with pytest.raises(RuntimeError, match="bag read failed"):
        failing_run()
    assert not path.exists() and not video.partial_path.exists()
    assert list(tmp_path.iterdir()) == []


def test_close_without_success_deletes_the_partial_file(tmp_path: Path) -> None:
    video = VideoWriter(tmp_path / "replay.avi")
    _add_frame(video, 0)
    video.close(success=False)
    video.close(success=False)  # idempotent
    assert list(tmp_path.iterdir()) == []


def test_video_bev_shades_cells_the_reference_does_not_score(tmp_path: Path) -> None:
    from lss_bev_ros.visualization import NOT_SCORED_SWATCH

    path = tmp_path / "replay.avi"
    prob = np.zeros((200, 200), np.float32)
    observed = np.zeros((200, 200), bool)
    observed[:, 100:] = True  # LiDAR saw only the left half (y > 0: left in the picture)
    result = SimpleNamespace(stamp=1.0, iou=0.0, mean_iou=0.0, observed_fraction=0.5)
    with VideoWriter(path, reference="lidar_visibility") as video:
        video.add({"CAM_FRONT": np.zeros((90, 160, 3), np.uint8)}, prob,
                  np.ones_like(observed), np.zeros_like(observed), result, observed=observed)
    cap = cv2.VideoCapture(str(path))
    ok, bgr = cap.read()
    cap.release()
    assert ok
    bev = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)[:, -400:].astype(int)  # BEV: the right 400 px
    unscored, scored = bev[100:150, 300:350], bev[100:150, 50:100]
    assert np.abs(unscored.mean((0, 1)) - NOT_SCORED_SWATCH).max() < 15
    assert scored.mean() < 30  # observed and free: dark
