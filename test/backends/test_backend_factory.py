"""Backend factory, clear errors for missing runtimes / bad options / bad inputs, calibration
caching. Uses the small config and the real model; no mocks."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from backend_testlib import calibration_tensors, random_images

from lss_bev_ros.backends import (
    BACKEND_NAMES,
    BackendOptionError,
    BackendUnavailableError,
    backend_availability,
    create_backend,
    parse_backend_options,
)
from lss_bev_ros.lss.config import LSSConfig
from lss_bev_ros.lss.model import LiftSplatShoot

HAS_TRT = importlib.util.find_spec("tensorrt") is not None
HAS_CUDA = torch.cuda.is_available()


@pytest.fixture(scope="module")
def small():
    cfg = LSSConfig.small()
    torch.manual_seed(0)
    return LiftSplatShoot(cfg).eval(), cfg


def test_names_the_nodes_use_are_all_known():
    assert set(BACKEND_NAMES) == {"torch", "torch_compile", "onnxruntime", "tensorrt",
                                  "cuda_graphs"}
    avail = backend_availability("cpu")
    assert set(avail) == set(BACKEND_NAMES)
    assert avail["torch"] is None and avail["onnxruntime"] is None
    assert avail["cuda_graphs"] is not None  # GPU only


def test_unknown_backend_is_a_value_error(small):
    model, _ = small
    with pytest.raises(ValueError, match=r"unknown backend 'tensor_rt'.*'tensorrt'"):
        create_backend("tensor_rt", model)


@pytest.mark.skipif(HAS_TRT, reason="checks the message shown where TensorRT is missing")
def test_missing_tensorrt_names_the_package(small):
    model, _ = small
    with pytest.raises(BackendUnavailableError) as err:
        create_backend("tensorrt", model, device="cuda", precision="fp16")
    assert str(err.value) == (
        "tensorrt backend needs the TensorRT Python package (JetPack: apt install "
        "python3-libnvinfer; x86: pip install tensorrt)"
    )
    assert "TensorRT" in backend_availability("cuda")["tensorrt"] or not HAS_CUDA


@pytest.mark.skipif(HAS_CUDA, reason="checks the CPU-only error path")
def test_gpu_only_backends_refuse_cpu_machines(small):
    model, _ = small
    with pytest.raises(BackendUnavailableError, match="cuda_graphs backend needs a CUDA GPU"):
        create_backend("cuda_graphs", model, device="cuda")
    with pytest.raises(BackendUnavailableError, match="CUDA GPU"):
        create_backend("torch", model, device="cuda")
    with pytest.raises(BackendUnavailableError, match="CUDA GPU"):
        create_backend("onnxruntime", model, device="cuda")
    reasons = backend_availability("cuda")
    assert all(reasons[name] for name in BACKEND_NAMES), reasons


def test_bad_options_and_precisions_are_clear(small):
    model, _ = small
    with pytest.raises(BackendOptionError, match=r"precision \['fp32', 'bf16'\] on cpu"):
        create_backend("torch", model, precision="fp16")
    with pytest.raises(BackendOptionError, match="precision must be one of"):
        create_backend("torch", model, precision="fp8")
    with pytest.raises(BackendOptionError, match="reduced_stages must be a non-empty subset"):
        create_backend("torch", model, precision="bf16", reduced_stages=["voxel_pooling"])
    with pytest.raises(BackendOptionError, match="jit must be one of"):
        create_backend("torch", model, jit="script")
    with pytest.raises(BackendOptionError,
                       match=r"torch backend has no option\(s\) \['pooling_op'\]"):
        create_backend("torch", model, pooling_op="scatter_nd")
    with pytest.raises(BackendOptionError, match=r"only correct with threads=1 \(got 2\)"):
        create_backend("onnxruntime", model, pooling_op="scatter_nd", threads=2)
    with pytest.raises(BackendOptionError, match=r"precision \['fp32'\] on cpu, not 'fp16'"):
        create_backend("onnxruntime", model, precision="fp16")
    with pytest.raises(BackendOptionError, match="device must be 'cpu' or 'cuda'"):
        create_backend("torch", model, device="meta")
    with pytest.raises(BackendUnavailableError, match="onnxruntime-gpu"):
        create_backend("onnxruntime", model, providers=["CUDAExecutionProvider"])


def test_backend_options_parse_from_one_string():
    """The form bev_node's ``backend_options`` parameter and ``lss-bev-bag eval
    --backend-options`` carry."""
    assert parse_backend_options("") == {} and parse_backend_options(" , ") == {}
    assert parse_backend_options(
        "mode=stages, bev_encoder=torch_bf16, threads=1, channels_last=True, x=0.5, "
        "reduced_stages=camera_encoder|bev_encoder") == {
        "mode": "stages", "bev_encoder": "torch_bf16", "threads": 1, "channels_last": True,
        "x": 0.5, "reduced_stages": ("camera_encoder", "bev_encoder")}
    for bad, why in (("mode", "not key=value"), ("=stages", "not key=value"),
                     ("mode=", "not key=value"), ("a b=1", "not key=value"),
                     ("mode=a, mode=b", "given twice")):
        with pytest.raises(BackendOptionError, match=why):
            parse_backend_options(bad)


def test_calibration_is_cached_and_inputs_are_checked(small):
    model, cfg = small
    backend = create_backend("torch", model)
    imgs = random_images(cfg)
    with pytest.raises(RuntimeError, match="call set_calibration"):
        backend.infer(imgs)
    calib = calibration_tensors(cfg)
    assert backend.set_calibration(*calib) is True
    assert backend.set_calibration(*(t.clone() for t in calib)) is False  # same values
    assert backend.num_calibrations == 1
    logits, stages = backend.infer(imgs)
    assert logits.shape == (1, 1, 200, 200) and logits.dtype == torch.float32
    assert logits.device.type == "cpu"
    assert list(stages) == ["geometry", "camera_encoder", "voxel_pooling", "bev_encoder"]
    assert all(v >= 0 for v in stages.values())
    _, stages2 = backend.infer(imgs)
    assert stages2["geometry"] == 0.0  # nothing recomputed between frames
    moved = list(calib)
    moved[1] = moved[1] + torch.tensor([0.0, 0.0, 0.1])  # cameras 10 cm higher
    assert backend.set_calibration(*moved) is True
    assert backend.num_calibrations == 2
    # wrong camera count / size / dtype / calibration shapes: clear errors
    with pytest.raises(ValueError, match="5 camera images but the calibration has 6"):
        backend.infer(imgs[:, :5])
    with pytest.raises(ValueError, match="the model expects 64 x 176"):
        backend.infer(torch.zeros(1, 6, 3, 128, 352))
    with pytest.raises(ValueError, match=r"1 x N x 3 x H x W"):
        backend.infer(imgs[0])
    with pytest.raises(TypeError, match="must be float"):
        backend.infer(imgs.to(torch.uint8))
    with pytest.raises(ValueError, match="trans must be 1 x 6 x 3"):
        backend.set_calibration(calib[0], calib[1][:, :, :2], *calib[2:])
    bad = calib[2].clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        backend.set_calibration(calib[0], calib[1], bad, *calib[3:])
    # the last good calibration is still in use after the refused ones
    assert backend.infer(imgs)[0].shape == (1, 1, 200, 200)


def test_names_are_descriptive(small):
    model, _ = small
    assert create_backend("torch", model).name == "torch(cpu)"
    assert create_backend("torch", model, precision="bf16", channels_last=True).name == (
        "torch(cpu, bf16, channels_last)")
    ort = create_backend("onnxruntime", model)
    assert ort.name == "onnxruntime(CPUExecutionProvider)"
    assert create_backend("torch_compile", model).name == "torch_compile(cpu, default)"
