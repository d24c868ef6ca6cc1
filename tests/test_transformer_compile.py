"""The shipped INT8 transformer: QONNX export, HW-layer graph, exact CPU engine."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from qonnx.core.modelwrapper import ModelWrapper

from netfabric import flow
from netfabric.hls.errors import CompileError
from netfabric.hls.frontend import CompileConfig
from netfabric.hls.reference import reference_run
from netfabric.hls.transformer import (
    compile_transformer,
    compile_transformer_cli,
    is_transformer_checkpoint,
)
from netfabric.host import cpu_fused
from netfabric.host.cpu_engine import CpuEngine
from netfabric.host.hwgraph import load_hwgraph
from netfabric.models.int_softmax import IntSoftmaxParams, build_lut, int_softmax_ref
from netfabric.models.train_transformer import load_transformer
from netfabric.models.transformer import predict_logits
from netfabric.models.transformer_int import export_integer_params, integer_forward
from netfabric.ops.kernels import int_softmax_lut

TRANSFORMER = flow.PRETRAINED / "transformer_int8.pt"
# intermediate tensors compared between the engine, FINN's python execution and integer_forward
EXTRA = ["x1", "b0_ctx_segments", "b0_x_mid", "b1_qkv_segments", "b1_ctx_segments",
         "final_tokens", "pooled"]
BLOCK = ["DuplicateStreams", "Thresholding", "MVAU", "SegmentPad", "SegmentAttention",
         "SegmentUnpad", "MVAU", "ElementwiseAdd", "Thresholding", "DuplicateStreams",
         "Thresholding", "MVAU", "MVAU", "ElementwiseAdd", "Thresholding"]
HW_DOMAINS = {"finn.custom_op.fpgadataflow.hls", "finn.custom_op.fpgadataflow.rtl",
              "netfabric.hls.custom_ops"}


@pytest.fixture(scope="module")
def tf_graph(tmp_path_factory):
    torch.set_num_threads(1)
    return compile_transformer_cli(TRANSFORMER, tmp_path_factory.mktemp("transformer"))


@pytest.fixture(scope="module")
def tf_engine(tf_graph):
    return CpuEngine(tf_graph, extra_outputs=EXTRA)


@pytest.fixture(scope="module")
def qat_model():
    return load_transformer(TRANSFORMER)


@pytest.fixture(scope="module")
def int_params(qat_model):
    return export_integer_params(qat_model)


def test_graph_holds_only_integer_hw_layers(tf_graph):
    model = ModelWrapper(str(tf_graph))
    assert {n.domain for n in model.graph.node} <= HW_DOMAINS
    g = load_hwgraph(tf_graph)
    assert [n.op_type for n in g.nodes] == (["MVAU", "ElementwiseAdd", "Thresholding"]
                                            + BLOCK * 2
                                            + ["Thresholding", "GlobalAccPool", "MVAU"])
    inits = {i.name for i in model.graph.initializer}
    for name in model.get_all_tensor_names():
        if name in inits:
            value = model.get_initializer(name)
            assert np.array_equal(value, np.round(value)), name
        else:
            assert model.get_tensor_datatype(name).is_integer(), name
    # a segment is the streaming unit around attention
    attn = [n for n in g.nodes if n.op_type == "SegmentAttention"]
    assert [g.shapes[n.inputs[0]] for n in attn] == [[1, 4, 14, 192]] * 2
    assert [g.shapes[n.outputs[0]] for n in attn] == [[1, 4, 14, 64]] * 2
    assert [n.attr("Shift") for n in attn] == [0, 7]
    assert g.input_shape == [1, 49, 1, 16] and g.dtypes[g.input_name].name == "UINT8"
    assert json.loads(g.metadata["host_input_shape"]) == [1, 1, 28, 28]
    assert g.host_steps("host_post") == [{"op": "Reshape", "shape": [1, 10]}]
    assert g.output_scale and g.output_scale > 0
    est = json.loads((tf_graph.parent / "estimates.json").read_text())
    assert {layer["name"] for layer in est["layers"]} == {n.name for n in g.nodes}
    assert est["bottleneck_cycles"] > 0


def test_cpu_engine_matches_python_reference(tf_graph, tf_engine, mnist_test):
    """Bit for bit against FINN's python execution (generic ops + netfabric ops), output and
    intermediate tensors (attention context, residual stream, pooled sum), 20 images."""
    x = mnist_test[0][:20, None]
    outs = tf_engine.run_all(x)
    refs = reference_run(ModelWrapper(str(tf_graph)), tf_engine.check_input(x).astype(np.float32),
                         EXTRA)
    assert outs[0].dtype == np.int64 and outs[0].shape == (20, 10)
    for name, out, ref in zip(["logits", *EXTRA], outs, refs, strict=True):
        assert np.array_equal(out.reshape(20, -1), ref.reshape(20, -1).astype(np.int64)), name


def test_cpu_engine_equals_integer_forward_and_qat_on_500_images(tf_engine, int_params, qat_model,
                                                                 mnist_test):
    x, y = mnist_test[0][:500], mnist_test[1][:500]
    logits, x1, *_, final, pooled = tf_engine.run_all(x[:, None])
    trace: dict = {}
    ref = integer_forward(int_params, x, trace)
    assert np.array_equal(logits, ref)
    assert np.array_equal(x1.reshape(trace["res1"].shape), trace["res1"])
    assert np.array_equal(final.reshape(trace["final"].shape), trace["final"])
    assert np.array_equal(pooled.reshape(trace["pooled"].shape), trace["pooled"])
    qat = predict_logits(qat_model, x)
    assert np.array_equal(logits.argmax(1), qat.argmax(1))
    assert (logits.argmax(1) == y).mean() > 0.95


def test_cpu_engine_without_numba_kernels_gives_the_same_integers(tf_graph, tf_engine,
                                                                 mnist_test, monkeypatch):
    """The numpy passes (a machine without numba) and the one-pass kernels (host/cpu_fused.py,
    which the tests above check against FINN's execution and integer_forward) agree on the
    output and every intermediate tensor, at batch 1 (the few-rows plan) and 100."""
    assert cpu_fused.enabled()
    monkeypatch.setattr(cpu_fused, "USE", False)
    plain = CpuEngine(tf_graph, extra_outputs=EXTRA)
    for n in (1, 100):
        x = mnist_test[0][:n, None]
        for name, a, b in zip(["logits", *EXTRA], plain.run_all(x), tf_engine.run_all(x),
                              strict=True):
            assert np.array_equal(a, b), (n, name)


@pytest.mark.slow
def test_cpu_engine_equals_integer_forward_and_qat_on_10k_images(tf_engine, int_params, qat_model,
                                                                 mnist_test):
    x = mnist_test[0]
    logits = np.concatenate([tf_engine.run(x[i : i + 500, None]) for i in range(0, len(x), 500)])
    ref = np.concatenate([integer_forward(int_params, x[i : i + 500])
                          for i in range(0, len(x), 500)])
    assert np.array_equal(logits, ref)
    assert np.array_equal(logits.argmax(1), predict_logits(qat_model, x).argmax(1))


@pytest.mark.parametrize(
    "bad,match",
    [
        (np.zeros((2, 1, 28, 27), np.uint8), "shape"),
        (np.zeros((5, 28, 28), np.uint8), "shape"),
        (np.full((2, 1, 28, 28), 0.5), "integers"),
        (np.full((2, 1, 28, 28), 256), "UINT8"),
    ],
)
def test_bad_input_is_rejected(tf_engine, bad, match):
    with pytest.raises(ValueError, match=match):
        tf_engine.run(bad)


def test_qonnx_export_loads_and_runs(tf_graph, qat_model, mnist_test):
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.custom_op.registry import getCustomOp

    model = ModelWrapper(str(tf_graph.parent / "model.qonnx.onnx"))
    assert model.get_tensor_datatype(model.graph.input[0].name).name == "UINT8"
    softmax = [n for n in model.graph.node if n.op_type == "IntSoftmax"]
    assert len(softmax) == 2 and {n.domain for n in softmax} == {"netfabric.hls.custom_ops"}
    op = getCustomOp(softmax[0])
    params = qat_model.cfg.softmax_params(op.get_nodeattr("score_scale"))
    assert op.get_nodeattr("lut") == build_lut(params).tolist()
    x = mnist_test[0][:2, None].astype(np.float32)
    got = np.concatenate([execute_onnx(model, {model.graph.input[0].name: xi[None]})
                          [model.graph.output[0].name] for xi in x])
    with torch.no_grad():
        want = qat_model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_qonnx_export_runs_at_batch_7(tf_graph, qat_model, mnist_test):
    """No batch size is baked into the graph: every Reshape keeps -1 for the batch, so qonnx's
    ChangeBatchSize gives a graph that runs 7 images at once, equal to the QAT model."""
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.change_batchsize import ChangeBatchSize
    from qonnx.transformation.infer_shapes import InferShapes

    model = ModelWrapper(str(tf_graph.parent / "model.qonnx.onnx"))
    assert model.get_tensor_shape(model.graph.input[0].name)[0] == 1
    for node in model.get_nodes_by_op_type("Reshape"):
        shape = model.get_initializer(node.input[1])
        assert shape is not None and shape[0] == -1, (node.name, shape)
    model = model.transform(ChangeBatchSize(7)).transform(InferShapes())
    x = mnist_test[0][100:107, None].astype(np.float32)
    got = execute_onnx(model, {model.graph.input[0].name: x})[model.graph.output[0].name]
    with torch.no_grad():
        want = qat_model(torch.from_numpy(x)).numpy()
    assert got.shape == (7, 10)
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_int_softmax_with_integer_lut_equals_reference():
    rng = np.random.default_rng(0)
    params = IntSoftmaxParams(score_scale=0.14)
    scores = rng.integers(-128, 128, size=(200, 14))
    mask = rng.random((200, 14)) > 0.3
    mask[0] = False  # a fully masked row gives zeros
    got = int_softmax_lut(scores, mask, build_lut(params), params.recip_bits,
                          params.out_frac_bits, params.out_bits, params.qmin)
    assert np.array_equal(got, int_softmax_ref(scores, mask, params))


def test_folding_target_reaches_netfabric_layers(qat_model, tmp_path):
    graph = compile_transformer(qat_model, tmp_path,
                                CompileConfig(target_fps=2000, label_select=False))
    est = json.loads((tmp_path / "estimates.json").read_text())
    assert est["bottleneck_cycles"] <= 100e6 / 2000
    attn = [n for n in load_hwgraph(graph).nodes if n.op_type == "SegmentAttention"]
    assert all(n.attr("PE") > 1 for n in attn)


def test_compile_errors_name_the_problem(tmp_path):
    assert is_transformer_checkpoint(TRANSFORMER)
    assert not is_transformer_checkpoint(flow.DEFAULT_CHECKPOINT)
    with pytest.raises(CompileError, match="does not exist"):
        compile_transformer(tmp_path / "missing.pt", tmp_path)
    with pytest.raises(CompileError, match="not a netfabric transformer"):
        compile_transformer(flow.DEFAULT_CHECKPOINT, tmp_path)
    with pytest.raises(CompileError, match="QAT transformer"):
        compile_transformer(load_transformer(TRANSFORMER, quant=False), tmp_path)
