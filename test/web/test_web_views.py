"""Camera mosaic and BEV picture of the live view (pure numpy/cv2, duck-typed messages)."""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from lss_bev_ros.conversions.grid import GridSpec
from lss_bev_ros.conversions.image import ImageConversionError
from lss_bev_ros.eval.reference import Box
from lss_bev_ros.visualization import (
    FN_RGB,
    NOT_SCORED_SWATCH,
    TP_RGB,
    UNSEEN_RGB,
    bev_legend,
    draw_legend,
)
from lss_bev_ros.web.views import BevView, CameraMosaic, decode_reduced, detection_overlays


def _jpeg_msg(rgb: np.ndarray, quality: int = 95) -> SimpleNamespace:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return SimpleNamespace(format="jpeg", data=buf.tobytes())


def _raw_msg(rgb: np.ndarray) -> SimpleNamespace:
    h, w = rgb.shape[:2]
    return SimpleNamespace(encoding="rgb8", height=h, width=w, step=w * 3, is_bigendian=0,
                           data=rgb.tobytes())


def _det(cx, cy, sx, sy, track_id=-1, label="car", score=0.9):
    return SimpleNamespace(center_x=cx, center_y=cy, size_x=sx, size_y=sy, track_id=track_id,
                           label=label, score=score, class_id=2)


def _solid(color, h=360, w=640):
    img = np.zeros((h, w, 3), np.uint8)
    img[:] = color
    return img


def test_decode_reduced_uses_dct_scaling():
    rgb = np.zeros((900, 1600, 3), np.uint8)
    rgb[:, :800] = (200, 30, 30)
    data = _jpeg_msg(rgb).data
    small = decode_reduced(data, 320)  # full width read from the JPEG header
    assert small.shape == (225, 400, 3)  # 1/4: largest k keeping width >= 320
    assert decode_reduced(data, 320, full_width=1600).shape == (225, 400, 3)
    assert np.abs(small[100, 50].astype(int) - (200, 30, 30)).max() < 20  # RGB order kept
    assert decode_reduced(data, 900, full_width=1600).shape[1] == 1600
    with pytest.raises(ImageConversionError):
        decode_reduced(b"\xff\xd8garbage", 320)
    with pytest.raises(ImageConversionError):
        decode_reduced(b"", 320)


def test_detection_overlays_scale_and_label():
    boxes = detection_overlays([_det(100, 50, 40, 20, track_id=7)], 0.5, 0.25)
    b = boxes[0]
    assert (b.x1, b.y1, b.x2, b.y2) == (40.0, 10.0, 60.0, 15.0)
    assert b.label == "car #7 0.90" and b.track_id == 7


def test_mosaic_draws_detections_on_the_image_they_belong_to():
    mos = CameraMosaic(["CAM_FRONT", "CAM_BACK"], history=3, overlay_max_age_s=0.2)
    red, green = _solid((180, 40, 40)), _solid((40, 160, 40))
    mos.add_image("CAM_FRONT", 1.0, _jpeg_msg(red), compressed=True)
    mos.add_image("CAM_FRONT", 2.0, _jpeg_msg(green), compressed=True)
    # detections of the *older* image (detector lags): that image is shown, with the box
    mos.add_detections("CAM_FRONT", 1.0, [_det(320, 180, 200, 100, track_id=3)], 640, 360)
    out = mos.render((180, 320))
    assert out.shape == (360, 320, 3)  # rows: [CAM_FRONT], [CAM_BACK]
    front = out[:180]
    inner = front[85:95, 150:170].reshape(-1, 3).mean(0)  # inside the box: image colour
    assert inner[0] > 150 and inner[1] < 80  # red image, not the newer green one
    edge = front[80:100, 108:113].astype(int)  # left box edge at x = 110, 1 px thick
    assert (np.abs(edge - (180, 40, 40)).max(axis=2) > 60).any(axis=1).all()  # box drawn
    back = out[180:]
    assert np.abs(back[90, 20].astype(int) - UNSEEN_RGB).max() < 5  # no image yet

    # detections whose image is gone and which are too old for the newest image: not drawn
    mos2 = CameraMosaic(["CAM_FRONT"], history=1, overlay_max_age_s=0.2)
    mos2.add_image("CAM_FRONT", 2.0, _raw_msg(green), compressed=False)
    mos2.add_detections("CAM_FRONT", 1.0, [_det(320, 180, 200, 100)], 640, 360)
    plain = mos2.render((180, 320))
    box_col = plain[80:100, 108:113].astype(int)
    assert np.abs(box_col - (40, 160, 40)).max() < 25
    counts = mos.detection_counts()
    assert counts == {"CAM_FRONT": {"detections": 1, "tracks": 1}}


def test_mosaic_survives_corrupt_images_and_unknown_cameras():
    mos = CameraMosaic(["CAM_FRONT"])
    mos.add_image("CAM_FRONT", 1.0, SimpleNamespace(format="jpeg", data=b"\xff\xd8bad"), True)
    out = mos.render((90, 160))
    assert out.shape == (90, 160, 3) and mos.decode_errors == 1
    with pytest.raises(KeyError):
        mos.add_image("CAM_NOPE", 1.0, None, True)


def test_bev_view_overlays_reference_outcomes():
    grid = GridSpec()
    prob = np.zeros((grid.nx, grid.ny), np.float32)
    ix, iy, _ = grid.cell_of(np.array([10.0]), np.array([0.0]))
    prob[ix[0] - 3 : ix[0] + 4, iy[0] - 2 : iy[0] + 3] = 0.9  # car 10 m ahead
    known = np.ones_like(prob, bool)
    known[:, :20] = False  # a strip nobody sees
    view = BevView("gt_boxes", threshold=0.5, tolerance_s=0.1)
    view.add_grid(5.0, prob, known, grid)
    img = view.render(scale=2)
    assert img is not None and img.shape == (400, 400, 3)
    assert not _has(img, TP_RGB)  # reference not there yet: plain probabilities
    view.add_boxes(5.02, [Box(10.0, 0.0, 0.8, 4.0, 2.0, 1.6, 0.0, "vehicle.car"),
                          Box(-20.0, 5.0, 0.8, 4.0, 2.0, 1.6, 0.0, "vehicle.car"),
                          Box(-20.0, -5.0, 0.8, 1.0, 1.0, 1.6, 0.0, "human.pedestrian")])
    img = view.render(scale=2)
    assert _has(img, TP_RGB) and _has(img, FN_RGB)
    # display convention: forward is up -> the TP blob is in the upper half, centred
    rows, cols = np.nonzero(np.all(img[:, 100:300] == TP_RGB, axis=2))  # legend is at x < 100
    assert 150 < rows.mean() < 200 and abs(cols.mean() + 100 - 200) < 10
    assert _has(img, UNSEEN_RGB)
    # a reference too far from the grid stamp is not used
    late = BevView("gt_boxes", tolerance_s=0.01)
    late.add_grid(5.0, prob, known, grid)
    late.add_boxes(6.0, [Box(10.0, 0.0, 0.8, 4.0, 2.0, 1.6, 0.0, "vehicle.car")])
    assert not _has(late.render(), TP_RGB)
    assert BevView("none").render() is None  # no grid yet


def test_bev_view_shades_cells_lidar_did_not_observe():
    grid = GridSpec()
    prob = np.zeros((grid.nx, grid.ny), np.float32)
    ix, iy, _ = grid.cell_of(np.array([10.0]), np.array([0.0]))
    prob[ix[0] - 1 : ix[0] + 2, iy[0] - 1 : iy[0] + 2] = 0.9  # car 10 m ahead
    gx, gy = np.meshgrid(np.arange(5.0, 20.0, 0.25), np.arange(-5.0, 5.0, 0.25))
    ground = np.stack([gx.ravel(), gy.ravel(), np.zeros(gx.size)], 1)  # road 5..20 m ahead
    car = np.array([[10.0, 0.0, 0.8], [10.2, 0.2, 0.8], [9.8, -0.2, 0.8]])  # returns on the car
    view = BevView("lidar_visibility", threshold=0.5, tolerance_s=0.1)
    view.add_grid(5.0, prob, np.ones_like(prob, bool), grid)
    view.add_points(5.0, np.concatenate([ground, car]), origin=(0.94, 0.0, 1.84))
    ref, observed = view.reference_for(5.0, grid)
    assert ref[ix[0], iy[0]] and observed[ix[0], iy[0]]
    assert 0.005 < observed.mean() < 0.05  # the road patch (and the beams over it) only
    img = view.render(scale=2)
    area = img[40:330]  # between the caption and the legend
    assert _has(area, TP_RGB)  # the car is observed occupied and predicted
    # 30 m behind, 30 m left: LiDAR did not observe it -> not scored; 15 m ahead: observed free
    assert tuple(img[2 * (199 - 40), 2 * (199 - 160)]) == NOT_SCORED_SWATCH
    assert tuple(img[2 * (199 - 130), 2 * (199 - 104)]) == (4, 9, 28)  # dimmed free colour
    assert _has(img[330:], NOT_SCORED_SWATCH)  # in the legend too


def test_legend_wraps_into_rows_inside_the_picture():
    img = np.zeros((160, 240, 3), np.uint8)
    draw_legend(img, bev_legend(reference=True, observed=True))
    assert img[:40].max() == 0  # drawn along the bottom only
    def swatch_rows(rgb: tuple[int, int, int]) -> np.ndarray:  # >= 6 px: not text edges
        return np.nonzero(np.all(img == rgb, axis=2).sum(axis=1) >= 6)[0]

    assert swatch_rows(UNSEEN_RGB).min() > swatch_rows(TP_RGB).max()  # first on top


@pytest.mark.parametrize("reference", ["none", "gt_boxes"])  # ramp / solid swatches
@pytest.mark.parametrize("cells", [(1, 1), (3, 7), (2, 4000), (4000, 2)])
def test_bev_view_draws_tiny_and_thin_grids_with_their_legend_clipped(cells, reference):
    grid = GridSpec(-1.0, -1.0, 0.5, *cells)
    view = BevView(reference)
    view.add_grid(1.0, np.full(cells, 0.9, np.float32), np.ones(cells, bool), grid)
    view.add_boxes(1.0, [])
    img = view.render(scale=2)
    assert img is not None and img.shape == (2 * cells[0], 2 * cells[1], 3)


def _has(img: np.ndarray, rgb) -> bool:
    return bool(np.all(img == np.array(rgb, np.uint8), axis=2).sum() > 4)
