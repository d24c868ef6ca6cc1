"""Hand-built single-op graphs for the Triton kernels' corner cases (shared by
tests/test_triton.py and a GPU check): MVAU in every arithmetic mode and SegmentAttention
over several segment lengths, shifts and head counts. Each case: a graph file, random
integer input frames and the op semantics' output (the reference)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from netfabric.host.hwgraph import int_type, load_hwgraph
from netfabric.ops.execute import run_graph
from netfabric.ops.graphbuild import NETFABRIC_DOMAIN, HWGraphBuilder

# name: (input type, weight type, MW, MH, vectors, threshold steps or None, mode)
MVAU_CASES = {
    "int8_x_int8": ("INT8", "INT8", 300, 70, [1, 5], 255, ""),  # several K/N tiles, 8-bit act
    "uint8_x_int8": ("UINT8", "INT8", 784, 64, [1], 255, ""),  # pixels: zero point 128
    "uint8_x_uint8": ("UINT8", "UINT8", 40, 20, [1, 3], 15, ""),  # weights in two limbs
    "int4_x_uint3_acc": ("INT4", "UINT3", 33, 17, [1, 2], None, ""),  # the accumulator out
    "wide_pooled_sum": ("INT20", "INT8", 64, 10, [1], None, ""),  # pooled sums: 3 limbs
    "uint16_x_int8_thr": ("UINT16", "INT8", 48, 12, [1, 4], 7, ""),
    "xnor": ("BINARY", "BINARY", 96, 24, [1, 3], 1, "xnor"),
    "xnor_popcount": ("BINARY", "BINARY", 50, 8, [1], None, "xnor"),
    "bipolar": ("BIPOLAR", "BIPOLAR", 64, 16, [1, 2], 3, ""),
}

# name: (tokens, segment length, shift, heads, head dim, input bits)
ATTENTION_CASES = {
    "s14_shift7_4heads": (49, 14, 7, 4, 16, 8),  # the shipped transformer's second layer
    "s3_1head": (10, 3, 1, 1, 3, 5),
    "s5_2heads_dh1": (7, 5, 4, 2, 1, 4),
    "s40_3heads": (90, 40, 0, 3, 8, 8),  # one key tile of 64
    "s70_multi_tile": (80, 70, 33, 2, 5, 6),  # 70 keys: three passes over two key tiles
}


def _sample_values(rng, dtype: str, shape) -> np.ndarray:
    if dtype == "BIPOLAR":
        return 2 * rng.integers(0, 2, size=shape) - 1
    t = int_type(dtype)
    return rng.integers(t.min, t.max + 1, size=shape)


def mvau_case(folder: Path, name: str, seed: int = 0, frames: int = 3):
    """(graph path, x, reference output) for ``MVAU_CASES[name]``."""
    itype, wtype, mw, mh, vectors, steps, mode = MVAU_CASES[name]
    rng = np.random.default_rng(seed)
    b = HWGraphBuilder(f"mvau_{name}")
    x = b.input("x", [*vectors, mw], itype)
    w = _sample_values(rng, wtype, (mw, mh))
    inputs = [x, b.param("w", w, wtype)]
    xt, wt = int_type(itype), int_type(wtype)
    xs = _sample_values(rng, itype, [frames, *vectors[1:], mw])
    if mode == "xnor":
        acc = xs @ w + (1 - xs) @ (1 - w)
    elif itype == "BIPOLAR":
        acc = (xs @ w + mw) // 2  # FINN counts agreements
    else:
        acc = xs @ w
    bound = max(1, mw * max(-xt.min, xt.max) * max(-wt.min, wt.max))
    attrs = dict(MW=mw, MH=mh, SIMD=1, PE=1, inputDataType=itype, weightDataType=wtype,
                 accDataType=f"INT{bound.bit_length() + 1}",
                 binaryXnorMode=int(mode == "xnor"), numInputVectors=vectors)
    if steps is None:
        otype = attrs["accDataType"]
        attrs.update(outputDataType=otype, ActVal=0, noActivation=1)
    else:
        # thresholds around the accumulators these frames produce, so every level occurs;
        # real tables are sorted, a few rows here are not: a count does not depend on order
        lo, hi = np.percentile(acc, [2, 98], axis=tuple(range(acc.ndim - 1)))
        thr = np.sort(rng.uniform(lo, hi + 1, size=(steps, mh)).T, axis=1).round()
        thr[::3] = thr[::3, ::-1]
        inputs.append(b.param("t", thr))
        otype = "INT8" if steps == 255 else f"UINT{steps.bit_length()}"
        act = -128 if steps == 255 else 0
        attrs.update(outputDataType=otype, ActVal=act, noActivation=0)
    b.node("MVAU", inputs, [("y", [*vectors, mh], otype)], name="mvau", **attrs)
    b.output("y")
    return _finish(folder / f"mvau_{name}_{seed}.onnx", b, rng, frames, itype, xs)


def attention_case(folder: Path, name: str, seed: int = 0, frames: int = 2):
    """(graph path, x, reference) for pad -> SegmentAttention -> unpad, ``ATTENTION_CASES``."""
    n, s, shift, heads, dh, bits = ATTENTION_CASES[name]
    rng = np.random.default_rng(seed)
    d, m = heads * dh, -(-(shift + n) // s)
    in_type = f"INT{bits}"
    it = int_type(in_type)
    qk_bound = dh * it.min * it.min
    av_bound = s * 255 * max(-it.min, it.max)
    lut = np.round(255 * np.exp(-np.arange(256) / rng.choice([4.0, 12.0, 40.0])))
    score_thr = np.sort(rng.integers(-qk_bound // 3, qk_bound // 3 + 2, size=(1, 255)), axis=1)
    ctx_thr = np.sort(rng.integers(-av_bound // 10, av_bound // 10 + 2, size=(1, 255)), axis=1)
    seg = dict(NumTokens=n, SegLen=s, Shift=shift, PE=1, inputDataType=in_type)
    b = HWGraphBuilder(f"attention_{name}")
    x = b.input("x", [1, n, 1, 3 * d], in_type)
    b.node("SegmentPad", [x], [("seg", [1, m, s, 3 * d], in_type)], domain=NETFABRIC_DOMAIN,
           name="pad", NumChannels=3 * d, **seg)
    b.node("SegmentAttention",
           ["seg", b.param("score_t", score_thr), b.param("lut", lut, "UINT8"),
            b.param("ctx_t", ctx_thr)],
           [("ctx", [1, m, s, d], "INT8")], domain=NETFABRIC_DOMAIN, name="attention",
           NumChannels=3 * d, **seg, outputDataType="INT8", Heads=heads, HeadDim=dh,
           scoreDataType="INT8", probDataType="UINT8", ScoreActVal=-128, CtxActVal=-128,
           ExpBits=8, RecipBits=int(rng.choice([16, 20, 30])), ProbFracBits=8,
           accQKDataType=f"INT{int(qk_bound).bit_length() + 2}",
           accAVDataType=f"INT{int(av_bound).bit_length() + 2}")
    b.node("SegmentUnpad", ["ctx"], [("y", [1, n, 1, d], "INT8")], domain=NETFABRIC_DOMAIN,
           name="unpad", NumChannels=d, **{**seg, "inputDataType": "INT8"})
    b.output("y")
    return _finish(folder / f"attention_{name}_{seed}.onnx", b, rng, frames, in_type)


def _finish(path: Path, b: HWGraphBuilder, rng, frames: int, itype: str, x=None):
    onnx.save(b.build(), str(path))
    graph = load_hwgraph(path)
    if x is None:
        x = _sample_values(rng, itype, [frames, *graph.input_shape[1:]])
    x = x.reshape(frames, *graph.input_shape[1:])
    return path, x, run_graph(graph, x)["output"]
