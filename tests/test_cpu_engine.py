import numpy as np
import pytest
import torch
from qonnx.core.modelwrapper import ModelWrapper

from netfabric import flow
from netfabric.hls.reference import reference_run
from netfabric.host.cpu_engine import CpuEngine, two_level_tables
from netfabric.host.hwgraph import load_hwgraph
from netfabric.models.train import load_checkpoint, model_from_checkpoint


def test_mlp_is_bit_exact_on_1000_mnist_images(mlp_logits_graph, mnist_test):
    """Integer logits identical to FINN's python execution; accuracy equal to the QAT model's."""
    x, y = mnist_test
    x, y = x[:1000, None], y[:1000]
    engine = CpuEngine(mlp_logits_graph)
    logits = engine.run(x)
    ref = reference_run(
        ModelWrapper(str(mlp_logits_graph)), engine.check_input(x).astype(np.float32)
    )[0]
    assert logits.dtype == np.int64
    assert np.array_equal(logits, ref.astype(np.int64))

    qat = model_from_checkpoint(load_checkpoint(flow.DEFAULT_CHECKPOINT))
    with torch.no_grad():
        qat_logits = qat(torch.from_numpy(x.astype(np.float32))).numpy()
    assert (logits.argmax(1) == y).mean() == (qat_logits.argmax(1) == y).mean()
    # the integer logits are the QAT logits divided by the output scale
    scale = load_hwgraph(mlp_logits_graph).output_scale
    np.testing.assert_allclose(logits * scale, qat_logits, rtol=1e-4, atol=1e-4)


def test_label_select_graph_matches_reference(mlp_graph, mnist_test):
    x = mnist_test[0][:100, None]
    g = load_hwgraph(mlp_graph)
    logits_name = g.nodes[-1].inputs[0]
    engine = CpuEngine(mlp_graph, extra_outputs=[logits_name])
    labels, logits = engine.run_all(x)
    ref_labels, ref_logits = reference_run(
        ModelWrapper(str(mlp_graph)), engine.check_input(x).astype(np.float32), [logits_name]
    )
    assert np.array_equal(labels.reshape(-1), ref_labels.reshape(-1))
    assert np.array_equal(logits, ref_logits.astype(np.int64))


def test_cnn_is_bit_exact(tmp_path, mnist_test, compile_helper):
    from netfabric.models.export import export_qonnx
    from netfabric.models.zoo import ModelConfig, build_model

    model = build_model(ModelConfig(arch="cnn", conv_channels=[4, 8, 8, 8], fc_hidden=16)).eval()
    with torch.no_grad():
        model(torch.rand(16, 1, 28, 28) * 255)
    path = export_qonnx(model, (1, 28, 28), tmp_path / "cnn.onnx")
    graph = compile_helper(path, tmp_path / "hw", label_select=False)
    x = mnist_test[0][:30, None]
    engine = CpuEngine(graph)
    out = engine.run(x)
    ref = reference_run(ModelWrapper(str(graph)), engine.check_input(x).astype(np.float32))[0]
    assert np.array_equal(out, ref.astype(np.int64))


@pytest.mark.parametrize("n", [1, 3, 15, 200, 255])
def test_two_level_threshold_count_equals_direct_count(n):
    rng = np.random.default_rng(n)
    thr = np.sort(rng.integers(-500, 500, size=(6, n)), axis=1)
    coarse, fine, g = two_level_tables(thr, pad_value=10_000)
    acc = rng.integers(-600, 600, size=(1000, 6))
    bucket = (acc[..., None] >= coarse).sum(-1)
    within = (acc[..., None] >= fine[np.arange(6), bucket]).sum(-1)
    assert np.array_equal(bucket * g + within, (acc[..., None] >= thr).sum(-1))


BAD_INPUTS = [
    (np.zeros((2, 1, 28, 27), np.uint8), "shape"),
    (np.zeros((1, 28, 27), np.uint8), "shape"),
    (np.full((2, 1, 28, 28), 0.5), "integers"),
    (np.full((2, 1, 28, 28), 256), "UINT8"),
    (np.full((2, 1, 28, 28), -1), "UINT8"),
]


@pytest.mark.parametrize("bad,match", BAD_INPUTS)
def test_bad_input_is_rejected(mlp_graph, bad, match):
    with pytest.raises(ValueError, match=match):
        CpuEngine(mlp_graph).run(bad)


@pytest.mark.parametrize("bad,match", BAD_INPUTS)
def test_bad_input_is_rejected_by_the_int8_chain(mlp_logits_graph, bad, match):
    """``run``'s direct path to the int8 chain takes only batches it need not check."""
    engine = CpuEngine(mlp_logits_graph)
    assert engine.mode == "int8"
    with pytest.raises(ValueError, match=match):
        engine.run(bad)


def test_int8_chain_takes_every_valid_batch_layout(mlp_logits_graph, mnist_test):
    """The direct path (uint8 batches in the model's shape, strided too) and the checked one
    (no batch axis, wider or float dtypes holding integers) give the plan's integers."""
    x = mnist_test[0][:40, None]
    engine = CpuEngine(mlp_logits_graph)
    want = CpuEngine(mlp_logits_graph, mode="plan").run(x)
    assert np.array_equal(engine.run(x), want)
    assert np.array_equal(engine.run(x[::3]), want[::3])
    assert np.array_equal(engine.run(x[5]), want[5:6])
    for dtype in (np.int32, np.int64, np.float32):
        assert np.array_equal(engine.run(x.astype(dtype)), want)
    assert np.array_equal(engine.run_all(x)[0], want)


def test_corrupt_graph_is_reported(tmp_path):
    from netfabric.host.hwgraph import GraphError

    bad = tmp_path / "g.onnx"
    bad.write_bytes(b"nonsense")
    with pytest.raises(GraphError, match="not a readable ONNX"):
        CpuEngine(bad)


def test_4bit_mlp_is_bit_exact(tmp_path, compile_helper):
    """The shipped 4-bit digits MLP: 15 thresholds per channel, 4-bit weights."""
    from netfabric.models.data import load_digits

    qonnx = flow.export_checkpoint(flow.PRETRAINED / "mlp_digits_w4a4.pt", tmp_path / "m.onnx")
    graph = compile_helper(qonnx, tmp_path / "hw", label_select=False)
    g = load_hwgraph(graph)
    assert g.nodes[0].attr("weightDataType") == "INT4" and g.nodes[0].attr("outputDataType") == "UINT4"
    x, y = load_digits("test")
    engine = CpuEngine(graph)
    out = engine.run(x[:, None])
    ref = reference_run(ModelWrapper(str(graph)), engine.check_input(x[:, None]).astype(np.float32))[0]
    assert np.array_equal(out, ref.astype(np.int64))
    assert (out.argmax(1) == y).mean() >= 0.93


def test_4bit_cnn_is_bit_exact(tmp_path, mnist_test, compile_helper):
    from netfabric.models.export import export_qonnx
    from netfabric.models.zoo import ModelConfig, build_model

    cfg = ModelConfig(arch="cnn", conv_channels=[4, 8, 8, 8], fc_hidden=16, weight_bits=4, act_bits=4)
    model = build_model(cfg).eval()
    with torch.no_grad():
        model(torch.rand(16, 1, 28, 28) * 255)
    graph = compile_helper(export_qonnx(model, (1, 28, 28), tmp_path / "c.onnx"), tmp_path / "hw",
                           label_select=False)
    x = mnist_test[0][:20, None]
    engine = CpuEngine(graph)
    out = engine.run(x)
    ref = reference_run(ModelWrapper(str(graph)), engine.check_input(x).astype(np.float32))[0]
    assert np.array_equal(out, ref.astype(np.int64))


@pytest.mark.parametrize("itype, wtype", [("UINT8", "INT8"), ("INT8", "INT8"), ("UINT8", "UINT8")])
def test_matmul_is_exact_where_int16_pair_sums_would_saturate(tmp_path, itype, wtype):
    """onnxruntime's u8 x s8 kernel on AVX2 CPUs without VNNI adds pairs of products in int16
    with saturation (255*127 + 255*127 > 32767); the engine must not depend on it."""
    from netfabric.host.cpu_engine import CpuEngine
    from netfabric.host.hwgraph import IntType
    from netfabric.ops.graphbuild import HWGraphBuilder

    it, wt = IntType(itype), IntType(wtype)
    w = np.full((16, 4), wt.max)
    w[:, 1] = wt.min
    b = HWGraphBuilder()
    b.input("x", [1, 16], itype)
    b.param("w", w, wtype)
    b.node("MVAU", ["x", "w"], [("y", [1, 4], "INT32")], MW=16, MH=4, SIMD=1, PE=1,
           inputDataType=itype, weightDataType=wtype, outputDataType="INT32", ActVal=0,
           noActivation=1, binaryXnorMode=0, numInputVectors=[1])
    b.output("y")
    x = np.stack([np.full(16, it.max), np.full(16, it.min)])
    got = CpuEngine(b.save(tmp_path / "g.onnx")).run(x)
    assert np.array_equal(got, x.astype(np.int64) @ w)



def test_binary_xnor_network_matches_finn(tmp_path):
    """Binary layers as FINN's BNN flow makes them (binaryXnorMode MVAUs: BINARY inputs and
    weights standing for -1/+1, XNOR-popcount accumulators): sign thresholds, then a 2-bit
    activation whose thresholds are partly requantizers (the engine reorders those channels,
    the next layer's weight rows absorb the order), then an ordinary INT3 layer. The CPU engine
    equals the registry semantics and FINN's python execution."""
    from netfabric.host.cpu_engine import _threshold_plan
    from netfabric.host.hwgraph import IntType
    from netfabric.ops.execute import run_graph
    from netfabric.ops.graphbuild import HWGraphBuilder

    rng = np.random.default_rng(7)
    mw, mid, mh, out = 64, 16, 10, 4
    w1, w2 = rng.integers(0, 2, size=(mw, mid)), rng.integers(0, 2, size=(mid, mh))
    w3 = rng.integers(-4, 4, size=(mh, out))
    t1 = rng.integers(mw // 2 - 6, mw // 2 + 7, size=(mid, 1))
    t2 = np.array([[2 + c % 3, 6 + c % 3, 10 + c % 3] if c % 2 else np.sort(rng.integers(0, 17, 3))
                   for c in range(mh)])
    order, plan = _threshold_plan(t2.astype(float), mh, IntType("UINT5"))
    assert plan["kind"] == "mixed" and not np.array_equal(order, np.arange(mh))
    b = HWGraphBuilder("bnn")
    b.input("x", [1, mw], "BINARY")
    for name, value, dtype in (("w1", w1, "BINARY"), ("t1", t1, None), ("w2", w2, "BINARY"),
                               ("t2", t2, None), ("w3", w3, "INT3")):
        b.param(name, value, dtype)
    xnor = dict(inputDataType="BINARY", weightDataType="BINARY", binaryXnorMode=1,
                numInputVectors=[1], ActVal=0, noActivation=0)
    b.node("MVAU", ["x", "w1", "t1"], [("h1", [1, mid], "BINARY")], name="fc0", MW=mw, MH=mid,
           SIMD=8, PE=4, accDataType="UINT7", outputDataType="BINARY", **xnor)
    b.node("MVAU", ["h1", "w2", "t2"], [("h2", [1, mh], "UINT2")], name="fc1", MW=mid, MH=mh,
           SIMD=4, PE=2, accDataType="UINT5", outputDataType="UINT2", **xnor)
    b.node("MVAU", ["h2", "w3"], [("y", [1, out], "INT9")], name="fc2", MW=mh, MH=out, SIMD=2,
           PE=1, inputDataType="UINT2", weightDataType="INT3", accDataType="INT9",
           outputDataType="INT9", binaryXnorMode=0, ActVal=0, noActivation=1,
           numInputVectors=[1])
    b.output("y")
    path = b.save(tmp_path / "bnn.onnx")
    x = rng.integers(0, 2, size=(32, mw))
    bip = lambda v: 2 * v - 1  # noqa: E731
    h1 = ((bip(x) @ bip(w1) + mw) // 2 >= t1[:, 0]).astype(np.int64)
    h2 = (((bip(h1) @ bip(w2) + mid) // 2)[..., None] >= t2).sum(-1)
    want = h2 @ w3
    assert np.array_equal(run_graph(load_hwgraph(path), x)["output"], want)
    assert np.array_equal(CpuEngine(path).run(x), want)
    ref = reference_run(ModelWrapper(str(path)), x.astype(np.float32))[0]
    assert np.array_equal(np.round(ref).astype(np.int64), want)


def test_bipolar_times_bipolar_counts_agreements_as_finn_does(tmp_path):
    """BIPOLAR inputs times BIPOLAR weights without binaryXnorMode: FINN's execution gives the
    XNOR-popcount (x . w + MW) / 2, not the dot product; semantics and CPU engine agree."""
    from netfabric.errors import GraphError
    from netfabric.host.hwgraph import IntType
    from netfabric.ops.execute import run_graph
    from netfabric.ops.graphbuild import HWGraphBuilder

    try:
        IntType("BIPOLAR").bits  # noqa: B018
    except GraphError:
        pytest.skip("BIPOLAR is not an integer type of the HW graph here")
    rng = np.random.default_rng(5)
    w = 2 * rng.integers(0, 2, size=(32, 6)) - 1
    t = np.sort(rng.integers(0, 33, size=(6, 3)), axis=1)
    b = HWGraphBuilder("bipolar")
    b.input("x", [1, 32], "BIPOLAR")
    b.node("MVAU", ["x", b.param("w", w, "BIPOLAR"), b.param("t", t)], [("y", [1, 6], "UINT2")],
           name="fc", MW=32, MH=6, SIMD=4, PE=3, inputDataType="BIPOLAR",
           weightDataType="BIPOLAR", accDataType="INT7", outputDataType="UINT2", ActVal=0,
           noActivation=0, binaryXnorMode=0, numInputVectors=[1])
    b.output("y")
    path = b.save(tmp_path / "bipolar.onnx")
    x = 2 * rng.integers(0, 2, size=(16, 32)) - 1
    x[0] = w[:, 0]  # full agreement on channel 0: count 32
    want = (((x @ w + 32) // 2)[..., None] >= t).sum(-1)
    assert np.array_equal(run_graph(load_hwgraph(path), x)["output"], want)
    assert np.array_equal(CpuEngine(path).run(x), want)
    ref = reference_run(ModelWrapper(str(path)), x.astype(np.float32))[0]
    assert np.array_equal(np.round(ref).astype(np.int64), want)
