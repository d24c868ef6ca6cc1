"""LabelSelect: FINN's top-K index selection (an adapter). Ties go to the lower index."""

from __future__ import annotations

import numpy as np

from netfabric.ops.graphbuild import HWGraphBuilder
from netfabric.ops.registry import OpDef, define_op

from ._common import check_width, divisors, pick, prod, random_type


def semantics(node, streams, graph):
    k = int(node.attr("K"))
    x = streams[0]
    # stable sort of the negated values: among equal values the lower index comes first
    order = np.argsort(-x, axis=-1, kind="stable")[..., :k]
    return [order.astype(np.int64)]


def cycles(node, graph) -> int:
    n = int(node.attr("Labels"))
    return prod(node.attr("numInputVectors", [1])) * check_width(node, "PE", n, int(node.attr("PE")))


def resources(node, graph) -> dict:
    return {"compare": int(node.attr("PE"))}


def sample(rng: np.random.Generator):
    n = pick(rng, [2, 4, 6, 10])
    dtype = random_type(rng)
    b = HWGraphBuilder("label_select_sample")
    x = b.input("x", [1, n], dtype)
    out_type = "UINT8" if n > 1 else "UINT1"
    b.node("LabelSelect", [x], [("y", [1, 1], out_type)], name="label_select", Labels=n,
           PE=pick(rng, divisors(n)), K=1, inputDataType=dtype, outputDataType=out_type,
           numInputVectors=[1])
    b.output("y")
    return b.build()


define_op(OpDef(
    "LabelSelect", "finn", semantics, cycles, resources, sample,
    finn_class="finn.custom_op.fpgadataflow.labelselect.LabelSelect",
    doc="index of the K largest values (ties: lower index)"))
