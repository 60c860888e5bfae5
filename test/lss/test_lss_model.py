"""LiftSplatShoot: shapes, stage separation, pooling equivalence, fixed-rig module, no ROS."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
import torch
from lss_testutil import rig_calibration

from lss_bev_ros.lss.config import LSSConfig
from lss_bev_ros.lss.model import CamEncode, LiftSplatShoot
from lss_bev_ros.lss.timing import STAGES, run_staged


def _randomise_bn(model: torch.nn.Module) -> None:
    """Non-trivial BatchNorm statistics/affine so outputs are not ~constant (zero-init resid.)."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=g))
            m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
            m.weight.data.copy_(0.5 + torch.rand(m.num_features, generator=g))


@pytest.fixture(scope="module")
def full_model() -> LiftSplatShoot:
    torch.manual_seed(0)
    model = LiftSplatShoot(LSSConfig()).eval()
    _randomise_bn(model)
    return model


@pytest.fixture(scope="module")
def full_inputs() -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(1)
    return (torch.randn(1, 6, 3, 128, 352, generator=g), *rig_calibration(LSSConfig()))


@pytest.fixture(scope="module")
def full_out(full_model: LiftSplatShoot, full_inputs) -> torch.Tensor:
    with torch.no_grad():
        return full_model(*full_inputs)


@pytest.fixture(scope="module")
def small_model() -> LiftSplatShoot:
    torch.manual_seed(0)
    model = LiftSplatShoot(LSSConfig.small()).eval()
    _randomise_bn(model)
    return model


@pytest.fixture(scope="module")
def small_inputs() -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(2)
    return (torch.randn(1, 6, 3, 64, 176, generator=g), *rig_calibration(LSSConfig.small()))


def test_forward_shape_6_cams_128x352(full_out: torch.Tensor) -> None:
    assert full_out.shape == (1, 1, 200, 200)
    assert torch.isfinite(full_out).all()
    assert full_out.std() > 0


def test_stages_shapes_and_staged_run_equals_forward(
    full_model: LiftSplatShoot, full_inputs, full_out: torch.Tensor
) -> None:
    imgs, *calib = full_inputs
    with torch.no_grad():
        geom = full_model.get_geometry(*calib)
        feats = full_model.get_cam_feats(imgs)
        bev = full_model.voxel_pooling(geom, feats)
        out = full_model.bev_encode(bev)
        staged, times = run_staged(full_model, full_inputs)
    assert geom.shape == (1, 6, 41, 8, 22, 3)
    assert feats.shape == (1, 6, 41, 8, 22, 64)
    assert feats.is_contiguous()
    assert bev.shape == (1, 64, 200, 200)
    assert list(times) == [*STAGES, "total"]
    assert all(v >= 0 for v in times.values())
    assert times["total"] >= max(times[s] for s in STAGES)
    assert torch.allclose(staged, full_out, atol=1e-5)
    assert torch.allclose(out, full_out, atol=1e-5)
    # the context features are weighted by a depth softmax: summing over D gives them back
    depth, _ = full_model.camencode.get_depth_feat(imgs[0, :1])
    assert depth.shape == (1, 41, 8, 22)
    assert torch.allclose(depth.sum(1), torch.ones(1, 8, 22), atol=1e-5)


def test_precomputed_and_cumsum_models_agree(
    full_model: LiftSplatShoot, full_inputs, full_out: torch.Tensor
) -> None:
    ref = LiftSplatShoot(full_model.cfg.replace(pooling="cumsum")).eval()
    ref.load_state_dict(full_model.state_dict())
    with torch.no_grad():
        b, times = run_staged(ref, full_inputs)
    assert list(times) == [*STAGES, "total"]
    assert torch.allclose(full_out, b, atol=1e-4, rtol=1e-4)


def test_forward_caches_geometry_per_calibration(small_model: LiftSplatShoot, small_inputs) -> None:
    imgs, *calib = small_inputs
    small_model.pooler.invalidate()
    n0 = small_model.pooler.num_builds
    with torch.no_grad():
        a, t1 = small_model.forward_timed(imgs, *calib)
        b = small_model(imgs, *[t.clone() for t in calib])
        assert small_model.pooler.num_builds == n0 + 1
        assert torch.equal(a, b)
        moved = [t.clone() for t in calib]
        moved[1][0, 0, 0] += 0.25
        c = small_model(imgs, *moved)
    assert small_model.pooler.num_builds == n0 + 2
    assert not torch.allclose(a, c)
    assert list(t1) == [*STAGES, "total"]


def test_fixed_rig_and_forward_from_geometry(small_model: LiftSplatShoot, small_inputs) -> None:
    imgs, *calib = small_inputs
    with torch.no_grad():
        direct = small_model(imgs, *calib)
        fixed = small_model.fixed_rig(*calib)
        assert "pooling.dst_idx" in dict(fixed.named_buffers())
        assert torch.allclose(fixed(imgs), direct, atol=1e-5)
        fixed_gc = small_model.fixed_rig(*calib, method="gather_cumsum")
        assert torch.allclose(fixed_gc(imgs), direct, atol=1e-4)
        geom = small_model.get_geometry(*calib)
        assert torch.allclose(small_model.forward_from_geometry(imgs, geom), direct, atol=1e-5)
    # weights are shared, not copied
    assert fixed.camencode is small_model.camencode


def test_batch_of_two_is_independent(small_model: LiftSplatShoot) -> None:
    g = torch.Generator().manual_seed(5)
    imgs = torch.randn(2, 2, 3, 64, 176, generator=g)
    calib = rig_calibration(small_model.cfg, ncams=2, batch=2)
    calib[1][1] += 0.3  # second sample: rig shifted
    with torch.no_grad():
        both = small_model(imgs, *calib)
        one = small_model(imgs[1:], *(t[1:] for t in calib))
    assert both.shape == (2, 1, 200, 200)
    assert torch.allclose(both[1:], one, atol=1e-5)


def test_small_config_forward_and_backward() -> None:
    cfg = LSSConfig.small()
    assert cfg.image.final_dim == (64, 176)
    assert cfg.depth_bins == 21
    model = LiftSplatShoot(cfg).train()
    imgs = torch.randn(1, 2, 3, 64, 176)
    out = model(imgs, *rig_calibration(cfg, ncams=2))
    assert out.shape == (1, 1, 200, 200)
    out.mean().backward()
    for p in (
        model.camencode.depthnet.weight,
        model.camencode.trunk._conv_stem.weight,
        model.bevencode.conv1.weight,
    ):
        assert p.grad is not None
        assert p.grad.abs().sum() > 0


def test_camencode_endpoints(full_model: LiftSplatShoot) -> None:
    enc = full_model.camencode
    assert isinstance(enc, CamEncode)
    with torch.no_grad():
        x = enc.get_eff_depth(torch.randn(1, 3, 128, 352))
    assert x.shape == (1, 512, 8, 22)
    assert enc._red4_idx == 10  # EfficientNet-B0: blocks 8-10 are the 112-channel 1/16 stage
    assert enc.trunk._blocks[enc._red4_idx]._project_conv.out_channels == 112


def test_constants_are_buffers_not_parameters(full_model: LiftSplatShoot) -> None:
    params = dict(full_model.named_parameters())
    buffers = dict(full_model.named_buffers())
    for name in ("frustum", "dx", "bx", "nx"):
        assert name in buffers
        assert name not in params
        assert name not in full_model.state_dict()
    assert full_model.nx.tolist() == [200, 200, 1]


def test_no_network_and_no_ros_imports() -> None:
    """Building the model never calls from_pretrained and importing lss never pulls in ROS."""
    code = (
        "import sys\n"
        "import efficientnet_pytorch\n"
        "def _boom(*a, **k):\n"
        "    raise RuntimeError('network download attempted')\n"
        "efficientnet_pytorch.EfficientNet.from_pretrained = _boom\n"
        "import torchvision.models.resnet as r\n"
        "r.load_state_dict_from_url = _boom\n"
        "from lss_bev_ros.lss import checkpoint, model, pooling, preprocess, timing, geometry\n"
        "model.LiftSplatShoot()\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('rclpy', 'rosidl_runtime_py')\n"
        "       or m.endswith('.msg') or m.startswith('lss_bev_ros.nodes')]\n"
        "assert not bad, bad\n"
        "print('OK')\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert "OK" in res.stdout


def _reference_eff_depth(enc: CamEncode, x: torch.Tensor) -> torch.Tensor:
    """The reference get_eff_depth: endpoints found by comparing feature-map sizes."""
    t = enc.trunk
    endpoints = {}
    x = t._swish(t._bn0(t._conv_stem(x)))
    prev_x = x
    for idx, block in enumerate(t._blocks):
        rate = t._global_params.drop_connect_rate
        if rate:
            rate *= float(idx) / len(t._blocks)
        x = block(x, drop_connect_rate=rate)
        if prev_x.size(2) > x.size(2):
            endpoints[f"reduction_{len(endpoints) + 1}"] = prev_x
        prev_x = x
    endpoints[f"reduction_{len(endpoints) + 1}"] = x
    x = enc.up1(endpoints["reduction_5"], endpoints["reduction_4"])
    if enc.downsample <= 8:  # ours, not in the reference: one more Up with reduction_3
        assert endpoints["reduction_3"].shape[1] == 40
        x = enc.up2(x, endpoints["reduction_3"])
    if enc.downsample == 4:  # and one more with reduction_2
        assert endpoints["reduction_2"].shape[1] == 24
        x = enc.up3(x, endpoints["reduction_2"])
    return x


def test_camencode_matches_reference_formulation(small_model: LiftSplatShoot) -> None:
    enc = small_model.camencode
    D, C = enc.D, enc.C
    img = torch.randn(2, 3, 64, 176)
    with torch.no_grad():
        x = _reference_eff_depth(enc, img)
        assert torch.allclose(enc.get_eff_depth(img), x, atol=1e-6)
        x = enc.depthnet(x)
        depth = x[:, :D].softmax(dim=1)
        new_x = depth.unsqueeze(1) * x[:, D : D + C].unsqueeze(2)  # reference: BN x C x D x h x w
        feats = enc(img)
    assert feats.shape == (2, D, 4, 11, C)
    assert torch.allclose(feats, new_x.permute(0, 2, 3, 4, 1), atol=1e-6)


def _check_strided_camencode(cfg: LSSConfig, feat_hw: tuple[int, int]) -> LiftSplatShoot:
    """``cfg``'s camera encoder equals the reference endpoint formulation (plus our fusions) and
    lifts ``feat_hw`` features per camera at 64 x 176; returns the (eval) model."""
    torch.manual_seed(0)
    model = LiftSplatShoot(cfg).eval()
    enc = model.camencode
    img = torch.randn(2, 3, 64, 176)
    with torch.no_grad():
        assert torch.allclose(enc.get_eff_depth(img), _reference_eff_depth(enc, img), atol=1e-6)
        feats = enc(img)
    assert cfg.feature_size == feat_hw
    assert feats.shape == (2, cfg.depth_bins, *feat_hw, cfg.cam_channels)
    assert model.frustum.shape[:3] == (cfg.depth_bins, *feat_hw)
    return model


def test_stride8_camencode_lifts_twice_the_rows_and_columns() -> None:
    """downsample 8: reduction_4's fusion up x2 ++ reduction_3, 8 x 22 features at 64 x 176."""
    enc = _check_strided_camencode(LSSConfig.small(downsample=8), (8, 22)).camencode
    rig = LSSConfig.small()  # stride 16 keeps the reference layout: no up2
    assert not hasattr(LiftSplatShoot(rig).camencode, "up2")
    assert not hasattr(enc, "up3")


def test_stride4_camencode_lifts_four_times_the_rows_and_columns() -> None:
    """downsample 4: the stride-8 fusion up x2 ++ reduction_2, 16 x 44 features at 64 x 176."""
    cfg = LSSConfig.small_cpu(downsample=4)
    model = _check_strided_camencode(cfg, (16, 44))
    enc = model.camencode
    img = torch.randn(1, 2, 3, 64, 176)
    out = model.train()(img, *rig_calibration(cfg, ncams=2))
    assert out.shape == (1, 1, 200, 200)
    out.mean().backward()  # the new fusion is on the gradient path
    assert enc.up3.conv[0].weight.grad is not None
    assert enc.up3.conv[0].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="divisible by downsample"):
        cfg.replace(image=dataclasses.replace(cfg.image, final_dim=(66, 176)))
