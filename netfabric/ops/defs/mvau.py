"""MVAU: FINN's matrix-vector-activation unit (an adapter over FINN's class).

Semantics: each input vector x (MW values) times the weight matrix W [MW, MH] gives an
accumulator per output channel; with an activation, FINN's multi-threshold count
``#{k: acc >= T[c, k]} + ActVal`` is the output, otherwise the accumulator itself.
"""

from __future__ import annotations

import numpy as np

from netfabric.errors import UnsupportedOpError
from netfabric.ops.graphbuild import HWGraphBuilder
from netfabric.ops.kernels import threshold_count
from netfabric.ops.registry import OpDef, define_op

from ._common import (
    check_width,
    divisors,
    int_type,
    out_shape,
    param_ints,
    pick,
    prod,
    random_type,
    sorted_thresholds,
)


def semantics(node, streams, graph):
    if node.attr("binaryXnorMode", 0):
        raise UnsupportedOpError(f"node {node.name}: binary (XNOR) MVAUs are not supported yet")
    x = streams[0]
    w = np.asarray(graph.params[node.inputs[1]], dtype=np.int64)  # [MW, MH]
    acc = x.reshape(-1, w.shape[0]) @ w
    if not node.attr("noActivation", 0):
        thr = param_ints(graph, node.inputs[2], node.name)
        acc = threshold_count(acc, thr, int(node.attr("ActVal", 0)))
    return [acc.reshape(out_shape(graph, node, x.shape[0]))]


def cycles(node, graph) -> int:
    mw, mh = int(node.attr("MW")), int(node.attr("MH"))
    sf = check_width(node, "SIMD", mw, int(node.attr("SIMD")))
    nf = check_width(node, "PE", mh, int(node.attr("PE")))
    return prod(node.attr("numInputVectors", [1])) * sf * nf


def resources(node, graph) -> dict:
    mw, mh = int(node.attr("MW")), int(node.attr("MH"))
    wbits = int_type(node.attr("weightDataType")).bits
    res = {"weight_bits": mw * mh * wbits, "mult": int(node.attr("PE")) * int(node.attr("SIMD"))}
    if not node.attr("noActivation", 0) and len(node.inputs) > 2:
        steps = graph.shapes[node.inputs[2]][-1]
        acc = node.attr("accDataType")
        acc_bits = int_type(acc).bits if acc else 32
        res["threshold_bits"] = mh * steps * (acc_bits + 1)
    return res


def sample(rng: np.random.Generator):
    mw, mh = pick(rng, [4, 6, 8, 12, 16]), pick(rng, [2, 4, 6, 8])
    simd, pe = pick(rng, divisors(mw)), pick(rng, divisors(mh))
    itype, wtype = random_type(rng), random_type(rng)
    it, wt = int_type(itype), int_type(wtype)
    vectors = [1, *pick(rng, [[], [3], [2, 2]])]
    acc_bound = mw * max(abs(it.min), it.max) * max(abs(wt.min), wt.max)
    acc_bits = int(acc_bound).bit_length() + 1
    act = bool(rng.integers(4))  # mostly with activation, as in real networks
    b = HWGraphBuilder("mvau_sample")
    x = b.input("x", [*vectors, mw], itype)
    w = b.param("w", rng.integers(wt.min, wt.max + 1, size=(mw, mh)), wtype)
    inputs = [x, w]
    attrs = dict(MW=mw, MH=mh, SIMD=simd, PE=pe, inputDataType=itype, weightDataType=wtype,
                 accDataType=f"INT{acc_bits}", binaryXnorMode=0, numInputVectors=vectors)
    if act:
        otype = random_type(rng, max_bits=4, min_bits=1, signed=bool(rng.integers(2)))
        ot = int_type(otype)
        steps = ot.max - ot.min
        inputs.append(b.param("t", sorted_thresholds(rng, mh, steps, -acc_bound // 4,
                                                      acc_bound // 4)))
        attrs.update(outputDataType=otype, ActVal=ot.min, noActivation=0)
    else:
        otype = f"INT{acc_bits}"
        attrs.update(outputDataType=otype, ActVal=0, noActivation=1)
    b.node("MVAU", inputs, [("y", [*vectors, mh], otype)], name="mvau", **attrs)
    b.output("y")
    return b.build()


define_op(OpDef(
    "MVAU", "finn", semantics, cycles, resources, sample,
    finn_class="finn.custom_op.fpgadataflow.matrixvectoractivation.MVAU",
    doc="matrix-vector product + multi-threshold activation"))
