"""CPU-engine lowerings for the transformer's HW layers (FINN's and netfabric's).

Each function turns one HW node into integer ONNX ops for onnxruntime, batch dimension
dynamic, with the node's exact integer semantics (``hls/custom_ops/kernels.py`` for netfabric
ops, FINN's python execution for FINN ops). Signature: ``fn(b, streams, node, graph)`` where
``streams`` maps each stream input of the node to its lowered tensor (natural channel order);
returns the lowered outputs in the node's output order. numpy + onnx only.
"""

from __future__ import annotations

import numpy as np

from netfabric.ops.registry import register_piece

from . import cpu_plan_transformer as plan_tf
from .hwgraph import GraphError, HWGraph, HWNode, IntType

_I32, _I64, _U8, _I8 = 6, 7, 2, 3  # onnx TensorProto enums


def _param_int(graph: HWGraph, name: str, what: str) -> np.ndarray:
    value = graph.params[name]
    if not np.array_equal(value, np.round(value)):
        raise GraphError(f"{what}: {name} holds non-integer values")
    return np.round(value).astype(np.int64)


def _operand(b, streams: dict, graph: HWGraph, name: str, what: str) -> str:
    if name in streams:
        return streams[name]
    value = _param_int(graph, name, what)
    if np.abs(value).max(initial=0) >= 2**31:
        raise GraphError(f"{what}: constant {name} does not fit int32")
    return b.const(value.astype(np.int32), f"{what}_const")


@register_piece("cpu", "ElementwiseAdd", kind="multi", plan=plan_tf.elementwise_add)
def elementwise_add(b, streams: dict, node: HWNode, graph: HWGraph) -> list[str]:
    """FINN ElementwiseAdd: lhs + rhs (either may be a constant, e.g. the position table)."""
    lhs, rhs = (_operand(b, streams, graph, t, node.name) for t in node.inputs[:2])
    return [b.op("Add", [lhs, rhs], node.name)]


@register_piece("cpu", "GlobalAccPool", kind="multi", plan=plan_tf.global_acc_pool)
def global_acc_pool(b, streams: dict, node: HWNode, graph: HWGraph) -> list[str]:
    """FINN GlobalAccPool: integer sum over the two spatial axes of [N, H, W, C]."""
    x = streams[node.inputs[0]]
    return [b.op("ReduceSum", [x, b.const(np.array([1, 2]), "ax")], node.name, keepdims=1)]


def _geometry(node: HWNode) -> tuple[int, int, int, int, int]:
    n, s, shift = (int(node.attr(a, 0)) for a in ("NumTokens", "SegLen", "Shift"))
    if n <= 0 or s <= 0 or not 0 <= shift < s:
        raise GraphError(f"node {node.name}: bad segment geometry n={n} s={s} shift={shift}")
    right = (-(shift + n)) % s
    return n, s, shift, right, (shift + n + right) // s


@register_piece("cpu", "SegmentPad", kind="multi", plan=plan_tf.segment_pad)
def segment_pad(b, streams: dict, node: HWNode, graph: HWGraph) -> list[str]:
    """[N, n, 1, C] -> [N, m, s, C]: Shift zero tokens in front, zeros behind."""
    n, s, shift, right, m = _geometry(node)
    c = int(node.attr("NumChannels"))
    x = b.op("Reshape", [streams[node.inputs[0]], b.const(np.array([-1, n, c]), "shape")], node.name)
    x = b.op("Pad", [x, b.const(np.array([0, shift, 0, 0, right, 0]), "pads")], node.name)
    return [b.op("Reshape", [x, b.const(np.array([-1, m, s, c]), "shape")], node.name)]


@register_piece("cpu", "SegmentUnpad", kind="multi", plan=plan_tf.segment_unpad)
def segment_unpad(b, streams: dict, node: HWNode, graph: HWGraph) -> list[str]:
    """[N, m, s, C] -> [N, n, 1, C]: the padded rows dropped."""
    n, s, shift, right, m = _geometry(node)
    c = int(node.attr("NumChannels"))
    x = b.op("Reshape", [streams[node.inputs[0]], b.const(np.array([-1, m * s, c]), "shape")],
             node.name)
    x = b.op("Slice", [x, b.const(np.array([shift]), "s"), b.const(np.array([shift + n]), "e"),
                       b.const(np.array([1]), "ax")], node.name)
    return [b.op("Reshape", [x, b.const(np.array([-1, n, 1, c]), "shape")], node.name)]


def _requant(b, acc: str, thr: np.ndarray, acc_type: IntType, act_val: int, hint: str) -> str:
    """One shared threshold table on every element of ``acc`` (int32 out)."""
    from .cpu_engine import _emit_thresholds, _threshold_plan

    if thr.ndim != 2 or thr.shape[0] != 1:
        raise GraphError(f"{hint}: expected one shared threshold row, got {thr.shape}")
    _, plan = _threshold_plan(thr, 1, acc_type)
    return _emit_thresholds(b, acc, plan, act_val, hint)


@register_piece("cpu", "SegmentAttention", kind="multi", plan=plan_tf.segment_attention)
def segment_attention(b, streams: dict, node: HWNode, graph: HWGraph) -> list[str]:
    """netfabric SegmentAttention: q.k^T -> thresholds -> integer softmax (masked) -> p.v ->
    thresholds, all segments and heads at once: [N, m, s, 3d] -> [N, m, s, d]."""
    n, s, shift, right, m = _geometry(node)
    name = node.name
    heads, dh = int(node.attr("Heads")), int(node.attr("HeadDim"))
    d = heads * dh
    in_type = IntType(node.attr("inputDataType"))
    score_type, prob_type = IntType(node.attr("scoreDataType")), IntType(node.attr("probDataType"))
    if in_type.bits > 8 or not in_type.signed or prob_type.bits > 8 or prob_type.signed:
        raise GraphError(f"node {name}: needs signed <= 8-bit q/k/v and unsigned <= 8-bit "
                         f"probabilities, got {in_type.name} / {prob_type.name}")
    score_thr, lut, ctx_thr = (_param_int(graph, node.inputs[i], name) for i in (1, 2, 3))
    if lut.shape != (1 << score_type.bits,):
        raise GraphError(f"node {name}: exp LUT has shape {lut.shape}, expected "
                         f"[{1 << score_type.bits}] for {score_type.name} scores")

    # every operand as UINT8 with a zero point: onnxruntime's signed kernels saturate on AVX2
    # CPUs without VNNI (see cpu_engine._cast_8bit)
    x = b.op("Add", [streams[node.inputs[0]], b.const(np.array(128, np.int32), "off")], name)
    x = b.op("Cast", [x], name, to=_U8)
    zp128, zp0 = (b.const(np.array(v, np.uint8), "zp") for v in (128, 0))
    x = b.op("Reshape", [x, b.const(np.array([-1, m, s, 3, heads, dh]), "shape")], name)
    x = b.op("Transpose", [x], name, perm=[3, 0, 1, 4, 2, 5])  # [3, N, m, H, s, dh]
    q, k, v = (b.op("Gather", [x, b.const(np.array(i), "idx")], name, axis=0) for i in range(3))
    k_t = b.op("Transpose", [k], name, perm=[0, 1, 2, 4, 3])
    acc = b.op("MatMulInteger", [q, k_t, zp128, zp128], name)  # [N, m, H, s, s]
    scores = _requant(b, acc, score_thr, IntType(node.attr("accQKDataType")),
                      int(node.attr("ScoreActVal")), f"{name}_qk")

    probs = _int_softmax(b, scores, node, lut, score_type, prob_type, (n, s, shift, right, m))
    acc = b.op("MatMulInteger", [b.op("Cast", [probs], name, to=_U8), v, zp0, zp128],
               name)  # [N, m, H, s, dh]
    ctx = _requant(b, acc, ctx_thr, IntType(node.attr("accAVDataType")),
                   int(node.attr("CtxActVal")), f"{name}_av")
    ctx = b.op("Transpose", [ctx], name, perm=[0, 1, 3, 2, 4])
    return [b.op("Reshape", [ctx, b.const(np.array([-1, m, s, d]), "shape")], name)]


def _int_softmax(b, scores: str, node: HWNode, lut: np.ndarray, score_type: IntType,
                 prob_type: IntType, geo) -> str:
    """INT_SOFTMAX.md on int32 scores [N, m, H, s, s], padded keys masked (int32 out)."""
    n, s, shift, right, m = geo
    name = node.name
    recip_bits, frac = int(node.attr("RecipBits")), int(node.attr("ProbFracBits"))
    if not frac < recip_bits <= 40:
        raise GraphError(f"node {name}: need ProbFracBits < RecipBits <= 40")
    pos = np.arange(m * s)
    valid = ((pos >= shift) & (pos < shift + n)).reshape(1, m, 1, 1, s)
    ok = b.const(valid, f"{name}_keys")
    zero = b.const(np.array(0, np.int32), "zero")
    ax = b.const(np.array([-1]), "ax")

    masked = b.op("Where", [ok, scores, b.const(np.array(score_type.min, np.int32), "qmin")], name)
    row_max = b.op("ReduceMax", [masked, ax], name, keepdims=1)
    diff = b.op("Where", [ok, b.op("Sub", [row_max, scores], name), zero], name)
    e = b.op("Where", [ok, b.op("Gather", [b.const(lut.astype(np.int32), f"{name}_lut"), diff],
                                name, axis=0), zero], name)
    total = b.op("ReduceSum", [e, ax], name, keepdims=1)  # < 2^31: s * 2^ExpBits
    # r = floor(2^R / S), 0 for an all-masked row; the int32 Max keeps the divisor >= 1
    safe = b.op("Cast", [b.op("Max", [total, b.const(np.array(1, np.int32), "one")], name)],
                name, to=_I64)
    recip = b.op("Div", [b.const(np.array(1 << recip_bits, np.int64), "pow"), safe], name)
    recip = b.op("Where", [b.op("Greater", [total, zero], name), recip,
                           b.const(np.array(0, np.int64), "zero64")], name)
    shift_bits = recip_bits - frac
    num = b.op("Add", [b.op("Mul", [b.op("Cast", [e], name, to=_I64), recip], name),
                       b.const(np.array(1 << (shift_bits - 1), np.int64), "half")], name)
    # non-negative, so the truncating Div is the floor shift; p <= 2^P + 1 fits int32
    p = b.op("Cast", [b.op("Div", [num, b.const(np.array(1 << shift_bits, np.int64), "pow")],
                           name)], name, to=_I32)
    return b.op("Min", [p, b.const(np.array(prob_type.max, np.int32), "pmax")], name)
