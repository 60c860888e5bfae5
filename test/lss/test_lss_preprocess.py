"""Image preprocessing: augmentation sampling, image/matrix consistency, normalisation."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from lss_bev_ros.lss.config import ImageConfig, LSSConfig
from lss_bev_ros.lss.geometry import nuscenes_like_rig
from lss_bev_ros.lss.preprocess import (
    AugParams,
    augmentation_matrices,
    denormalize_image,
    img_transform,
    normalize_image,
    prepare_inputs,
    sample_augmentation,
)


def _reference_post(resize, crop, flip, rotate):
    """Literal port of the reference tools.img_transform matrix maths (torch, 2 x 2)."""
    post_rot = torch.eye(2) * resize
    post_tran = -torch.tensor(crop[:2], dtype=torch.float32)
    if flip:
        A = torch.tensor([[-1.0, 0.0], [0.0, 1.0]])
        b = torch.tensor([crop[2] - crop[0], 0.0])
        post_rot = A @ post_rot
        post_tran = A @ post_tran + b
    h = rotate / 180 * np.pi
    A = torch.tensor([[np.cos(h), np.sin(h)], [-np.sin(h), np.cos(h)]], dtype=torch.float32)
    b = torch.tensor([crop[2] - crop[0], crop[3] - crop[1]], dtype=torch.float32) / 2
    b = A @ -b + b
    return A @ post_rot, A @ post_tran + b


def test_eval_augmentation_is_the_reference_one() -> None:
    aug = sample_augmentation(ImageConfig(), train=False)
    # resize = max(128/900, 352/1600) = 0.22; 1600 x 900 -> 352 x 198; crop bottom at 1-0.11
    assert aug.resize == pytest.approx(0.22)
    assert aug.resize_dims == (352, 198)
    assert aug.crop == (0, 48, 352, 176)
    assert (aug.flip, aug.rotate) == (False, 0.0)
    assert sample_augmentation(ImageConfig(), train=False) == aug
    small = sample_augmentation(LSSConfig.small().image, train=False)
    assert small.crop[2] - small.crop[0] == 176
    assert small.crop[3] - small.crop[1] == 64


def test_train_augmentation_ranges_and_seed() -> None:
    cfg = ImageConfig()
    a = [sample_augmentation(cfg, True, np.random.default_rng(7)) for _ in range(2)]
    assert a[0] == a[1]
    rng = np.random.default_rng(0)
    flips = []
    for _ in range(200):
        aug = sample_augmentation(cfg, True, rng)
        assert cfg.resize_lim[0] <= aug.resize <= cfg.resize_lim[1]
        assert cfg.rot_lim[0] <= aug.rotate <= cfg.rot_lim[1]
        assert (aug.crop[2] - aug.crop[0], aug.crop[3] - aug.crop[1]) == (352, 128)
        assert 0 <= aug.crop[0] <= max(0, aug.resize_dims[0] - 352)  # narrower: padded
        flips.append(aug.flip)
    assert 0.3 < np.mean(flips) < 0.7
    no_flip = ImageConfig(rand_flip=False)
    assert not any(sample_augmentation(no_flip, True, rng).flip for _ in range(50))


@pytest.mark.parametrize(
    "aug",
    [
        AugParams(0.22, (352, 198), (0, 48, 352, 176), False, 0.0),
        AugParams(0.2, (320, 180), (-10, 40, 342, 168), True, 0.0),
        AugParams(0.215, (344, 193), (-4, 50, 348, 178), True, -5.1),
    ],
)
def test_matrices_equal_reference_port(aug: AugParams) -> None:
    pr, pt = augmentation_matrices(aug.resize, aug.crop, aug.flip, aug.rotate)
    rr, rt = _reference_post(aug.resize, aug.crop, aug.flip, aug.rotate)
    assert torch.allclose(pr[:2, :2], rr, atol=1e-6)
    assert torch.allclose(pt[:2], rt, atol=1e-4)
    assert pr[2].tolist() == [0.0, 0.0, 1.0]
    assert pt[2] == 0.0


@pytest.mark.parametrize(
    "aug",
    [
        AugParams(0.22, (352, 198), (0, 48, 352, 176), False, 0.0),
        AugParams(0.22, (352, 198), (0, 48, 352, 176), True, 0.0),
        AugParams(0.2, (320, 180), (-8, 40, 344, 168), True, 5.0),
        AugParams(0.225, (360, 202), (3, 70, 355, 198), False, -5.4),
    ],
    ids=["eval", "flip", "flip_rot_pad", "rot"],
)
def test_image_content_follows_post_matrices(aug: AugParams) -> None:
    """A bright 20 x 20 px block in the raw image lands where post_rot/post_tran put it."""
    raw = np.zeros((900, 1600, 3), np.uint8)
    rng = np.random.default_rng(3)
    pr, pt = augmentation_matrices(aug.resize, aug.crop, aug.flip, aug.rotate)
    A, b = pr[:2, :2].double().numpy(), pt[:2].double().numpy()
    for _ in range(5):
        u, v = rng.uniform(300, 1300), rng.uniform(450, 780)  # inside the crop
        raw[:] = 0
        raw[int(v) - 10 : int(v) + 10, int(u) - 10 : int(u) + 10] = 255
        centre_raw = np.array([int(u), int(v)], float)  # continuous centre of the block
        out, pr2, pt2 = img_transform(raw, *aug)
        assert out.shape == (128, 352, 3)
        assert torch.equal(pr2, pr)
        assert torch.equal(pt2, pt)
        w = out[..., 0].astype(np.float64)
        assert w.sum() > 0
        ys, xs = np.mgrid[: w.shape[0], : w.shape[1]]
        # intensity-weighted centroid, pixel index -> continuous (+0.5)
        centre_out = np.array([(w * xs).sum(), (w * ys).sum()]) / w.sum() + 0.5
        expected = A @ centre_raw + b
        # nearest-neighbour rotation and the reference's int() of the resized size (202 px for
        # 202.5) cost up to ~0.5 px; without rotation the match is exact to a few 1/100 px
        tol = 0.1 if aug.rotate == 0 else 0.6
        assert np.abs(centre_out - expected).max() < tol, (centre_out, expected)


def test_img_transform_accepts_pil_and_pads_outside() -> None:
    from PIL import Image

    raw = np.full((90, 160, 3), 200, np.uint8)
    out, _, _ = img_transform(Image.fromarray(raw), 1.0, (160, 90), (-10, -5, 150, 85), False, 0)
    assert out.shape == (90, 160, 3)
    assert (out[:5] == 0).all() and (out[:, :10] == 0).all()
    assert (out[5:, 10:] == 200).all()


def test_normalize_image() -> None:
    img = np.random.default_rng(0).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    x = normalize_image(img)
    assert x.shape == (3, 4, 5)
    assert x.dtype == torch.float32
    mean = np.array([0.485, 0.456, 0.406])
    std = np.array([0.229, 0.224, 0.225])
    expected = ((img / 255.0 - mean) / std).transpose(2, 0, 1)
    assert np.allclose(x.numpy(), expected, atol=1e-5)
    assert np.array_equal(denormalize_image(x), img)
    assert normalize_image(np.stack([img, img])).shape == (2, 3, 4, 5)


def test_prepare_inputs() -> None:
    K, T = nuscenes_like_rig()
    rng = np.random.default_rng(0)
    # smooth random images (upsampled noise): resampling methods agree closely on them
    images = [
        cv2.resize(
            rng.integers(0, 256, (18, 32, 3), dtype=np.uint8),
            (1600, 900),
            interpolation=cv2.INTER_CUBIC,
        )
        for _ in range(6)
    ]
    inp = prepare_inputs(images, K.numpy(), T.numpy(), LSSConfig())
    assert inp.imgs.shape == (1, 6, 3, 128, 352)
    assert inp.rots.shape == (1, 6, 3, 3)
    assert inp.trans.shape == (1, 6, 3)
    assert inp.intrins.shape == (1, 6, 3, 3)
    assert inp.post_rots.shape == (1, 6, 3, 3)
    assert inp.post_trans.shape == (1, 6, 3)
    assert all(t.dtype == torch.float32 for t in inp)
    assert torch.allclose(inp.rots[0], T[:, :3, :3].float())
    assert torch.allclose(inp.trans[0], T[:, :3, 3].float())
    assert torch.allclose(inp.post_rots[0, 0, :2, :2], 0.22 * torch.eye(2))
    assert inp.post_trans[0, 0].tolist() == pytest.approx([0.0, -48.0, 0.0])
    # the image is the resized (area average) + cropped + normalised raw image
    crop = cv2.resize(images[2], (352, 198), interpolation=cv2.INTER_AREA)[48:176]
    diff = (inp.imgs[0, 2] - normalize_image(crop)).abs()
    assert diff.mean() < 0.02 and diff.max() < 0.1  # ~1 and ~5 grey levels
    assert len(inp.calibration) == 5
    # train mode is reproducible given the rng
    a = prepare_inputs(images, K, T, LSSConfig().image, train=True, rng=np.random.default_rng(1))
    b = prepare_inputs(images, K, T, LSSConfig().image, train=True, rng=np.random.default_rng(1))
    assert torch.equal(a.imgs, b.imgs)
    assert torch.equal(a.post_rots, b.post_rots)
    assert not torch.equal(a.post_rots, inp.post_rots)


def test_prepare_inputs_rejects_bad_shapes() -> None:
    K, T = nuscenes_like_rig(2)
    img = np.zeros((900, 1600, 3), np.uint8)
    with pytest.raises(ValueError, match="expected 3 images"):
        prepare_inputs([img] * 3, K, T, LSSConfig())
    with pytest.raises(ValueError, match="uint8"):
        prepare_inputs([img, img.astype(np.float32)], K, T, LSSConfig())


def test_other_image_sizes_use_their_own_size() -> None:
    K, T = nuscenes_like_rig(1)
    img = np.zeros((450, 800, 3), np.uint8)  # half-resolution camera
    inp = prepare_inputs([img], K, T, LSSConfig())
    assert inp.imgs.shape == (1, 1, 3, 128, 352)
    assert inp.post_rots[0, 0, 0, 0].item() == pytest.approx(0.44)
    assert math.isclose(inp.post_trans[0, 0, 1].item(), -48.0)
