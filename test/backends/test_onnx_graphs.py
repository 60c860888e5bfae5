"""The exported graphs, in particular the one the TensorRT backend builds its engine from.

TensorRT itself cannot be installed here, so this checks what can be checked without it: the
graph passes the full ONNX checker, uses only operators the TensorRT ONNX parser supports (no
ScatterND / ScatterElements reductions, no data-dependent control flow), has the input names,
dtypes and dynamic axes the backend's optimisation profile sets, every non-encoder node is
pooling glue (the precision-pinning rule), and it matches torch in onnxruntime.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from backend_testlib import calibration_tensors, random_images, sharpened_model

from lss_bev_ros.backends.engine_cache import EngineCache
from lss_bev_ros.backends.onnx_export import check_onnx, export_graph
from lss_bev_ros.backends.static_graph import pooling_indices
from lss_bev_ros.backends.tensorrt_backend import (
    ENCODER_PREFIXES,
    engine_key,
    profile_shapes,
)
from lss_bev_ros.lss.config import LSSConfig
from lss_bev_ros.lss.model import LiftSplatShoot

# Operators of the TensorRT ONNX parser (onnx-tensorrt docs/operators.md, TensorRT 8.6 / 10.x)
# that the LSS graph may contain.
TRT_OPS = {
    "Add", "Cast", "CastLike", "Concat", "Constant", "ConstantOfShape", "Conv", "CumSum", "Div",
    "Expand", "Gather", "GlobalAveragePool", "Identity", "MatMul", "Mul", "Pad", "Relu",
    "Reshape", "Resize", "Shape", "Sigmoid", "Slice", "Softmax", "Squeeze", "Sub", "Transpose",
    "Unsqueeze",
}
POOLING_GLUE_OPS = {"Gather", "CumSum", "Sub", "Concat", "Reshape", "Transpose", "Slice",
                    "Shape", "Constant", "ConstantOfShape", "Unsqueeze", "Cast", "Mul", "Expand"}


@pytest.fixture(scope="module")
def small():
    cfg = LSSConfig.small()
    model = sharpened_model(cfg)
    calib = calibration_tensors(cfg)
    with torch.no_grad():
        geom = model.get_geometry(*calib)
    data = export_graph(model, "whole", geom=geom, pooling_op="gather_cumsum")
    return model, cfg, calib, geom, data


def test_tensorrt_graph_is_valid_and_uses_supported_ops_only(small):
    _, _, _, _, data = small
    proto = check_onnx(data)
    assert proto.opset_import[0].version == 18
    ops = {n.op_type for n in proto.graph.node}
    assert ops <= TRT_OPS, f"operators TensorRT may not parse: {sorted(ops - TRT_OPS)}"
    assert not ops & {"ScatterND", "ScatterElements", "NonZero", "Loop", "If", "TopK"}


def test_inputs_outputs_and_dynamic_axes(small):
    _, cfg, _, _, data = small
    graph = onnx.load_from_string(data).graph
    ins = {i.name: i.type.tensor_type for i in graph.input}
    assert list(ins) == ["imgs", "src_index", "seg_end", "cell_segment"]
    assert ins["imgs"].elem_type == onnx.TensorProto.FLOAT
    for name in ("src_index", "seg_end", "cell_segment"):
        assert ins[name].elem_type == onnx.TensorProto.INT32
    dims = lambda t: [d.dim_param or d.dim_value for d in t.shape.dim]  # noqa: E731
    H, W = cfg.image.final_dim
    assert dims(ins["imgs"]) == [1, "num_cams", 3, H, W]
    assert dims(ins["src_index"]) == ["num_kept"]
    assert dims(ins["seg_end"]) == ["num_segments"]
    assert dims(ins["cell_segment"]) == [200 * 200]
    assert [o.name for o in graph.output] == ["logits"]


def test_non_encoder_nodes_are_pooling_glue(small):
    """The TensorRT builder pins every layer outside ``/camencode/`` and ``/bevencode/`` to
    float32 (the prefix sum must not run in fp16). That rule is only right if those nodes are
    exactly the pooling: check it on the real graph."""
    _, _, _, _, data = small
    nodes = onnx.load_from_string(data).graph.node
    encoder = [n for n in nodes if n.name.startswith(ENCODER_PREFIXES)]
    glue = [n for n in nodes if not n.name.startswith(ENCODER_PREFIXES)]
    assert len(encoder) > 100
    assert {n.op_type for n in glue} <= POOLING_GLUE_OPS
    assert sum(n.op_type == "CumSum" for n in glue) == 1
    assert not any(n.op_type == "Conv" for n in glue)


def test_profile_covers_real_rig_indices(small):
    _, cfg, _, geom, _ = small
    idx = pooling_indices(geom, cfg, "gather_cumsum")
    prof = profile_shapes(cfg, num_cams=6)
    for name, t in idx.items():
        mn, _, mx = prof[name]
        assert all(a <= b <= c for a, b, c in zip(mn, t.shape, mx, strict=True)), name
    assert prof["imgs"][0] == (1, 6, 3, *cfg.image.final_dim)


def test_tensorrt_graph_matches_torch_in_onnxruntime(small):
    model, cfg, calib, geom, data = small
    imgs = random_images(cfg, seed=3)
    with torch.no_grad():
        ref = model(imgs, *calib).numpy()
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    feeds = {"imgs": imgs.numpy(),
             **{k: v.numpy() for k, v in pooling_indices(geom, cfg, "gather_cumsum").items()}}
    out = sess.run(None, feeds)[0]
    assert np.abs(out - ref).max() <= 1e-2
    assert np.mean((out >= 0) != (ref >= 0)) <= 5e-4


def test_engine_key_follows_graph_precision_and_cameras(small, tmp_path):
    model, *_, data = small
    path = tmp_path / "whole.onnx"
    path.write_bytes(data)
    k1 = engine_key(model, path, 6, "fp16", "10.3.0", "Orin sm87")
    assert k1.digest == engine_key(model, path, 6, "fp16", "10.3.0", "Orin sm87").digest
    assert k1.shapes["src_index@max"] == (6 * 21 * 4 * 11,)
    others = [
        engine_key(model, path, 5, "fp16", "10.3.0", "Orin sm87"),
        engine_key(model, path, 6, "int8", "10.3.0", "Orin sm87"),
        engine_key(model, path, 6, "fp16", "10.4.0", "Orin sm87"),
        engine_key(model, path, 6, "fp16", "10.3.0", "H100 sm90"),
    ]
    assert len({k.digest for k in others} | {k1.digest}) == 5
    path.write_bytes(data + b"\0")  # a different graph file
    assert engine_key(model, path, 6, "fp16", "10.3.0", "Orin sm87").digest != k1.digest
    cache = EngineCache(tmp_path / "engines")
    assert cache.resolve(k1)[0] is None


def test_stage_and_baked_graphs_match_torch(small):
    model, cfg, calib, geom, _ = small
    imgs = random_images(cfg, seed=4)
    with torch.no_grad():
        feats = model.get_cam_feats(imgs)
        bev = model.voxel_pooling(geom, feats)
        ref = model.bev_encode(bev)

    def run(graph, feeds):
        data = export_graph(model, graph, calib=calib)
        check_onnx(data)
        return ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, feeds)[0]

    assert np.abs(run("camera_encoder", {"imgs": imgs.numpy()}) - feats.numpy()).max() < 1e-3
    assert np.abs(run("bev_encoder", {"bev": bev.numpy()}) - ref.numpy()).max() < 1e-2
    baked = run("baked", {"imgs": imgs.numpy()})
    assert np.abs(baked - ref.numpy()).max() < 1e-2


@pytest.mark.slow
def test_full_config_whole_graph_matches_torch():
    """The deployment configuration (6 x 128 x 352, 41 depth bins), as TensorRT would get it."""
    cfg = LSSConfig()
    torch.manual_seed(0)
    model = LiftSplatShoot(cfg).eval()
    calib = calibration_tensors(cfg)
    imgs = random_images(cfg, seed=5)
    with torch.no_grad():
        geom = model.get_geometry(*calib)
        ref = model(imgs, *calib).numpy()
    data = export_graph(model, "whole", geom=geom)
    ops = {n.op_type for n in check_onnx(data).graph.node}
    assert ops <= TRT_OPS
    idx = pooling_indices(geom, cfg, "gather_cumsum")
    prof = profile_shapes(cfg, 6)
    assert idx["src_index"].shape[0] <= prof["src_index"][2][0] == 6 * 41 * 8 * 22
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    out = sess.run(None, {"imgs": imgs.numpy(), **{k: v.numpy() for k, v in idx.items()}})[0]
    assert np.abs(out - ref).max() <= 1e-3 * max(1.0, float(np.abs(ref).max()))


def test_export_refuses_bad_requests(small):
    model, _, _, geom, _ = small
    with pytest.raises(ValueError, match="opset must be >= 16"):
        export_graph(model, "whole", geom=geom, opset=15)
    with pytest.raises(ValueError, match="graph must be one of"):
        export_graph(model, "everything", geom=geom)
    with pytest.raises(ValueError, match="needs an example geometry"):
        export_graph(model, "whole")
    with pytest.raises(ValueError, match="needs the calibration"):
        export_graph(model, "baked")
    with pytest.raises(ValueError, match="pooling_op must be one of"):
        pooling_indices(geom, model.cfg, "index_put")
