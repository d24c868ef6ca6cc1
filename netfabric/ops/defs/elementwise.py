"""Element-wise and reduction ops of residual networks (adapters over FINN's classes).

ElementwiseAdd: lhs + rhs, each a stream or a constant (e.g. a position table), broadcast as
numpy does. GlobalAccPool: the integer sum over the two spatial axes of [N, H, W, C].
"""

from __future__ import annotations

import numpy as np

from netfabric.ops.graphbuild import HWGraphBuilder
from netfabric.ops.registry import OpDef, define_op

from ._common import check_width, divisors, int_type, pick, prod, random_type


def _operands(node, streams, graph):
    it = iter(streams)
    out = []
    for name in node.inputs[:2]:
        if name in graph.params:
            out.append(np.asarray(graph.params[name], dtype=np.int64))
        else:
            out.append(next(it))
    return out


def add_semantics(node, streams, graph):
    lhs, rhs = _operands(node, streams, graph)
    return [lhs + rhs]


def add_cycles(node, graph) -> int:
    shape = list(node.attr("out_shape"))
    return prod(shape[:-1]) * check_width(node, "PE", shape[-1], int(node.attr("PE", 1)))


def add_resources(node, graph) -> dict:
    res = {"adders": int(node.attr("PE", 1))}
    for name, style, dtype in ((node.inputs[1], "rhs_style", "rhs_dtype"),
                               (node.inputs[0], "lhs_style", "lhs_dtype")):
        if node.attr(style) == "const":
            res["const_bits"] = prod(graph.shapes[name]) * int_type(node.attr(dtype)).bits
    return res


def add_sample(rng: np.random.Generator):
    ch = pick(rng, [1, 2, 4, 6])
    vectors = [1, *pick(rng, [[], [3], [2, 2]])]
    lt, rt = random_type(rng), random_type(rng)
    lo = int_type(lt).min + int_type(rt).min
    hi = int_type(lt).max + int_type(rt).max
    out_type = f"INT{max(abs(lo), hi + 1).bit_length() + 1}"
    const = bool(rng.integers(2))
    shape = [*vectors, ch]
    b = HWGraphBuilder("add_sample")
    x = b.input("x", shape, lt)
    if const:
        r = b.param("r", rng.integers(int_type(rt).min, int_type(rt).max + 1, size=shape), rt)
    else:  # two streams: fork the input, threshold one copy into the rhs type
        b.node("DuplicateStreams", [x], [("x0", shape, lt), ("x1", shape, lt)], name="fork",
               NumChannels=ch, PE=1, NumOutputStreams=2, inputDataType=lt,
               numInputVectors=vectors)
        it, ot = int_type(lt), int_type(rt)
        thr = np.sort(rng.integers(it.min, it.max + 2, size=(1, ot.max - ot.min)), axis=1)
        b.node("Thresholding", ["x1", b.param("t", thr)], [("r", shape, rt)], name="to_rhs",
               NumChannels=ch, PE=1, numSteps=thr.shape[1], inputDataType=lt,
               weightDataType=lt, outputDataType=rt, ActVal=ot.min, numInputVectors=vectors)
        x, r = "x0", "r"
    b.node("ElementwiseAdd", [x, r], [("y", shape, out_type)], name="add", lhs_dtype=lt,
           rhs_dtype=rt, out_dtype=out_type, lhs_shape=shape, rhs_shape=shape, out_shape=shape,
           lhs_style="input", rhs_style="const" if const else "input",
           PE=pick(rng, divisors(ch)))
    b.output("y")
    return b.build()


def pool_semantics(node, streams, graph):
    return [streams[0].sum(axis=(1, 2), keepdims=True)]


def pool_cycles(node, graph) -> int:
    ch = int(node.attr("NumChannels"))
    folds = check_width(node, "PE", ch, int(node.attr("PE")))
    return prod(node.attr("numInputVectors", [1])) * folds + folds


def pool_resources(node, graph) -> dict:
    return {"acc_bits": int(node.attr("NumChannels")) * 32}


def pool_sample(rng: np.random.Generator):
    ch = pick(rng, [1, 2, 4])
    h, w = int(rng.integers(1, 5)), int(rng.integers(1, 5))
    dtype = random_type(rng)
    t = int_type(dtype)
    out_type = f"INT{max(abs(t.min), t.max + 1).bit_length() + (h * w).bit_length() + 1}"
    b = HWGraphBuilder("globalaccpool_sample")
    x = b.input("x", [1, h, w, ch], dtype)
    b.node("GlobalAccPool", [x], [("y", [1, 1, 1, ch], out_type)], name="gap", NumChannels=ch,
           PE=pick(rng, divisors(ch)), inputDataType=dtype, numInputVectors=[1, h, w])
    b.output("y")
    return b.build()


define_op(OpDef("ElementwiseAdd", "finn", add_semantics, add_cycles, add_resources, add_sample,
                finn_class="finn.custom_op.fpgadataflow.elementwise_binary.ElementwiseAdd",
                doc="join: lhs + rhs (streams or a constant)"))
define_op(OpDef("GlobalAccPool", "finn", pool_semantics, pool_cycles, pool_resources,
                pool_sample,
                finn_class="finn.custom_op.fpgadataflow.globalaccpool.GlobalAccPool",
                doc="integer sum over the spatial axes"))
