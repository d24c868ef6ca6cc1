"""Stream plumbing that never changes a value: FIFOs, width converters, forks (FINN ops).

Their semantics are the identity (a fork: one copy per output); their cost is the number of
beats they pass per frame.
"""

from __future__ import annotations

import numpy as np

from netfabric.ops.graphbuild import HWGraphBuilder
from netfabric.ops.registry import OpDef, define_op

from ._common import check_width, divisors, int_type, pick, prod, random_type


def identity(node, streams, graph):
    return [streams[0] for _ in node.outputs]


def fifo_cycles(node, graph) -> int:
    return prod(node.attr("folded_shape", [1])[:-1])


def fifo_resources(node, graph) -> dict:
    folded = node.attr("folded_shape", [1])
    bits = int_type(node.attr("dataType")).bits
    return {"buffer_bits": int(node.attr("depth", 2)) * folded[-1] * bits}


def dwc_cycles(node, graph) -> int:
    shape = node.attr("inShape") or node.attr("in_shape") or [1]
    in_w, out_w = int(node.attr("inWidth")), int(node.attr("outWidth"))
    bits = int_type(node.attr("dataType")).bits
    elems = prod(shape)
    return elems * bits // min(in_w, out_w)


def dwc_resources(node, graph) -> dict:
    return {"buffer_bits": max(int(node.attr("inWidth")), int(node.attr("outWidth")))}


def dup_cycles(node, graph) -> int:
    ch = int(node.attr("NumChannels"))
    return prod(node.attr("numInputVectors", [1])) * check_width(node, "PE", ch, int(node.attr("PE")))


def dup_resources(node, graph) -> dict:
    return {"buffer_bits": int(node.attr("PE")) * int_type(node.attr("inputDataType")).bits
            * int(node.attr("NumOutputStreams", 2))}


def _stream_sample(rng):
    ch = pick(rng, [1, 2, 4, 6])
    vectors = [1, *pick(rng, [[], [3], [2, 2]])]
    return ch, vectors, random_type(rng), pick(rng, divisors(ch))


def _requantize(b, rng, x: str, out: str, vectors, ch: int, dtype: str, pe: int) -> str:
    """A Thresholding layer around the plumbing op under test: the stitcher places its own
    FIFOs and width converters, so a sample needs real layers on both sides of one."""
    t = int_type(dtype)
    thr = np.sort(rng.integers(t.min, t.max + 2, size=(ch, 3)), axis=1)
    b.node("Thresholding", [x, b.param(f"{out}_t", thr)], [(out, [*vectors, ch], "UINT2")],
           name=f"thr_{out}", NumChannels=ch, PE=pe, numSteps=3, inputDataType=dtype,
           weightDataType=dtype, outputDataType="UINT2", ActVal=0, numInputVectors=vectors)
    return out


def fifo_sample(rng: np.random.Generator):
    ch, vectors, dtype, pe = _stream_sample(rng)
    b = HWGraphBuilder("fifo_sample")
    x = _requantize(b, rng, b.input("x", [*vectors, ch], dtype), "a", vectors, ch, dtype, pe)
    b.node("StreamingFIFO", [x], [("f", [*vectors, ch], "UINT2")], name="fifo",
           depth=int(pick(rng, [2, 4, 16])), folded_shape=[*vectors, ch // pe, pe],
           normal_shape=[*vectors, ch], dataType="UINT2")
    b.output(_requantize(b, rng, "f", "y", vectors, ch, "UINT2", pe))
    return b.build()


def dwc_sample(rng: np.random.Generator):
    ch, vectors, dtype, _ = _stream_sample(rng)
    a, c = pick(rng, divisors(ch)), pick(rng, divisors(ch))
    b = HWGraphBuilder("dwc_sample")
    x = _requantize(b, rng, b.input("x", [*vectors, ch], dtype), "a", vectors, ch, dtype, a)
    b.node("StreamingDataWidthConverter", [x], [("d", [*vectors, ch], "UINT2")], name="dwc",
           inShape=[*vectors, ch], outShape=[*vectors, ch], inWidth=a * 2, outWidth=c * 2,
           dataType="UINT2")
    b.output(_requantize(b, rng, "d", "y", vectors, ch, "UINT2", c))
    return b.build()


def dup_sample(rng: np.random.Generator):
    ch, vectors, dtype, pe = _stream_sample(rng)
    b = HWGraphBuilder("dup_sample")
    x = b.input("x", [*vectors, ch], dtype)
    b.node("DuplicateStreams", [x], [("y0", [*vectors, ch], dtype), ("y1", [*vectors, ch], dtype)],
           name="dup", NumChannels=ch, PE=pe, NumOutputStreams=2, inputDataType=dtype,
           numInputVectors=vectors)
    # a join after the fork, so the sample has one output: the sum of both copies
    lo, hi = int_type(dtype).min, int_type(dtype).max
    out_type = f"INT{(max(abs(2 * lo), 2 * hi + 1)).bit_length() + 1}"
    b.node("ElementwiseAdd", ["y0", "y1"], [("y", [*vectors, ch], out_type)], name="join",
           lhs_dtype=dtype, rhs_dtype=dtype, out_dtype=out_type, lhs_shape=[*vectors, ch],
           rhs_shape=[*vectors, ch], out_shape=[*vectors, ch], lhs_style="input",
           rhs_style="input", PE=pe)
    b.output("y")
    return b.build()


define_op(OpDef("StreamingFIFO", "finn", identity, fifo_cycles, fifo_resources, fifo_sample,
                finn_class="finn.custom_op.fpgadataflow.streamingfifo.StreamingFIFO",
                values_unchanged=True, doc="stream FIFO"))
define_op(OpDef("StreamingDataWidthConverter", "finn", identity, dwc_cycles, dwc_resources,
                dwc_sample,
                finn_class=("finn.custom_op.fpgadataflow.streamingdatawidthconverter."
                            "StreamingDataWidthConverter"),
                values_unchanged=True, doc="stream width converter"))
define_op(OpDef("DuplicateStreams", "finn", identity, dup_cycles, dup_resources, dup_sample,
                finn_class="finn.custom_op.fpgadataflow.duplicatestreams.DuplicateStreams",
                values_unchanged=True, doc="fork: one stream in, NumOutputStreams copies out"))
