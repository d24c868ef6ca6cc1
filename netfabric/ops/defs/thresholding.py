"""Thresholding: FINN's standalone multi-threshold activation (an adapter over FINN's class)."""

from __future__ import annotations

import numpy as np

from netfabric.ops.graphbuild import HWGraphBuilder
from netfabric.ops.kernels import threshold_count
from netfabric.ops.registry import OpDef, define_op

from ._common import check_width, divisors, int_type, param_ints, pick, prod, random_type


def semantics(node, streams, graph):
    thr = param_ints(graph, node.inputs[1], node.name)
    return [threshold_count(streams[0], thr, int(node.attr("ActVal", 0)))]


def cycles(node, graph) -> int:
    ch = int(node.attr("NumChannels"))
    return prod(node.attr("numInputVectors", [1])) * check_width(node, "PE", ch, int(node.attr("PE")))


def resources(node, graph) -> dict:
    rows, steps = graph.shapes[node.inputs[1]]
    return {"threshold_bits": rows * steps * (int_type(node.attr("inputDataType")).bits + 2)}


def sample(rng: np.random.Generator):
    ch = pick(rng, [1, 2, 4, 6, 8])
    pe = pick(rng, divisors(ch))
    itype = random_type(rng, max_bits=9)
    otype = random_type(rng, max_bits=4, min_bits=1)
    it, ot = int_type(itype), int_type(otype)
    steps = ot.max - ot.min
    rows = pick(rng, [1, ch])
    # thresholds may reach one past the input range (a level never reached), as FINN's do
    thr = np.sort(rng.integers(it.min, it.max + 2, size=(rows, steps)), axis=1)
    vectors = [1, *pick(rng, [[], [3], [2, 3]])]
    b = HWGraphBuilder("thresholding_sample")
    x = b.input("x", [*vectors, ch], itype)
    t = b.param("t", thr)
    b.node("Thresholding", [x, t], [("y", [*vectors, ch], otype)], name="thresholding",
           NumChannels=ch, PE=pe, numSteps=steps, inputDataType=itype, weightDataType=itype,
           outputDataType=otype, ActVal=ot.min, numInputVectors=vectors)
    b.output("y")
    return b.build()


define_op(OpDef(
    "Thresholding", "finn", semantics, cycles, resources, sample,
    finn_class="finn.custom_op.fpgadataflow.thresholding.Thresholding",
    doc="multi-threshold activation on a stream"))
