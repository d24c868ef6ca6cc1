"""MVAU: FINN's matrix-vector-activation unit (an adapter over FINN's class).

Semantics: each input vector x (MW values) times the weight matrix W [MW, MH] gives an
accumulator per output channel; with an activation, FINN's multi-threshold count
``#{k: acc >= T[c, k]} + ActVal`` is the output, otherwise the accumulator itself.

With ``binaryXnorMode=1`` (FINN's BNN layers) inputs and weights are BINARY bits standing for
bipolar values (0 -> -1, 1 -> +1) and the accumulator is XNOR-popcount: the number of positions
where input and weight bits agree, 0 .. MW (``(x_bipolar . w_bipolar + MW) / 2``, qonnx's
``xnorpopcountmatmul``). Thresholds compare against that count. FINN executes BIPOLAR inputs
times BIPOLAR weights (values -1/+1, no binaryXnorMode) the same way: the agreement count.
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


def xnor_popcount(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Bits x [N, MW] and w [MW, MH] (0/1) -> #agreeing bits per output, [N, MH] int64."""
    x, w = np.asarray(x, dtype=np.int64), np.asarray(w, dtype=np.int64)
    return x @ w + (1 - x) @ (1 - w)


def bipolar_pair(node) -> bool:
    """BIPOLAR inputs and weights without binaryXnorMode: FINN's execution still counts
    agreements, ``(x . w + MW) / 2``, instead of the dot product."""
    return (node.attr("inputDataType"), node.attr("weightDataType")) == ("BIPOLAR", "BIPOLAR")


def _check_binary(node) -> None:
    for key in ("inputDataType", "weightDataType"):
        if node.attr(key) != "BINARY":
            raise UnsupportedOpError(f"node {node.name}: binaryXnorMode needs BINARY operands, "
                                     f"{key} is {node.attr(key)}")


def semantics(node, streams, graph):
    x = streams[0]
    w = np.asarray(graph.params[node.inputs[1]], dtype=np.int64)  # [MW, MH]
    if node.attr("binaryXnorMode", 0):
        _check_binary(node)
        acc = xnor_popcount(x.reshape(-1, w.shape[0]), w)
    elif bipolar_pair(node):  # FINN executes BIPOLAR x BIPOLAR as XNOR-popcount too
        acc = (x.reshape(-1, w.shape[0]) @ w + w.shape[0]) // 2
    else:
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
    lanes = int(node.attr("PE")) * int(node.attr("SIMD"))
    res = {"weight_bits": mw * mh * wbits, "mult": lanes}
    if node.attr("binaryXnorMode", 0):  # XNOR gates and a popcount tree, no multipliers
        res.update(mult=0, xnor=lanes)
    if not node.attr("noActivation", 0) and len(node.inputs) > 2:
        steps = graph.shapes[node.inputs[2]][-1]
        acc = node.attr("accDataType")
        acc_bits = int_type(acc).bits if acc else 32
        res["threshold_bits"] = mh * steps * (acc_bits + 1)
    return res


def _sample_xnor(rng: np.random.Generator, b: HWGraphBuilder, mw: int, mh: int, simd: int,
                 pe: int, vectors: list[int]):
    """A binary (XNOR-popcount) MVAU as FINN's BNN flow makes it: BINARY inputs and weights,
    thresholds on the popcount range 0..MW, or the popcount itself (noActivation)."""
    acc_type = f"UINT{int(mw).bit_length()}"
    x = b.input("x", [*vectors, mw], "BINARY")
    w = b.param("w", rng.integers(0, 2, size=(mw, mh)), "BINARY")
    inputs = [x, w]
    attrs = dict(MW=mw, MH=mh, SIMD=simd, PE=pe, inputDataType="BINARY",
                 weightDataType="BINARY", accDataType=acc_type, binaryXnorMode=1,
                 numInputVectors=vectors)
    if rng.integers(4):
        # mostly the sign activation of BNN layers (one threshold, BINARY out), sometimes more
        otype = "BINARY" if rng.integers(2) else random_type(rng, max_bits=3, signed=False)
        steps = int_type(otype).max
        inputs.append(b.param("t", sorted_thresholds(rng, mh, steps, 0, mw + 1)))
        attrs.update(outputDataType=otype, ActVal=0, noActivation=0)
    else:
        otype = acc_type
        attrs.update(outputDataType=otype, ActVal=0, noActivation=1)
    b.node("MVAU", inputs, [("y", [*vectors, mh], otype)], name="mvau", **attrs)
    b.output("y")
    return b.build()


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
    if rng.integers(3) == 0:  # a third are binary XNOR-popcount layers (FINN's BNNs)
        return _sample_xnor(rng, b, mw, mh, simd, pe, vectors)
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
