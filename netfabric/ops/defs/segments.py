"""netfabric's segmented-attention ops (first-class: FINN has no integer attention).

Token streams are [1, n, 1, C]; a segment of ``SegLen`` tokens is the streaming unit:
SegmentPad [1, n, 1, C] -> [1, m, s, C] (``Shift`` zero tokens before, zeros after),
SegmentAttention [1, m, s, 3d] -> [1, m, s, d] (per segment and head: q.k^T, thresholds, the
integer softmax of models/INT_SOFTMAX.md with padded keys masked, p.v, thresholds),
SegmentUnpad [1, m, s, C] -> [1, n, 1, C]. The integer definitions are ``ops/kernels.py``.
"""

from __future__ import annotations

import math

import numpy as np

from netfabric.errors import GraphError
from netfabric.ops import kernels
from netfabric.ops.graphbuild import NETFABRIC_DOMAIN, HWGraphBuilder
from netfabric.ops.registry import OpDef, define_op

from ._common import check_width, divisors, int_type, param_ints, pick, random_type

QONNX = "netfabric.hls.custom_ops.segment_ops"


def geometry(node) -> tuple[int, int, int, int]:
    """n tokens, segment length s, shift, number of segments m."""
    n, s, shift = (int(node.attr(a, 0)) for a in ("NumTokens", "SegLen", "Shift"))
    if n <= 0 or s <= 0 or not 0 <= shift < s:
        raise GraphError(f"node {node.name}: bad segment geometry n={n} s={s} shift={shift}")
    return n, s, shift, -(-(shift + n) // s)


def pad_semantics(node, streams, graph):
    n, s, shift, _ = geometry(node)
    return [kernels.segment_pad(streams[0][:, :, 0, :], s, shift)]


def unpad_semantics(node, streams, graph):
    n, s, shift, _ = geometry(node)
    return [kernels.segment_unpad(streams[0], n, shift)[:, :, None, :]]


def attention_semantics(node, streams, graph):
    n, s, shift, _ = geometry(node)
    score_thr, lut, ctx_thr = (param_ints(graph, node.inputs[i], node.name) for i in (1, 2, 3))
    softmax = {"recip_bits": int(node.attr("RecipBits")),
               "out_frac_bits": int(node.attr("ProbFracBits")),
               "out_bits": int_type(node.attr("probDataType")).bits,
               "score_min": int_type(node.attr("scoreDataType")).min}
    ctx = kernels.segment_attention(streams[0], int(node.attr("Heads")),
                                    kernels.segment_valid(n, s, shift), score_thr,
                                    int(node.attr("ScoreActVal")), lut, ctx_thr,
                                    int(node.attr("CtxActVal")), softmax)
    return [ctx]


def _channels_per_cycle(node) -> int:
    return check_width(node, "PE", int(node.attr("NumChannels")), int(node.attr("PE", 1)))


def pad_cycles(node, graph) -> int:
    n, s, shift, m = geometry(node)
    return m * s * _channels_per_cycle(node)


def unpad_cycles(node, graph) -> int:
    """Every slot of the padded input is read (the padding ones dropped): m*s tokens."""
    n, s, shift, m = geometry(node)
    return m * s * _channels_per_cycle(node)


# segment_attention.v's pipelines: q.k issue -> score accumulator, p.v issue -> context
# accumulator visible (the context thresholds wait for what a key's DC cycles do not cover)
ATTENTION_QK_LATENCY = 6
ATTENTION_EXP_LATENCY = 2
ATTENTION_PV_LATENCY = 8


def attention_row_cycles(s: int, dh: int, lanes: int, recip_bits: int, score_bits: int) -> int:
    """Cycles of one (query, head) row in hw/rtl/segment_attention.v: q.k and p.v over the s
    keys (dh/lanes cycles a key each), s LUT and row-sum steps, the radix-4 divider (waiting
    for the exp pipeline's last value, one cycle for 3*S, then two quotient bits a cycle), dh
    context-threshold inputs, the score search's latency (4*B_s + 2) + 1, and the q.k and p.v
    pipelines' latencies."""
    dc = -(-dh // lanes)
    divide = ATTENTION_EXP_LATENCY + 1 + (recip_bits + 2) // 2
    pv_drain = max(0, ATTENTION_PV_LATENCY - dc)
    return (2 * s * dc + s + divide + dh + 4 * score_bits + 3 + ATTENTION_QK_LATENCY
            + pv_drain)


def attention_cycles(node, graph) -> int:
    """The RTL's cycles (hw/rtl/segment_attention.v, sequential, no stalls), per segment:
    the load (s*3d/PE beats; the buffer holds one segment), then per query slot 1 cycle and
    per head a row (attention_row_cycles) on L = gcd(PE, dh) multipliers (a lane chunk lies in
    one input beat, a word of the block-RAM segment buffer). Exact (measured in simulation)
    for every geometry."""
    n, s, shift, m = geometry(node)
    h, dh = int(node.attr("Heads")), int(node.attr("HeadDim"))
    lanes = math.gcd(int(node.attr("PE", 1)), dh)
    row = attention_row_cycles(s, dh, lanes, int(node.attr("RecipBits")),
                               int_type(node.attr("scoreDataType")).bits)
    return m * (s * int(node.attr("NumChannels")) // int(node.attr("PE", 1)) + s * (1 + h * row))


def pad_resources(node, graph) -> dict:
    return {"buffer_bits": 0}


def attention_resources(node, graph) -> dict:
    n, s, shift, m = geometry(node)
    c = int(node.attr("NumChannels"))
    bits = int_type(node.attr("inputDataType")).bits
    lut = graph.shapes[node.inputs[2]][0] * int(node.attr("ExpBits"))
    # one segment's q/k/v: memory bounded by the segment length, not the sequence
    lanes = min(int(node.attr("PE", 1)), int(node.attr("HeadDim")))
    # q.k and p.v lanes, and the e * reciprocal product of the softmax
    return {"buffer_bits": s * c * bits, "lut_bits": lut, "mult": 2 * lanes + 1}


def _geometry_sample(rng):
    s = pick(rng, [2, 3, 4, 5])
    return int(rng.integers(1, 3 * s)), s, int(rng.integers(0, s))


def _segment_attrs(n, s, shift, c, pe, dtype):
    return dict(NumTokens=n, SegLen=s, Shift=shift, NumChannels=c, PE=pe, inputDataType=dtype)


def pad_sample(rng: np.random.Generator):
    n, s, shift = _geometry_sample(rng)
    c, dtype = pick(rng, [1, 2, 4]), random_type(rng)
    m = -(-(shift + n) // s)
    b = HWGraphBuilder("segment_pad_sample")
    x = b.input("x", [1, n, 1, c], dtype)
    b.node("SegmentPad", [x], [("seg", [1, m, s, c], dtype)], domain=NETFABRIC_DOMAIN,
           name="pad", **_segment_attrs(n, s, shift, c, pick(rng, divisors(c)), dtype))
    b.node("SegmentUnpad", ["seg"], [("y", [1, n, 1, c], dtype)], domain=NETFABRIC_DOMAIN,
           name="unpad", **_segment_attrs(n, s, shift, c, pick(rng, divisors(c)), dtype))
    b.output("y")
    return b.build()


def attention_sample(rng: np.random.Generator):
    """Pad -> attention -> unpad on random q/k/v, small types so every table is short."""
    n, s, shift = _geometry_sample(rng)
    heads, dh = pick(rng, [1, 2]), pick(rng, [1, 2, 3])
    d = heads * dh
    m = -(-(shift + n) // s)
    in_type = random_type(rng, max_bits=5, signed=True)
    it = int_type(in_type)
    score_type, ctx_type, prob_type = "INT4", random_type(rng, 4, signed=True), "UINT8"
    qk_bound = dh * it.min * it.min
    av_bound = s * 255 * max(-it.min, it.max)
    exp_bits, recip_bits, frac = 8, 20, 8
    lut = np.round((2**exp_bits - 1) * np.exp(-np.arange(16) / pick(rng, [1.5, 3.0, 6.0])))
    score_thr = np.sort(rng.integers(-qk_bound, qk_bound + 2, size=(1, 15)), axis=1)
    ctx_levels = 2 ** int_type(ctx_type).bits - 1
    ctx_thr = np.sort(rng.integers(-av_bound // 8, av_bound // 8 + 2, size=(1, ctx_levels)), axis=1)
    b = HWGraphBuilder("segment_attention_sample")
    x = b.input("x", [1, n, 1, 3 * d], in_type)
    b.node("SegmentPad", [x], [("seg", [1, m, s, 3 * d], in_type)], domain=NETFABRIC_DOMAIN,
           name="pad", **_segment_attrs(n, s, shift, 3 * d, 1, in_type))
    b.node("SegmentAttention",
           ["seg", b.param("score_t", score_thr), b.param("lut", lut, f"UINT{exp_bits}"),
            b.param("ctx_t", ctx_thr)],
           [("ctx", [1, m, s, d], ctx_type)], domain=NETFABRIC_DOMAIN, name="attention",
           **_segment_attrs(n, s, shift, 3 * d, pick(rng, divisors(3 * d)), in_type),
           outputDataType=ctx_type, Heads=heads, HeadDim=dh, scoreDataType=score_type,
           probDataType=prob_type, ScoreActVal=-8, CtxActVal=int_type(ctx_type).min,
           ExpBits=exp_bits, RecipBits=recip_bits, ProbFracBits=frac,
           accQKDataType=f"INT{int(qk_bound).bit_length() + 2}",
           accAVDataType=f"INT{int(av_bound).bit_length() + 2}")
    b.node("SegmentUnpad", ["ctx"], [("y", [1, n, 1, d], ctx_type)], domain=NETFABRIC_DOMAIN,
           name="unpad", **_segment_attrs(n, s, shift, d, 1, ctx_type))
    b.output("y")
    return b.build()


define_op(OpDef("SegmentPad", "netfabric", pad_semantics, pad_cycles, pad_resources, pad_sample,
                finn_class=f"{QONNX}.SegmentPad", doc="tokens -> segments, zero padding"))
define_op(OpDef("SegmentUnpad", "netfabric", unpad_semantics, unpad_cycles, pad_resources,
                pad_sample, finn_class=f"{QONNX}.SegmentUnpad",
                doc="segments -> tokens, padding dropped"))
define_op(OpDef("SegmentAttention", "netfabric", attention_semantics, attention_cycles,
                attention_resources, attention_sample, finn_class=f"{QONNX}.SegmentAttention",
                doc="integer multi-head attention inside each segment"))
