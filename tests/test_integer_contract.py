"""The integer contract for the shipped transformer: every requantized tensor of the QAT model
(Brevitas, eval mode) and of its exported QONNX (qonnx's execute_onnx) against the HW-layer graph
(run by the exact CPU engine, itself held bit for bit to FINN's python execution of the graph in
test_transformer_compile.py), on 1000 MNIST test images (10000 under -m slow)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from qonnx.core.modelwrapper import ModelWrapper

from netfabric import flow
from netfabric.hls.transformer import compile_transformer_cli
from netfabric.host.cpu_engine import CpuEngine
from netfabric.host.hwgraph import load_hwgraph
from netfabric.models.train_transformer import load_transformer
from netfabric.models.transformer import act_scale
from netfabric.models.transformer_int import export_integer_params, integer_forward

TRANSFORMER = flow.PRETRAINED / "transformer_int8.pt"
N_IMAGES = 1000
# The exported QONNX computes Brevitas' float32 training graph (MatMul sums rounded float32
# products; BatchNormalization is float32), not the float64 expressions the HW graph's threshold
# tables hold: a value next to a rounding tie lands one LSB off, about 1 in 10^6 locally, and
# attention and the residual stream spread it (measured on the first 1000 test images: at most
# 0.14% of a tensor, 0.03% of all values, predictions 100% equal). The bounds, with margin:
QONNX_MAX_DIFF_FRACTION = 0.005  # per requantized tensor
QONNX_MIN_PRED_AGREEMENT = 0.995


def _sequence(model) -> list[tuple[str, torch.nn.Module, str]]:
    """(name, quantizer, HW-graph tensor) of every requantization, in the forward's call order
    (the QONNX graph lists its activation Quant nodes in the same order). Scores are internal to
    SegmentAttention: their reference is integer_forward, whose float64 score expression the
    node's threshold table is built from."""
    rq = model.res_quants
    seq = [("embed", rq[0], "embed_out"), ("x1", rq[1], "x1")]
    for i, blk in enumerate(model.blocks):
        j, b, att = 2 * i + 1, f"b{i}_", blk.attn
        seq += [(b + "norm1", blk.attn_norm_quant, b + "norm1_out"),
                (b + "q", att.q_quant, b + "qkv_out:0"), (b + "k", att.k_quant, b + "qkv_out:1"),
                (b + "v", att.v_quant, b + "qkv_out:2"),
                (b + "scores", att.score_quant, f"int:block{i}.scores"),
                (b + "ctx", att.ctx_quant, b + "ctx"), (b + "attn_branch", rq[j], b + "attn_branch"),
                (b + "x_mid", rq[j + 1], b + "x_mid"), (b + "norm2", blk.mlp_norm_quant, b + "norm2_out"),
                (b + "mlp_hidden", blk.mlp.act, b + "mlp_hidden"),
                (b + "mlp_branch", rq[j + 1], b + "mlp_branch"), (b + "x_out", rq[j + 2], b + "x_out")]
    return seq + [("final", model.final_quant, "final_tokens")]


def _hw_tensors(graph, params, seq, images: np.ndarray) -> tuple[np.ndarray, dict]:
    """Integer logits and {name: ints [N, -1]} from the HW graph (CPU engine); scores from
    integer_forward."""
    names = sorted({t.split(":")[0] for _, _, t in seq if not t.startswith("int:")})
    d = load_hwgraph(graph).shapes["x1"][-1]
    logits, *extra = CpuEngine(graph, extra_outputs=names).run_all(images[:, None])
    by_name = dict(zip(names, extra, strict=True))
    trace: dict = {}
    ref = integer_forward(params, images, trace)
    assert np.array_equal(logits, ref)  # the graph equals its integer reference here too
    n = len(images)
    out = {}
    for name, _, t in seq:
        if t.startswith("int:"):
            out[name] = trace[t[4:]].reshape(n, -1)
        elif ":" in t:  # q | k | v share the fused qkv MVAU's output channels
            base, part = t.split(":")
            v = by_name[base].reshape(n, -1, 3 * d)
            out[name] = v[..., int(part) * d : (int(part) + 1) * d].reshape(n, -1)
        else:
            out[name] = by_name[t].reshape(n, -1).astype(np.int64)
    return logits, out


def _qat_tensors(model, seq, images: np.ndarray) -> tuple[np.ndarray, dict]:
    """Float logits and {name: ints} of every quantizer call of the QAT model's forward."""
    calls: list = []
    quants = {id(q): q for _, q, _ in seq}
    quants[id(model.pixel_quant)] = model.pixel_quant
    hooks = [q.register_forward_hook(lambda mod, i, o: calls.append((mod, o)))
             for q in quants.values()]
    try:
        with torch.no_grad():
            logits = model(torch.from_numpy(images.astype(np.float32))).numpy()
    finally:
        for h in hooks:
            h.remove()
    # drop the pixel quantizer and the position table's call (a constant, rq0's second call)
    calls = [c for c in calls if c[0] is not model.pixel_quant]
    del calls[1]
    assert [c[0] for c in calls] == [q for _, q, _ in seq]
    out = {}
    for (name, q, _), (_, o) in zip(seq, calls, strict=True):
        v = o.value if hasattr(o, "value") else o
        out[name] = torch.round(v.double() / act_scale(q)).to(torch.int64).numpy()
        out[name] = out[name].reshape(len(images), -1)
    return logits, out


def _qonnx_tensors(path, model, seq, images: np.ndarray) -> tuple[np.ndarray, dict]:
    """Output and {name: ints} of every activation Quant node of the QONNX file, by execute_onnx."""
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.change_batchsize import ChangeBatchSize
    from qonnx.transformation.infer_shapes import InferShapes

    mw = ModelWrapper(str(path)).transform(ChangeBatchSize(len(images))).transform(InferShapes())
    inits = {t.name for t in mw.graph.initializer}
    quant = [n for n in mw.graph.node if n.op_type == "Quant" and n.input[0] not in inits]
    ctx = execute_onnx(mw, {mw.graph.input[0].name: images[:, None].astype(np.float32)},
                       return_full_exec_context=True)
    assert len(quant) == len(seq) + 1  # + the pixel quantizer on the input
    out = {}
    for (name, q, _), node in zip(seq, quant[1:], strict=True):
        scale = float(mw.get_initializer(node.input[1]))
        assert scale == act_scale(q), name  # the mapping: same quantizer, same scale
        out[name] = np.round(ctx[node.output[0]].astype(np.float64) / scale).astype(np.int64)
        out[name] = out[name].reshape(len(images), -1)
    return ctx[mw.graph.output[0].name], out


@pytest.fixture(scope="module")
def contract(tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("contract")
    graph = compile_transformer_cli(TRANSFORMER, out)
    model = load_transformer(TRANSFORMER)
    meta = ModelWrapper(str(graph)).get_metadata_prop("output_scale")
    return graph, out / "model.qonnx.onnx", model, export_integer_params(model), float(meta)


def _check_qat(contract, images: np.ndarray) -> None:
    graph, _, model, params, out_scale = contract
    seq = _sequence(model)
    hw_logits, hw = _hw_tensors(graph, params, seq, images)
    qat_logits, qat = _qat_tensors(model, seq, images)
    for name, _, _ in seq:
        assert np.array_equal(qat[name], hw[name]), name
    # eval-mode logits are the integer logits times the graph's output scale, in float64
    assert np.array_equal(qat_logits, hw_logits * out_scale)


def test_qat_equals_hw_graph_on_every_requantized_tensor(contract, mnist_test):
    """Brevitas' eval forward computes each quantizer input as the integer reference's float64
    expression from the exact integer accumulator, so every integer agrees exactly."""
    _check_qat(contract, mnist_test[0][:N_IMAGES])


def test_qonnx_agrees_with_hw_graph_within_the_float32_bound(contract, mnist_test):
    graph, qonnx_path, model, params, out_scale = contract
    images = mnist_test[0][:N_IMAGES]
    seq = _sequence(model)
    hw_logits, hw = _hw_tensors(graph, params, seq, images)
    logits, onnx = _qonnx_tensors(qonnx_path, model, seq, images)
    worst = 0.0
    for name, _, _ in seq:
        diff = onnx[name] != hw[name]
        worst = max(worst, float(diff.mean()))
        assert diff.mean() < QONNX_MAX_DIFF_FRACTION, (name, diff.mean())
    agree = float((logits.argmax(1) == hw_logits.argmax(1)).mean())
    assert agree >= QONNX_MIN_PRED_AGREEMENT, agree
    # the first tensor is computed from exact pixels by one float32 MatMul: (nearly) exact
    assert (onnx["embed"] != hw["embed"]).mean() < 1e-5


@pytest.mark.slow
def test_qat_equals_hw_graph_on_10k_images(contract, mnist_test):
    images = mnist_test[0]
    for i in range(0, len(images), N_IMAGES):
        _check_qat(contract, images[i : i + N_IMAGES])
