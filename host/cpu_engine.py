"""Exact CPU engine. Three executors of the same integers:

- the plan (``cpu_plan.py``, the default): the graph compiled once into numpy steps, BLAS
  matmuls in float where every partial sum is provably exact, thresholds as proven lines
  (``cpu_thresholds.py``, one numba pass each where numba is installed: ``cpu_fused.py``); each
  op's plan compiler is the ``plan`` option of its cpu piece;
- the int8 chain (``cpu_int8.py``) for a chain of 8-bit MVAUs (an MLP): in "auto" mode each
  batch runs on the chain or the plan, whichever was timed faster for its size;
- the ONNX lowering below, run by onnxruntime (``mode="onnx"``; and for ops without a plan).

The lowering: the HW-layer graph translated to integer ONNX ops and run by onnxruntime.

Each hardware layer becomes standard ONNX with integer semantics, so onnxruntime's optimized
kernels do the work while the integers stay exactly FINN's:
- MVAU: MatMulInteger (8-bit operands, int32 accumulator) then, for fused activations, the
  multi-threshold count ``sum_k(acc >= T[c, k]) + ActVal`` as GreaterOrEqual + ReduceSum;
- Thresholding: the same threshold count on the input;
- ConvolutionInputGenerator: im2col as one Gather with precomputed indices (window order ky, kx, c);
- Pool (max): Reshape to (..., K*K, C) and ReduceMax;
- LabelSelect: TopK (ties resolve to the lower index, as in FINN's own execution);
- FIFOs, width converters and DuplicateStreams do not change values: identities;
- the transformer's layers (ElementwiseAdd, GlobalAccPool, SegmentPad/Attention/Unpad) are in
  ``cpu_lowering_transformer.py``.
Each lowering is the op's ``cpu`` piece in the op registry (``netfabric/ops``); its ``kind``
says how it is called: "single" ``fn(b, x, node, graph) -> out`` on the natural channel order,
"perm" also takes and returns a channel permutation, "multi" ``fn(b, {input: x}, node, graph)
-> [outs]``, "pass" forwards its input (the channel order travels along).
The graph is a DAG: a fork (DuplicateStreams) hands its input to several consumers, a join
(ElementwiseAdd) reads two lowered streams.
Activations travel as int32 between layers and are cast to 8 bits right before MatMulInteger.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from netfabric.ops.registry import register_piece, require

from . import cpu_plan_ops as plan_ops
from .cpu_alloc import keep_freed_memory
from .cpu_int8 import (
    ROUTE_LARGE,
    ROUTE_REPEATS,
    ROUTE_SMALL,
    ROUTE_WARMUP,
    batch_routing,
    build_chain,
)
from .cpu_plan import compile_plan, has_plan
from .cpu_plan_ops import SMALL_BATCH
from .hwgraph import GraphError, HWGraph, HWNode, apply_host_steps, load_hwgraph

log = logging.getLogger(__name__)

_I32, _I64 = 6, 7  # onnx TensorProto enums (INT32, INT64)


class _Builder:
    """Accumulates ONNX nodes and initializers with unique names."""

    def __init__(self) -> None:
        from onnx import helper, numpy_helper

        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes: list = []
        self.inits: list = []
        self._n = 0

    def const(self, value: np.ndarray, hint: str) -> str:
        name = f"{hint}_c{self._n}"
        self._n += 1
        self.inits.append(self.numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], hint: str, **attrs) -> str:
        out = f"{hint}_{op_type}{self._n}"
        self._n += 1
        self.nodes.append(self.helper.make_node(op_type, inputs, [out], **attrs))
        return out


def _cast_8bit(b: _Builder, x: str, dtype, what: str) -> tuple[str, str]:
    """An int32 tensor of a <= 8-bit type as a UINT8 MatMulInteger operand and its zero point.

    Every MatMulInteger here is unsigned x unsigned: signed values are offset by 128 and the
    zero point takes the offset back out. onnxruntime's u8 x s8 kernel on AVX2 CPUs without
    VNNI sums pairs of products in int16 with saturation (vpmaddubsw), so 255 * 127 + 255 * 127
    comes out wrong; its u8 x u8 kernel widens to 16 bits first and is exact."""
    from onnx import TensorProto

    if dtype.bits > 8:
        raise GraphError(f"{what}: {dtype.name} operands are wider than the 8 bits MatMulInteger takes")
    if dtype.signed:
        x = b.op("Add", [x, b.const(np.array(128, np.int32), "off")], what)
    zero = b.const(np.array(128 if dtype.signed else 0, np.uint8), "zp")
    return b.op("Cast", [x], what, to=TensorProto.UINT8), zero


def _u8_weights(w: np.ndarray, signed: bool) -> tuple[np.ndarray, int]:
    """Integer weights as UINT8 plus their zero point (see ``_cast_8bit``)."""
    return (np.asarray(w, np.int16) + (128 if signed else 0)).astype(np.uint8), 128 if signed else 0


def matmul_integer(b: _Builder, x: str, x_type, w: np.ndarray, w_signed: bool, what: str) -> str:
    """Exact int32 x @ w for <= 8-bit operands (unsigned kernel, zero points; ``_cast_8bit``)."""
    xq, x_zero = _cast_8bit(b, x, x_type, what)
    wq, w_zero = _u8_weights(w, w_signed)
    return b.op("MatMulInteger", [xq, b.const(wq, f"{what}_w"), x_zero,
                                  b.const(np.array(w_zero, np.uint8), "zp")], what)


def _threshold_plan(thr: np.ndarray, channels: int, acc_type) -> tuple[np.ndarray, dict]:
    """Integer thresholds (clipped to one past the accumulator range: identical counts, int32
    values) and how to evaluate them: an output channel order putting the channels that are
    provably exact requantizers first, plus the requantizer for those."""
    from .requant import fit_requantizer

    lo, hi = (acc_type.min, acc_type.max + 1) if acc_type else (-(2**31), 2**31 - 1)
    thr = np.clip(np.ceil(thr), lo, hi).astype(np.int64)
    thr = np.broadcast_to(thr, (channels, thr.shape[1])) if thr.shape[0] == 1 else thr
    if np.any(np.diff(thr, axis=1) < 0):  # unsorted rows: compare against every threshold
        return np.arange(channels), {"kind": "direct", "thr": thr}
    fitted = fit_requantizer(thr, lo, hi - 1) if acc_type else None
    if fitted is None:
        return np.arange(channels), {"kind": "table", "thr": thr, "pad": hi}
    rq, proven = fitted
    order = np.concatenate([np.flatnonzero(proven), np.flatnonzero(~proven)])
    return order, {"kind": "mixed", "thr": thr[order], "pad": hi, "rq": rq, "order": order,
                   "n_rq": int(proven.sum())}


def _emit_thresholds(b: _Builder, acc: str, plan: dict, bias: int, hint: str) -> str:
    """count(acc >= T[c, :]) + bias per channel (last axis), exactly as FINN defines it.
    Channels are in the plan's order (requantizer channels first)."""
    thr = plan["thr"]
    if plan["kind"] == "direct":
        ax = b.const(np.array([-1]), "ax")
        ge = b.op("GreaterOrEqual", [b.op("Unsqueeze", [acc, ax], hint),
                                     b.const(thr.astype(np.int32), f"{hint}_thr")], hint)
        count = b.op("ReduceSum", [b.op("Cast", [ge], hint, to=_I32), ax], hint, keepdims=0)
    elif plan["kind"] == "table":
        count = _threshold_two_level(b, acc, thr, hint, plan["pad"])
    else:
        count = _emit_mixed(b, acc, plan, hint)
    return b.op("Add", [count, b.const(np.array(bias, np.int32), "bias")], hint) if bias else count


def _emit_mixed(b: _Builder, acc: str, plan: dict, hint: str) -> str:
    """First n_rq channels: (acc * M + B) >> S clipped to [0, n]; the rest: table search."""
    rq, n_rq, order = plan["rq"], plan["n_rq"], plan["order"]
    channels = len(order)
    good = order[:n_rq]

    def sl(start: int, stop: int) -> str:
        return b.op("Slice", [acc, b.const(np.array([start]), "s"), b.const(np.array([stop]), "e"),
                              b.const(np.array([-1]), "ax")], hint)

    acc_rq = acc if n_rq == channels else sl(0, n_rq)
    y = b.op("Add", [b.op("Mul", [b.op("Cast", [acc_rq], hint, to=_I64),
                                  b.const(rq.mult[good], f"{hint}_m")], hint),
                     b.const(rq.add[good], f"{hint}_b")], hint)
    # Truncating Div then clip to [0, n]: trunc and floor differ only below 0, which clips to 0
    # either way. The quotient fits int32 (checked when fitting). Clip/Max/Min are not used on
    # int64: onnxruntime 1.25 mishandles int64 values above 2^31 in them.
    y = b.op("Div", [y, b.const(np.array(2**rq.shift, np.int64), "pow")], hint)
    y = b.op("Clip", [b.op("Cast", [y], hint, to=_I32), b.const(np.array(0, np.int32), "lo"),
                      b.const(np.array(rq.levels, np.int32), "hi")], hint)
    if n_rq == channels:
        return y
    rest = _threshold_two_level(b, sl(n_rq, channels), plan["thr"][n_rq:], hint, plan["pad"])
    return b.op("Concat", [y, rest], hint, axis=-1)


def two_level_tables(thr: np.ndarray, pad_value: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Split sorted rows of n thresholds into G-1 coarse and G x (G-1) fine ones, G*G-1 >= n.

    Rows are padded with ``pad_value`` (above any accumulator), which never adds to a count.
    count(acc >= row) == b*G + count(acc >= fine[b]) with b = count(acc >= coarse).
    """
    channels, n = thr.shape
    g = max(2, int(np.ceil(np.sqrt(n + 1))))
    full = np.full((channels, g * g - 1), pad_value, dtype=np.int64)
    full[:, :n] = thr
    coarse = full[:, g - 1 :: g]  # indices G-1, 2G-1, ...: G-1 values
    fine = np.concatenate([full, np.full((channels, 1), pad_value)], axis=1).reshape(channels, g, g)
    return coarse, fine[:, :, : g - 1], g


def _threshold_two_level(b: _Builder, acc: str, thr: np.ndarray, hint: str, pad_value: int) -> str:
    """Exact multi-threshold in two steps of about sqrt(n) comparisons each instead of n:
    a compare against the coarse thresholds picks a bucket, one row Gather fetches that bucket's
    fine thresholds, a second compare counts within it (onnxruntime has no searchsorted)."""
    coarse, fine, g = two_level_tables(thr, pad_value)
    channels = coarse.shape[0]
    ax = b.const(np.array([-1]), "ax")
    acc_u = b.op("Unsqueeze", [acc, ax], hint)

    def count(table: str) -> str:
        ge = b.op("GreaterOrEqual", [acc_u, table], hint)
        return b.op("ReduceSum", [b.op("Cast", [ge], hint, to=_I32), ax], hint, keepdims=0)

    bucket = count(b.const(coarse.astype(np.int32), f"{hint}_coarse"))
    row = b.op("Add", [bucket, b.const((np.arange(channels) * g).astype(np.int32), f"{hint}_row")], hint)
    fine_rows = b.const(fine.reshape(channels * g, g - 1).astype(np.int32), f"{hint}_fine")
    within = count(b.op("Gather", [fine_rows, row], hint, axis=0))
    scaled = b.op("Mul", [bucket, b.const(np.array(g, np.int32), "g")], hint)
    return b.op("Add", [scaled, within], hint)


@register_piece("cpu", "MVAU", kind="perm", plan=plan_ops.mvau)
def _mvau(b: _Builder, x: str, perm, node: HWNode, graph: HWGraph):
    """MatMulInteger + thresholds. ``perm`` is the channel order the input arrives in; it is
    absorbed into the weight rows, and the output leaves in the threshold plan's order (the next
    MVAU absorbs it the same way, so no reordering op runs between layers).

    Binary XNOR MVAUs (0/1 bits standing for -1/+1): popcount(xnor(x, w)) =
    x . (2w - 1) + MW - colsum(w), one exact MatMulInteger of the 0/1 inputs with +-1 weights
    plus a per-channel constant. BIPOLAR x BIPOLAR MVAUs (no binaryXnorMode) count agreements
    too, as FINN executes them: (x . w + MW) / 2."""
    from netfabric.ops.defs.mvau import bipolar_pair

    from .hwgraph import IntType

    xnor = bool(node.attr("binaryXnorMode", 0))
    bipolar = not xnor and bipolar_pair(node)  # FINN counts agreements: (x . w + MW) / 2
    if xnor and (node.attr("inputDataType"), node.attr("weightDataType")) != ("BINARY", "BINARY"):
        raise GraphError(f"node {node.name}: binary XNOR MVAUs need BINARY inputs and weights")
    w = graph.params[node.inputs[1]]
    wtype = IntType(node.attr("weightDataType"))
    itype = IntType(node.attr("inputDataType"))
    wq = w.astype(np.int8 if wtype.signed else np.uint8)
    if not np.array_equal(wq, w):
        raise GraphError(f"node {node.name}: weights are not {wtype.name} integers")
    if perm is not None:
        wq = wq[perm, :]
    out_perm = None
    plan = None
    if not node.attr("noActivation", 0):
        acc_name = node.attr("accDataType")
        if xnor or bipolar:  # the popcount is 0..MW whatever accDataType says
            acc_name = f"UINT{int(w.shape[0]).bit_length()}"
        order, plan = _threshold_plan(graph.params[node.inputs[2]], wq.shape[1],
                                      IntType(acc_name) if acc_name else None)
        if not np.array_equal(order, np.arange(len(order))):
            wq, out_perm = wq[:, order], order
    # FINN's MVAU views its input as numInputVectors x MW (this absorbs a conv->FC flatten).
    vec_shape = [-1, *list(node.attr("numInputVectors", [1]))[1:], w.shape[0]]
    x = b.op("Reshape", [x, b.const(np.array(vec_shape), "shape")], node.name)
    if xnor:
        offset = (wq.shape[0] - wq.astype(np.int32).sum(0)).astype(np.int32)  # MW - colsum(w)
        dot = matmul_integer(b, x, itype, 2 * wq.astype(np.int8) - 1, True, node.name)
        acc = b.op("Add", [dot, b.const(offset, f"{node.name}_xnor")], node.name)
    elif itype.bits > 8:  # e.g. a pooled sum: int32 MatMul, when the accumulator fits int32
        bound = int(np.abs(wq.astype(np.int64)).sum(0).max()) * max(-itype.min, itype.max)
        if bound >= 2**31:
            raise GraphError(f"node {node.name}: {itype.name} inputs could overflow an int32 "
                             "accumulator")
        acc = b.op("MatMul", [x, b.const(wq.astype(np.int32), f"{node.name}_w")], node.name)
    else:
        acc = matmul_integer(b, x, itype, wq, wtype.signed, node.name)
    if bipolar:  # x . w + MW is even: the division is exact
        acc = b.op("Add", [acc, b.const(np.array(w.shape[0], np.int32), "mw")], node.name)
        acc = b.op("Div", [acc, b.const(np.array(2, np.int32), "two")], node.name)
    if plan is None:
        return acc, None
    return _emit_thresholds(b, acc, plan, int(node.attr("ActVal", 0)), node.name), out_perm


@register_piece("cpu", "Thresholding", kind="single", plan=plan_ops.thresholding)
def _thresholding(b: _Builder, x: str, node: HWNode, graph: HWGraph) -> str:
    """Standalone thresholds on the input values (FINN's Thresholding layer)."""
    thr = graph.params[node.inputs[1]]
    channels = int(graph.shapes[node.outputs[0]][-1])
    in_type = graph.dtypes.get(node.inputs[0])
    if in_type and in_type.max - in_type.min < LOOKUP_MAX:
        return _threshold_lookup(b, x, thr, channels, in_type, int(node.attr("ActVal", 0)),
                                 node.name)
    order, plan = _threshold_plan(thr, channels, in_type)
    if plan["kind"] == "mixed":  # a standalone layer keeps its channel order: table search
        plan = {"kind": "table", "thr": plan["thr"][np.argsort(order)], "pad": plan["pad"]}
    return _emit_thresholds(b, x, plan, int(node.attr("ActVal", 0)), node.name)


LOOKUP_MAX = 4096  # inputs with fewer distinct values are thresholded by one table lookup


def _threshold_lookup(b: _Builder, x: str, thr: np.ndarray, channels: int, in_type, act_val: int,
                      hint: str) -> str:
    """A narrow input (e.g. INT8/INT9) takes few values: tabulate count(v >= T[c]) + ActVal for
    every value v once, then one Gather per element replaces the threshold search."""
    values = np.arange(in_type.min, in_type.max + 1)
    table = (values[None, :, None] >= thr[:, None, :]).sum(-1) + act_val  # [C or 1, R]
    idx = b.op("Sub", [x, b.const(np.array(in_type.min, np.int32), "lo")], hint)
    if table.shape[0] > 1:  # per channel: row c starts at c * R in the flattened table
        if table.shape[0] != channels:
            raise GraphError(f"node {hint}: {table.shape[0]} threshold rows for {channels} channels")
        idx = b.op("Add", [idx, b.const((np.arange(channels) * len(values)).astype(np.int32),
                                        f"{hint}_row")], hint)
    return b.op("Gather", [b.const(table.reshape(-1).astype(np.int32), f"{hint}_lut"), idx], hint,
                axis=0)


def _im2col_indices(h: int, w: int, c: int, k: tuple[int, int], s: tuple[int, int],
                    d: tuple[int, int]) -> np.ndarray:
    oh = (h - d[0] * (k[0] - 1) - 1) // s[0] + 1
    ow = (w - d[1] * (k[1] - 1) - 1) // s[1] + 1
    oy, ox, ky, kx, ch = np.meshgrid(np.arange(oh), np.arange(ow), np.arange(k[0]),
                                     np.arange(k[1]), np.arange(c), indexing="ij")
    flat = ((oy * s[0] + ky * d[0]) * w + (ox * s[1] + kx * d[1])) * c + ch
    return flat.reshape(oh, ow, k[0] * k[1] * c).astype(np.int64)


@register_piece("cpu", "ConvolutionInputGenerator", kind="single", plan=plan_ops.swg)
def _swg(b: _Builder, x: str, node: HWNode, graph: HWGraph) -> str:
    h, w = node.attr("IFMDim")
    c = node.attr("IFMChannels")
    idx = _im2col_indices(h, w, c, tuple(node.attr("ConvKernelDim")), tuple(node.attr("Stride")),
                          tuple(node.attr("Dilation", [1, 1])))
    flat = b.op("Reshape", [x, b.const(np.array([-1, h * w * c]), "shape")], node.name)
    return b.op("Gather", [flat, b.const(idx, f"{node.name}_idx")], node.name, axis=1)


@register_piece("cpu", "Pool", kind="single", plan=plan_ops.pool)
def _pool(b: _Builder, x: str, node: HWNode, graph: HWGraph) -> str:
    if node.attr("Function") != "MaxPool":
        raise GraphError(f"node {node.name}: only MaxPool is supported, not {node.attr('Function')}")
    k = node.attr("KernelSize")
    ch = node.attr("Channels")
    oh, ow = node.attr("OutImgDims")
    r = b.op("Reshape", [x, b.const(np.array([-1, oh, ow, k[0] * k[1], ch]), "shape")], node.name)
    return b.op("ReduceMax", [r, b.const(np.array([3]), "ax")], node.name, keepdims=0)


@register_piece("cpu", "LabelSelect", kind="single", plan=plan_ops.label_select)
def _label_select(b: _Builder, x: str, node: HWNode, graph: HWGraph) -> str:
    k = b.const(np.array([int(node.attr("K"))]), "k")
    topk = b.helper.make_node("TopK", [x, k], [f"{node.name}_val", f"{node.name}_idx"], axis=-1)
    b.nodes.append(topk)
    return f"{node.name}_idx"


@register_piece("cpu", "StreamingFIFO", kind="pass", plan=plan_ops.passthrough)
@register_piece("cpu", "StreamingDataWidthConverter", kind="pass", plan=plan_ops.passthrough)
@register_piece("cpu", "DuplicateStreams", kind="pass", plan=plan_ops.passthrough)
def _identity(b: _Builder, x: str, node: HWNode, graph: HWGraph) -> str:
    return x


def lower_to_onnx(graph: HWGraph, extra_outputs: list[str] | None = None):
    """Translate a HW-layer graph (a DAG of streaming layers in topological order: forks,
    joins such as residual adds) into an integer ONNX model."""
    from onnx import TensorProto, helper

    b = _Builder()
    in_shape = graph.input_shape
    x = "input"
    tensor_map = {graph.input_name: b.op("Cast", [x], "in", to=_I32)}
    perms: dict[str, np.ndarray | None] = {}

    def natural(name: str) -> str:
        """The tensor with its channels back in natural order."""
        perm = perms.get(name)
        if perm is None:
            return tensor_map[name]
        return b.op("Gather", [tensor_map[name], b.const(np.argsort(perm), "unperm")], "unperm", axis=-1)

    for node in graph.nodes:
        piece = require(node.op_type, ("cpu",), node.name).piece("cpu")
        kind = piece.options["kind"]
        # stream inputs are the non-parameter ones; they must already be lowered
        streams = [t for t in node.inputs if t and t not in graph.params]
        missing = [t for t in streams if t not in tensor_map]
        if not streams or missing:
            raise GraphError(f"node {node.name}: input {(missing or node.inputs)[0]} is not "
                             "produced earlier")
        src, out = streams[0], node.outputs[0]
        if kind == "pass":
            for name in node.outputs:
                tensor_map[name], perms[name] = tensor_map[src], perms.get(src)
        elif kind == "multi":
            lowered = piece.fn(b, {t: natural(t) for t in streams}, node, graph)
            tensor_map.update(zip(node.outputs, lowered, strict=True))
        elif kind == "perm":
            perm = perms.get(src)
            width = graph.params[node.inputs[1]].shape[0]
            if perm is not None and len(perm) != width:  # e.g. a flatten in between
                tensor_map[out], perms[out] = piece.fn(b, natural(src), None, node, graph)
            else:
                tensor_map[out], perms[out] = piece.fn(b, tensor_map[src], perm, node, graph)
        else:
            tensor_map[out] = piece.fn(b, natural(src), node, graph)
    outputs = [graph.output_name, *(extra_outputs or [])]
    final_nodes = []
    out_infos = []
    for i, name in enumerate(outputs):
        if name not in tensor_map:
            raise GraphError(f"tensor {name} is not produced by the graph")
        out = f"output{i}"
        final_nodes.append(helper.make_node("Cast", [natural(name)], [out], to=_I64))
        out_infos.append(helper.make_tensor_value_info(out, TensorProto.INT64, None))
    in_info = helper.make_tensor_value_info(x, TensorProto.INT32, ["N", *in_shape[1:]])
    g = helper.make_graph(b.nodes + final_nodes, "netfabric_cpu", [in_info], out_infos, b.inits)
    # IR version 9 (opset 18): what onnxruntime >= 1.16 reads. helper.make_model would stamp the
    # installed onnx's newest IR version, which an older onnxruntime beside it refuses.
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)


class CpuEngine:
    """Run a compiled HW-layer graph on the CPU, bit-exactly.

    ``run(x)`` takes a batch in the model's original input layout (e.g. uint8 pixels
    ``[N, 1, 28, 28]``) and returns the integer output of the graph (labels or integer logits).

    ``mode``: "int8" runs a chain of 8-bit MVAUs (an MLP) as one onnxruntime session of
    integer GEMMs whose kernels are first proven exact on this CPU (``cpu_int8.py``), "plan"
    the graph as a compiled numpy plan (``cpu_plan.py``: numpy alone), "onnx" as integer ONNX
    on onnxruntime (the lowering above); "auto" takes the first of int8, plan, onnx that
    applies. ``threads`` also caps numpy's BLAS pool, which is process-wide (threadpoolctl,
    when installed); the plan also asks glibc to keep freed memory for reuse (``cpu_alloc.py``,
    process-wide).
    """

    name = "cpu"

    def __init__(self, graph_path: str | Path, threads: int = 1,
                 extra_outputs: list[str] | None = None, mode: str = "auto",
                 route_timer: Callable[[int, int], float] | None = None):
        """``route_timer(path, batch)``: seconds for a batch of ``batch`` rows on path 0 (the
        int8 chain) or 1 (the plan), which routes batches between the two in "auto" mode
        when both apply (default: timed here on random inputs, ``path_timer``)."""
        self.graph = load_hwgraph(graph_path)
        self.extra_outputs = extra_outputs or []
        self.input_type = self.graph.dtypes.get(self.graph.input_name)
        self.input_shape = json.loads(self.graph.metadata.get("host_input_shape", "null")) or \
            self.graph.input_shape
        self._pre = self.graph.host_steps("host_pre")
        self._post = self.graph.host_steps("host_post")
        # reshapes alone: the int8 chain's [N, K] rows are one reshape of the batch
        self._flat_pre = all(step["op"] == "Reshape" for step in self._pre)
        if mode not in ("auto", "int8", "plan", "onnx"):
            raise ValueError(f"mode must be auto, int8, plan or onnx, not {mode!r}")
        outputs = [self.graph.output_name, *self.extra_outputs]
        self.int8 = None
        if mode in ("auto", "int8") and self.input_type is not None:
            self.int8 = build_chain(self.graph, self.input_type.min, self.input_type.max,
                                    outputs, threads)
        if mode == "int8" and self.int8 is None:
            raise GraphError("no exact int8 path: the graph is not a chain of 8-bit MVAUs with "
                             "a typed input, or onnxruntime's int8 kernels failed their probe")
        auto = mode == "auto"
        if auto:
            mode = "int8" if self.int8 is not None else \
                "plan" if self.input_type is not None and has_plan(self.graph) else "onnx"
        self.mode = mode
        # the int8 chain runs batches below ``_route[1]`` rows, the plan from it (or the other
        # way round: path ``_route[0]`` first; split None: that path at every size)
        self._route: tuple[int, int | None] = (0, None)
        plan_too = auto and mode == "int8" and has_plan(self.graph)
        if mode == "plan" or plan_too:
            if self.input_type is None:
                raise GraphError("the plan needs the graph input's integer type")
            try:
                self.plans = self._compile_plans(outputs)
            except (GraphError, NotImplementedError):
                if not plan_too:
                    raise
                plan_too = False  # the int8 chain runs every batch, as it can
        if mode == "plan" or plan_too:
            plan = self.plans[-1][1]
            self._in_dtype = plan.info[self.graph.input_name].dtype
            # MVAUs convert their operand to their product's dtype themselves: no extra pass
            readers = [n for n in self.graph.nodes if self.graph.input_name in n.inputs]
            self._cast_input = not all(n.op_type.startswith("MVAU") for n in readers)
            self._chunk = chunk_rows(self.graph)
            _limit_blas_threads(threads)
            keep_freed_memory()
        elif mode == "onnx":
            self.session = _ort_session(lower_to_onnx(self.graph, self.extra_outputs), threads)
        # integer dtypes whose every value is in range need no range scan
        self._safe_dtypes = {np.dtype(t) for t in (np.uint8, np.int8, np.uint16, np.int16,
                                                   np.int32, np.int64, np.uint32)
                             if self.input_type is not None
                             and np.iinfo(t).min >= self.input_type.min
                             and np.iinfo(t).max <= self.input_type.max}
        # ``run`` hands a batch of a safe dtype in the model's shape straight to the int8
        # chain: one test instead of ``_validate``'s (about 1 us, at batch 1 a fifteenth of
        # the call)
        self._direct_shape = tuple(self.input_shape[1:]) \
            if mode == "int8" and self._flat_pre and not self._post else None
        if plan_too:
            # the plan's one-pass lines (cpu_fused) can beat the int8 session's elementwise
            # thresholds on large batches where the int8 GEMM is slow (no VNNI): both are
            # exact, so each batch runs on the one timed faster for its size here
            timer = route_timer or path_timer(self)
            self._route = batch_routing([(timer(i, ROUTE_SMALL), timer(i, ROUTE_LARGE))
                                         for i in range(2)])
            log.info("cpu engine: %s", self.routing())

    def _compile_plans(self, outputs: list[str]) -> list[tuple]:
        """(largest batch, plan, output slots): a plan for a few rows, then one for any."""
        plans = []
        for small in (True, False):
            plan, infos = compile_plan(self.graph, self.input_type.min, self.input_type.max,
                                       outputs, small=small)
            plans.append((SMALL_BATCH if small else None, plan, [i.slot for i in infos]))
        return plans

    def _validate(self, x: np.ndarray, safe: set | frozenset = frozenset()) -> np.ndarray:
        """Shape, integrality and range checked (not the range of ``safe`` dtypes); the
        batch in the host's input layout."""
        x = np.asarray(x)
        want = list(self.input_shape[1:])
        if x.ndim == len(want):
            x = x[None]
        if list(x.shape[1:]) != want:
            raise ValueError(f"input shape {list(x.shape)} does not match the model's [N, {', '.join(map(str, want))}]")
        if x.dtype in safe:
            return x
        if not np.issubdtype(x.dtype, np.integer):
            if not np.all(np.isfinite(x)) or not np.array_equal(x, np.round(x)):
                raise ValueError("input must hold integers (raw pixel values), not scaled floats")
        if self.input_type and (x.min(initial=0) < self.input_type.min or x.max(initial=0) > self.input_type.max):
            raise ValueError(f"input values must lie in {self.input_type.name} "
                             f"[{self.input_type.min}, {self.input_type.max}]")
        return x

    def check_input(self, x: np.ndarray) -> np.ndarray:
        """Validate shape, integrality and range; return the batch as int32 in graph layout.
        (Also called unbound by other backends: uses graph, input_shape, input_type only.)"""
        x = CpuEngine._validate(self, x).astype(np.int32)
        return np.ascontiguousarray(apply_host_steps(x, self.graph.host_steps("host_pre")))

    def path_for(self, batch: int) -> str:
        """Which executor runs a batch of ``batch`` rows: "int8", "plan" or "onnx"."""
        if self.mode != "int8":
            return self.mode
        first, split = self._route
        return ("int8", "plan")[first if split is None or batch < split else 1 - first]

    def routing(self) -> str:
        """Which executor runs which batch sizes, in words."""
        if self.mode != "int8":
            return f"the {self.mode} executor at every batch size"
        chain = f"int8 chain ({self.int8.routing()})"
        names = (chain, "numpy plan")
        first, split = self._route
        if split is None:
            return f"{names[first]} at every batch size"
        return f"{names[first]} below batch {split}, {names[1 - first]} from it"

    def run(self, x: np.ndarray) -> np.ndarray:
        if self._direct_shape is not None and type(x) is np.ndarray and \
                x.shape[1:] == self._direct_shape and x.dtype in self._safe_dtypes and \
                self.path_for(len(x)) == "int8":
            return self.int8.run(x.reshape(len(x), -1))
        return self.run_all(x)[0]

    def run_all(self, x: np.ndarray) -> list[np.ndarray]:
        if self.mode == "onnx":
            outs = self.session.run(None, {"input": self.check_input(x)})
        else:
            xs = self._validate(x, self._safe_dtypes)
            int8 = self.mode == "int8" and self.path_for(len(xs)) == "int8"
            if int8 and self._flat_pre:
                outs = [self.int8.run(xs.reshape(len(xs), -1))]
            else:
                if self._pre:
                    xs = apply_host_steps(xs, self._pre)
                outs = [self.int8.run(xs)] if int8 else self._run_chunks(xs)
        if self._post:
            outs[0] = apply_host_steps(outs[0], self._post)
        return outs

    def _run_chunks(self, xs: np.ndarray) -> list[np.ndarray]:
        if self._cast_input or xs.dtype.kind not in "iu":  # (np.issubdtype: a slow call)
            xs = xs.astype(self._in_dtype)
        if len(xs) <= self._chunk:
            return self._run_plan(xs)
        # equal chunks of rows whose temporaries stay in cache
        size = -(-len(xs) // -(-len(xs) // self._chunk))
        parts = [self._run_plan(xs[i : i + size]) for i in range(0, len(xs), size)]
        return [np.concatenate(o) for o in zip(*parts, strict=True)]

    def _run_plan(self, xs: np.ndarray) -> list[np.ndarray]:
        small, plan, slots = self.plans[0]
        if len(xs) > small:
            _, plan, slots = self.plans[1]
        return [o.astype(np.int64) for o in plan.run(xs, slots)]


def path_timer(engine: CpuEngine) -> Callable[[int, int], float]:
    """``timer(path, batch)``: the best wall time of the engine's int8 chain (path 0) or plan
    (path 1) on a batch of random inputs in the graph input's range."""
    rng = np.random.default_rng(0)
    kind = engine.input_type
    # in the smallest dtype the range needs no check in (a caller's pixels: uint8)
    dtype = min(engine._safe_dtypes, key=lambda d: d.itemsize, default=np.dtype(np.int64))

    def timer(path: int, batch: int) -> float:
        x = rng.integers(kind.min, kind.max + 1, size=(batch, *engine.input_shape[1:]))
        x = x.astype(dtype)
        saved, engine._route = engine._route, (path, None)
        try:
            for _ in range(ROUTE_WARMUP):
                engine.run(x)
            best = float("inf")
            for _ in range(ROUTE_REPEATS.get(batch, 5)):
                t0 = time.perf_counter()
                engine.run(x)
                best = min(best, time.perf_counter() - t0)
        finally:
            engine._route = saved
        return best
    return timer


CHUNK_VALUES = 3 << 17  # a chunk's largest tensor holds at most this many values (3 MiB in float64)


def chunk_rows(graph: HWGraph) -> int:
    """Rows per plan run: large batches run in chunks so that each step's temporaries stay
    in the core's cache; small models (the MLP) run whole. Measured on the shipped transformer
    at batch 64 (CPU time, under load): chunks of 32 rows 11.8 ms, 16 rows 12.4, 8 rows 13.8,
    whole 12.2 (with fewer temporaries since the thresholds run in place; 16 rows had been
    best before)."""
    per_row = max((int(np.prod(shape[1:])) for shape in graph.shapes.values() if shape),
                  default=1)
    return max(2 * SMALL_BATCH, CHUNK_VALUES // max(per_row, 1))


def _ort_session(onnx_model, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    # Spinning threads steal the other core on small machines; latency barely changes.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(onnx_model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])


def _limit_blas_threads(threads: int) -> None:
    """numpy's BLAS would otherwise start a thread per core for larger matmuls."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # e.g. on a board: BLAS keeps its own default
        return
    threadpool_limits(limits=threads, user_api="blas")
