"""The CPU engine's int8 path: a chain of MVAUs (an MLP) as ONE onnxruntime session of integer
GEMMs, each kernel proven exact on the running machine before it is used.

Why: the plan (``cpu_plan.py``) multiplies in float32 BLAS; onnxruntime's MatMulInteger runs
MLAS's u8 x s8 kernel, ~4x the multiply-adds per instruction where the CPU has VNNI, on a
quarter of the weight bytes. One session for the whole chain also pays the Python-to-runtime
crossing once per call instead of once per layer.

Exactness, layer by layer:
- the GEMM: MatMulInteger is exact integer arithmetic by its definition, but MLAS's u8 x s8
  kernel on x86 CPUs without VNNI sums pairs of products in int16 with saturation
  (vpmaddubsw: 255 * 127 * 2 > 32767), i.e. silently wrong. So every layer's kernel is *probed*
  when the session is built (``probe_gemm``): the layer's own weights against the inputs that
  drive every column's pair sums to their extremes, plus random rows, compared with an int64
  numpy product. A failing u8 x s8 kernel gives way to u8 x u8 (which widens to 16 bits before
  multiplying), a failing u8 x u8 to the numpy plan;
- the thresholds: the same proven line (plus single-point fixes) as the plan
  (``cpu_thresholds.ThresholdEval``), emitted as the same IEEE operations in the same dtype
  (Cast, Mul, Add, Max/Min, Floor), each correctly rounded, so the plan's proof carries over;
  they are also re-checked through onnxruntime on every proof point (``probe_thresholds``).
  Channels that are no line use the integer table search of the ONNX lowering. Where the
  next layer can take them, the fixes leave the layer as step columns (``Steps``: exact
  power-of-two lines, the next layer's weights undo the line's misplaced steps), so every
  column is one monotone line, probed on the points that pin each of its steps
  (``probe_steps``);
- between layers the counts are cast to uint8 (with a zero point of 128 for signed ranges).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from netfabric.ops.defs.mvau import bipolar_pair

from .cpu_plan import exact_dtype
from .cpu_thresholds import ThresholdEval
from .hwgraph import HWGraph, HWNode, IntType

log = logging.getLogger(__name__)
PASS_OPS = ("StreamingFIFO", "StreamingDataWidthConverter")
PROBE_RANDOM_ROWS = 64
# multiply-adds per row that a layer's step columns may add to its GEMM and the next: 73k (86
# step columns on the MLP's first layer, K = 784, next layer 64 wide) measured faster than
# that layer's 4 fix ops at batch 1 and at batch 64
STEPS_MAX_MACS = 1 << 17
_U8, _I8, _I32, _I64, _F32, _F64 = 2, 3, 6, 7, 1, 11  # onnx TensorProto enums

# gemm(w, w_zero, x_zero, x) -> int32 x @ w with zero points: w uint8/int8 [K, N], x uint8 [M, K]
Gemm = Callable[[np.ndarray, int, int, np.ndarray], np.ndarray]


@dataclass
class Steps:
    """A layer's single-point fixes as extra output columns, each a step ``[acc >= point]``
    of the accumulator of column ``cols[i]``, which the next layer weighs with ``signs[i]``
    times that column's weights: a fix ``count = line - delta * [acc == p]`` is the pair
    ``-delta * [acc >= p] + delta * [acc >= p + 1]``. Every line column is then a plain
    clipped line (a step is a line too), so a layer needs no compare, gather or scatter.
    The step columns sit after the line's channels, before those of the table search."""

    cols: np.ndarray  # [S] the layer's column (in ``order``) each step copies
    points: np.ndarray  # [S]
    signs: np.ndarray  # [S] +-1
    at: int  # the step columns' first position among the layer's columns

    def insert(self, x: np.ndarray, extra: np.ndarray) -> np.ndarray:
        """``extra`` [N, S] placed among the columns of ``x`` [N, C] at ``at``."""
        return np.concatenate([x[:, : self.at], extra, x[:, self.at :]], axis=1)


@dataclass
class Layer:
    """One MVAU of the chain as the int8 session computes it."""

    node: HWNode
    w: np.ndarray  # int64 [K, N], rows in the order the input arrives, columns in ``order``
    x_zero: int  # the uint8 input holds value + x_zero
    x_lo: int
    x_hi: int
    order: np.ndarray | None = None  # column i is natural channel order[i]
    ev: ThresholdEval | None = None  # None: noActivation (the accumulator is the output)
    fast: bool = True  # the fixes folded into the line's bias (``_emit_line``)
    steps: Steps | None = None  # the fixes as step columns (``Steps``) instead


def u8_offset(lo: int, hi: int) -> int | None:
    """The zero point that puts integers [lo, hi] into uint8, or None when none does."""
    if 0 <= lo and hi <= 255:
        return 0
    if -128 <= lo and hi <= 127:
        return 128
    return None


def chain_nodes(graph: HWGraph, outputs: list[str]) -> list[HWNode] | None:
    """The graph's MVAUs when it is one chain of plain (not binary/bipolar) MVAUs, FIFOs and
    width converters ending in the only requested output; else None."""
    if outputs != [graph.output_name]:
        return None
    mvaus, src = [], graph.input_name
    for node in graph.nodes:
        if node.inputs[0] != src or len(node.outputs) != 1:
            return None
        if node.op_type.startswith("MVAU"):
            mw = graph.params[node.inputs[1]].shape[0]
            if node.attr("binaryXnorMode", 0) or bipolar_pair(node) or \
                    list(graph.shapes.get(src, [])[1:]) != [mw]:  # [N, MW] rows only
                return None
            mvaus.append(node)
        elif node.op_type not in PASS_OPS:
            return None
        src = node.outputs[0]
    return mvaus if mvaus and src == graph.output_name else None


def plan_layers(graph: HWGraph, nodes: list[HWNode], in_lo: int, in_hi: int) -> list[Layer] | None:
    """Each MVAU's weights, ranges and thresholds; None when some operand is not 8-bit."""
    from .cpu_plan_ops import _threshold_ints

    layers, lo, hi, perm = [], in_lo, in_hi, None
    for i, node in enumerate(nodes):
        w = np.asarray(graph.params[node.inputs[1]], np.int64)
        x_zero = u8_offset(lo, hi)
        if x_zero is None or IntType(node.attr("weightDataType")).bits > 8:
            return None
        if perm is not None:
            w = w[perm, :]
        layer = Layer(node, w, x_zero, lo, hi)
        lo_c = np.minimum(w * lo, w * hi).sum(0)
        hi_c = np.maximum(w * lo, w * hi).sum(0)
        if node.attr("noActivation", 0):
            if i != len(nodes) - 1:
                return None  # an accumulator feeding another MVAU is wider than 8 bits
            layers.append(layer)
            break
        thr = _threshold_ints(graph, node.inputs[2])
        act = int(node.attr("ActVal", 0))
        per_row = thr.shape[0] == w.shape[1]
        acc_dtype = exact_dtype(int(np.maximum(np.abs(lo_c), np.abs(hi_c)).max()))
        layer.ev = ThresholdEval(thr, w.shape[1], lo_c if per_row else lo_c.min(),
                                 hi_c if per_row else hi_c.max(), act, acc_dtype,
                                 np.float32, permutable=True)
        if layer.ev.kind == "line" and not np.array_equal(layer.ev.order, np.arange(w.shape[1])):
            layer.order = perm = layer.ev.order
            layer.w = w[:, perm]
        else:
            perm = None
        lo, hi = act, act + thr.shape[1]
        layers.append(layer)
    return layers


def fits_int32(layers: list[Layer]) -> bool:
    """Whether every raw uint8 product sum fits MLAS's int32 accumulator (zero points are
    corrected after the sum: a K-long sum of 255 * 255 must fit too)."""
    return all(layer.w.shape[0] * 255 * 255 < 2**31 for layer in layers)


# -- the session's graph --------------------------------------------------------------------
def _weights(w: np.ndarray, kind: str) -> tuple[np.ndarray, int]:
    """Integer weights as the kernel's operand ("s8": int8, "u8": uint8 + 128) and zero point."""
    if kind == "s8":
        return w.astype(np.int8), 0
    zero = 128 if w.min(initial=0) < 0 else 0
    return (w + zero).astype(np.uint8), zero


def _emit_gemm(b, x: str, layer: Layer, kind: str) -> str:
    wq, w_zero = _weights(layer.w, kind)
    name = layer.node.name
    return b.op("MatMulInteger", [x, b.const(wq, f"{name}_w"),
                                  b.const(np.array(layer.x_zero, np.uint8), "xz"),
                                  b.const(np.array(w_zero, wq.dtype), "wz")], name)


def _pick(v: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Per-channel values in ``order`` (one shared row stays as it is: it broadcasts)."""
    return v if v.shape[-1] == 1 else v[..., order]


def _float(dtype: np.dtype) -> int:
    return _F32 if dtype == np.float32 else _F64


def _emit_line(b, acc: str, ev: ThresholdEval, cols: slice, zero: int, fast: bool,
               hint: str, steps: Steps | None = None) -> str:
    """The proven line and its single-point fixes (``cpu_thresholds._fixed_line``: the same
    IEEE product, sum, clip and floor in the same dtype) plus ``zero`` on channels ``cols``,
    as floats whose truncation to an integer type is the count.

    ``fast``: the fixes are subtracted from the line's bias (one op fewer, and no floor before
    a cast): away from the fix points they subtract an exact 0, so only the fix points
    themselves can differ, and the probe checks every one of them.
    ``steps``: no fixes here; the line's columns, then the step columns (``Steps``)."""
    a, bias, clo, chi = _line_params(ev, cols, steps)
    dtype = a.dtype
    if dtype == np.float32:  # float(acc) * a in one op (int32 in, zero point 0)
        y = b.op("DequantizeLinear", [acc, b.const(a, f"{hint}_a"),
                                      b.const(np.zeros(a.shape, np.int32), f"{hint}_z")],
                 hint, axis=-1)
    else:
        y = b.op("Mul", [b.op("Cast", [acc], hint, to=_F64), b.const(a, f"{hint}_a")], hint)
    fixes = None if steps is not None else _fix_list(*_ordered_fixes(ev, cols))
    bias = b.const(bias, f"{hint}_b")
    if fixes is not None and fast:
        bias = _emit_fixes(b, acc, bias, fixes, dtype, hint)
    y = b.op("Add", [y, bias], hint)
    if np.all(clo == clo.flat[0]) and np.all(chi == chi.flat[0]):  # one op, scalar bounds
        y = b.op("Clip", [y, b.const(clo.flat[0], "lo"), b.const(chi.flat[0], "hi")], hint)
    else:
        y = b.op("Min", [b.op("Max", [y, b.const(clo, f"{hint}_lo")], hint),
                         b.const(chi, f"{hint}_hi")], hint)
    if (fixes is None or fast) and zero == 0 and clo.min() >= 0:
        return y  # the cast truncates: the floor of a non-negative value
    y = b.op("Floor", [y], hint)
    if fixes is not None and not fast:
        y = _emit_fixes(b, acc, y, fixes, dtype, hint)
    return b.op("Add", [y, b.const(np.array(zero, dtype), "zp")], hint) if zero else y


def _ordered_fixes(ev: ThresholdEval, cols: slice = slice(None)) -> tuple[np.ndarray, ...]:
    """The fixes' points and deltas [E, channels in ``ev.order``] (a shared row: every
    channel's)."""
    return tuple(np.broadcast_to(_pick(v, ev.order), (len(v), ev.channels))[:, cols]
                 for v in (ev.points, ev.deltas))


def _line_params(ev: ThresholdEval, cols: slice, steps: Steps | None) -> list[np.ndarray]:
    """(a, bias, clo, chi) of the line on channels ``cols`` in ``ev.order``, then of each
    step column: ``floor(acc * 2^-m + 1 - point * 2^-m)`` is 1 from ``point`` on and 0
    before it, all in (0, 2) on the range (``step_scale``), so no bound clips it."""
    if steps is None:
        return [_pick(p, ev.order)[cols] for p in ev.line]
    a, bias, clo, chi = (np.broadcast_to(_pick(p, ev.order), (ev.channels,))[cols]
                         for p in ev.line)
    scale = np.ldexp(a.dtype.type(1), -step_scale(ev))
    return [np.concatenate([a, np.full(len(steps.points), scale, a.dtype)]),
            np.concatenate([bias, (1 - steps.points * scale).astype(a.dtype)]),
            np.concatenate([clo, np.full(len(steps.points), min(0, clo.min()), a.dtype)]),
            np.concatenate([chi, np.full(len(steps.points), max(1, chi.max()), a.dtype)])]


def step_scale(ev: ThresholdEval) -> int:
    """m with 2^m > hi - lo + 1: a step column's value 1 + (acc - point) * 2^-m lies in
    (0, 2) for every acc in [lo, hi] and point in [lo, hi + 1]."""
    return int(ev.hi - ev.lo + 1).bit_length()


def steps_exact(ev: ThresholdEval) -> bool:
    """Whether every step column is exact in the line's dtype: acc, acc * 2^-m,
    1 - point * 2^-m and their sum are integers below 2^(m + 1) + max|acc| + 1 times a
    power of two, exactly representable when that bound fits the significand."""
    m = step_scale(ev)
    digits = np.finfo(ev.line[0].dtype).nmant + 1
    return 2**(m + 1) + max(abs(ev.lo), abs(ev.hi)) + 1 <= 2**digits


def _emit_fixes(b, acc: str, y: str, fixes, dtype: np.dtype, hint: str) -> str:
    """y - delta where acc == point: the few (channel, point) fixes as flat columns,
    gathered, compared, and scattered back by one Gemm onto y (0/1 x +-1 sums: exact, and
    exactly y where no fix applies)."""
    chan, points, scatter = fixes
    hit = b.op("Equal", [b.op("Gather", [acc, b.const(chan, f"{hint}_fc")], hint, axis=-1),
                         b.const(points.astype(np.int32), f"{hint}_fp")], hint)
    return b.op("Gemm", [b.op("Cast", [hit], hint, to=_float(dtype)),
                         b.const(-scatter.astype(dtype), f"{hint}_fd"), y], hint)


def _fix_list(points: np.ndarray, deltas: np.ndarray):
    """The single-point fixes [E, C] as (channel [F], point [F], scatter [F, C] holding each
    fix's delta in its channel's column); None when there are none."""
    e, c = np.nonzero(deltas)
    if not len(e):
        return None
    scatter = np.zeros((len(e), deltas.shape[1]), np.int64)
    scatter[np.arange(len(e)), c] = deltas[e, c]
    return c.astype(np.int64), points[e, c], scatter


def _emit_thresholds(b, acc: str, ev: ThresholdEval, zero: int, fast: bool, hint: str,
                     steps: Steps | None = None) -> str:
    """count(acc >= T[c]) + ActVal + ``zero``, channels in ``ev.order``, as a tensor whose
    cast to an integer type is exactly that (the line's floats, or int32 from the integer
    table forms of the ONNX lowering for channels that are no line); with ``steps``, the
    line's columns without their fixes, then the step columns."""
    from .cpu_engine import _emit_thresholds as emit_int
    from .cpu_engine import _threshold_two_level

    if ev.kind != "line":  # narrow or unsorted inputs
        plan = {"kind": "direct", "thr": ev.thr} if ev.kind == "direct" else \
            {"kind": "table", "thr": ev.thr, "pad": ev.hi + 1}
        return emit_int(b, acc, plan, ev.act + zero, hint)
    n_good = n_line(ev)
    if n_good == ev.channels:
        return _emit_line(b, acc, ev, slice(None), zero, fast, hint, steps)
    extra = len(steps.cols) if steps is not None else 0
    thr = ev.thr[ev.order][n_good:] if ev.thr.shape[0] > 1 else ev.thr
    table = _threshold_two_level(b, _slice(b, acc, n_good + extra, ev.channels + extra, hint),
                                 thr, hint, ev.hi + 1)
    table = b.op("Add", [table, b.const(np.array(ev.act + zero, np.int32), "act")], hint)
    if n_good == 0:
        return table
    # the line part floored (if _emit_line left that to the final cast): both parts hold
    # integers before they are joined
    line = _emit_line(b, _slice(b, acc, 0, n_good + extra, hint), ev, slice(0, n_good), zero,
                      fast, hint, steps)
    if zero == 0 and _pick(ev.line[2], ev.order)[:n_good].min() >= 0:
        line = b.op("Floor", [line], hint)
    dtype = ev.line[0].dtype
    return b.op("Concat", [line, b.op("Cast", [table], hint, to=_float(dtype))], hint, axis=-1)


def n_line(ev: ThresholdEval) -> int:
    """How many channels (the first ones in ``ev.order``) the line evaluates."""
    good = _pick(ev.good, ev.order)
    return int(good.sum()) if len(good) > 1 else (ev.channels if good[0] else 0)


def _slice(b, x: str, start: int, stop: int, hint: str) -> str:
    return b.op("Slice", [x, b.const(np.array([start]), "s"), b.const(np.array([stop]), "e"),
                          b.const(np.array([-1]), "ax")], hint)


def chain_model(layers: list[Layer], kinds: list[str]):
    """The whole chain as one ONNX model: uint8 "x" [N, K] -> int64 "y" [N, C], natural order."""
    from onnx import TensorProto, helper

    from .cpu_engine import _Builder

    b = _Builder()
    x = "x"
    for i, (layer, kind) in enumerate(zip(layers, kinds, strict=True)):
        hint = layer.node.name
        y = _emit_gemm(b, x, layer, kind)
        if layer.ev is not None and i + 1 < len(layers):
            zero = layers[i + 1].x_zero
            x = b.op("Cast", [_emit_thresholds(b, y, layer.ev, zero, layer.fast, hint,
                                               layer.steps)], hint, to=_U8)
        elif layer.ev is not None:
            y = _emit_thresholds(b, y, layer.ev, 0, layer.fast, hint)
    last = layers[-1]
    if last.order is not None:
        y = b.op("Gather", [y, b.const(np.argsort(last.order), "unperm")], "out", axis=-1)
    b.nodes.append(helper.make_node("Cast", [y], ["y"], to=_I64))
    k = layers[0].w.shape[0]
    g = helper.make_graph(b.nodes, "netfabric_int8",
                          [helper.make_tensor_value_info("x", TensorProto.UINT8, ["N", k])],
                          [helper.make_tensor_value_info("y", TensorProto.INT64, None)], b.inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)


def session(model, threads: int):
    """An onnxruntime session that runs the graph as built: no fusions past the basic level
    (e.g. MatMulInteger + Cast + Mul into MatMulIntegerToFloat, which the probes would not
    see), one thread pool of ``threads``, no spinning (cpu_engine._ort_session)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])


# -- probes ---------------------------------------------------------------------------------
def ort_gemm(w: np.ndarray, w_zero: int, x_zero: int, x: np.ndarray) -> np.ndarray:
    """onnxruntime's MatMulInteger as the chain's session runs it: constant (prepacked)
    weights and zero points, the same session options."""
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array(x_zero, np.uint8),
                                                                     "xz"),
             numpy_helper.from_array(np.array(w_zero, w.dtype), "wz")]
    node = helper.make_node("MatMulInteger", ["x", "w", "xz", "wz"], ["y"])
    g = helper.make_graph([node], "gemm_probe",
                          [helper.make_tensor_value_info("x", TensorProto.UINT8, ["N", w.shape[0]])],
                          [helper.make_tensor_value_info("y", TensorProto.INT32, None)], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
    run = session(model, 1).run
    rows = [run(None, {"x": x[i : i + 1]})[0] for i in range(min(len(x), 8))]  # M = 1 too
    full = run(None, {"x": x})[0]
    if not all(np.array_equal(r, full[i : i + 1]) for i, r in enumerate(rows)):
        return np.zeros_like(full)  # one batch size disagrees with another: not trusted
    return full


def probe_rows(wq: np.ndarray, lo: int, hi: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 inputs in [lo, hi] that drive every column's products, pair by pair, to their
    largest and smallest sums (``hi`` against positive raw weights, ``lo`` elsewhere, and the
    reverse): if any input overflows a kernel's intermediate sum of column c, the extreme rows
    of c do, with every error of one sign. Plus the constant rows and random rows."""
    pos = (wq.astype(np.int64) > 0).T  # [N, K]
    rows = [np.full((1, wq.shape[0]), lo), np.full((1, wq.shape[0]), hi),
            np.where(pos, hi, lo), np.where(pos, lo, hi),
            rng.integers(lo, hi + 1, size=(PROBE_RANDOM_ROWS, wq.shape[0]))]
    return np.concatenate(rows).astype(np.uint8)


def probe_gemm(layer: Layer, kind: str, gemm: Gemm) -> bool:
    """Whether ``gemm`` computes this layer's product exactly with ``kind`` weights."""
    wq, w_zero = _weights(layer.w, kind)
    rng = np.random.default_rng(0)
    x = probe_rows(wq, layer.x_lo + layer.x_zero, layer.x_hi + layer.x_zero, rng)
    want = (x.astype(np.int64) - layer.x_zero) @ layer.w
    got = gemm(wq, w_zero, layer.x_zero, x)
    return got.shape == want.shape and np.array_equal(got.astype(np.int64), want)


def threshold_model(ev: ThresholdEval, zero: int, to: int, fast: bool = True,
                    steps: Steps | None = None):
    """``_emit_thresholds`` alone: int32 "acc" [N, C (+ steps)] (channels in ``ev.order``)
    -> "y" cast to onnx type ``to``, exactly as ``chain_model`` emits it after a GEMM."""
    from onnx import TensorProto, helper

    from .cpu_engine import _Builder

    b = _Builder()
    b.nodes.append(helper.make_node(
        "Cast", [_emit_thresholds(b, "acc", ev, zero, fast, "thr", steps)], ["y"], to=to))
    width = ev.channels + (len(steps.cols) if steps is not None else 0)
    g = helper.make_graph(b.nodes, "thresholds",
                          [helper.make_tensor_value_info("acc", TensorProto.INT32, ["N", width])],
                          [helper.make_tensor_value_info("y", to, None)], b.inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)


def _ordered_check_points(ev: ThresholdEval) -> tuple[np.ndarray, np.ndarray]:
    """``ev.check_points()`` [P, channels in ``ev.order``] (a shared row: every channel's)."""
    pts, want = ev.check_points()
    if pts.shape[1] == 1:  # one shared row: every channel sees the same points
        return tuple(np.repeat(v, ev.channels, axis=1) for v in (pts, want))
    return pts[:, ev.order], want[:, ev.order]


def probe_thresholds(ev: ThresholdEval, zero: int, to: int, fast: bool = True) -> bool:
    """Whether onnxruntime's evaluation of the thresholds (``threshold_model``) equals the
    count plus ``zero`` on every check point of the line (``ThresholdEval.check_points``)."""
    pts, want = _ordered_check_points(ev)
    run = session(threshold_model(ev, zero, to, fast), 1).run
    got = run(None, {"acc": pts.astype(np.int32)})[0]
    return np.array_equal(got.astype(np.int64), want + zero)


def probe_steps(ev: ThresholdEval, steps: Steps, zero: int, to: int) -> bool:
    """Whether the steps form (``threshold_model`` with ``steps``) is exact: each line column
    equals the line's own staircase (the count plus its fixes) and each step column its step,
    on every check point. Every column is a monotone function of its accumulator with integer
    values, and the check points hold both sides of each of its steps and the range's ends,
    so that is every integer of the range; the fixes' algebra is checked on them too."""
    pts, want = _ordered_check_points(ev)
    points, deltas = _ordered_fixes(ev)
    line = want + sum((d * (pts == p) for p, d in zip(points, deltas, strict=True)),
                      np.zeros_like(want))
    step = (pts[:, steps.cols] >= steps.points).astype(np.int64)
    fixed = line.copy()
    np.add.at(fixed.T, steps.cols, (steps.signs * step).T)
    if not np.array_equal(fixed, want):  # the pairs undo exactly the line's misplaced steps
        return False
    run = session(threshold_model(ev, zero, to, steps=steps), 1).run
    got = run(None, {"acc": steps.insert(pts, pts[:, steps.cols]).astype(np.int32)})[0]
    return np.array_equal(got.astype(np.int64), steps.insert(line, step) + zero)


def step_plan(layer: Layer, nxt: Layer) -> Steps | None:
    """The layer's fixes as ``Steps`` when that form applies: fixes to move (not too many:
    ``STEPS_MAX_MACS``), step columns exact in the line's dtype, 0 and 1 inputs of the next
    layer (``nxt``), whose extra weight rows (+-its rows) fit every kernel kind its own rows
    fit."""
    ev = layer.ev
    if ev is None or ev.kind != "line" or not np.any(ev.deltas):
        return None
    if not steps_exact(ev) or not nxt.x_lo <= 0 < nxt.x_hi:
        return None
    points, deltas = _ordered_fixes(ev)
    e, c = np.nonzero(deltas)
    d = deltas[e, c]
    if 2 * len(d) * (layer.w.shape[0] + nxt.w.shape[1]) > STEPS_MAX_MACS:
        return None
    steps = Steps(np.concatenate([c, c]), np.concatenate([points[e, c], points[e, c] + 1]),
                  np.concatenate([-d, d]), n_line(ev))
    rows = steps.signs[:, None] * nxt.w[steps.cols]
    if any(_kind_fits(nxt.w, k) and not _kind_fits(np.concatenate([nxt.w, rows]), k)
           for k in ("s8", "u8")):
        return None
    return steps


def with_steps(layers: list[Layer]) -> list[Layer]:
    """The layers with their step columns: a layer's weight columns copied for its steps, the
    next layer's rows for them its rows times the steps' signs."""
    out = [replace(layer) for layer in layers]
    for layer, nxt in zip(out, out[1:], strict=False):
        if layer.steps is not None:
            s = layer.steps
            layer.w = s.insert(layer.w, layer.w[:, s.cols])
            nxt.w = s.insert(nxt.w.T, (s.signs[:, None] * nxt.w[s.cols]).T).T
    return out


def pick_forms(layers: list[Layer], steps: bool = True) -> bool:
    """Per layer with thresholds the first form that passes its probe as ``chain_model``
    emits it (``steps``: the fixes as step columns where ``step_plan`` allows them; fixes in
    the bias; after the floor); False when a layer passes in none."""
    for i, layer in enumerate(layers):
        layer.steps = None
        if layer.ev is None:
            continue
        last = i + 1 == len(layers)
        zero, to = (0, _I64) if last else (layers[i + 1].x_zero, _U8)
        plan = step_plan(layer, layers[i + 1]) if steps and not last else None
        if plan is not None and probe_steps(layer.ev, plan, zero, to):
            layer.steps = plan
            continue
        layer.fast = probe_thresholds(layer.ev, zero, to, True)
        if not layer.fast and not probe_thresholds(layer.ev, zero, to, False):
            return False
    return True


def pick_kinds(layers: list[Layer], gemm: Gemm) -> list[str] | None:
    """Per layer the first weight kind whose kernel passes the probe: u8 x s8 (VNNI's), then
    u8 x u8; None when some layer has neither."""
    kinds = []
    for layer in layers:
        kind = next((k for k in ("s8", "u8") if _kind_fits(layer.w, k) and probe_gemm(layer, k, gemm)),
                    None)
        if kind is None:
            return None
        kinds.append(kind)
    return kinds


def _kind_fits(w: np.ndarray, kind: str) -> bool:
    if kind == "s8":
        return -128 <= w.min(initial=0) and w.max(initial=0) <= 127
    return (0 <= w.min(initial=0) and w.max(initial=0) <= 255) or \
        (-128 <= w.min(initial=0) and w.max(initial=0) <= 127)


@dataclass
class Form:
    """One exact way to run the chain: its layers (with step columns or not) and the weight
    kind of each layer's kernel."""

    layers: list[Layer]
    kinds: list[str]

    @property
    def steps(self) -> list[Steps | None]:
        return [layer.steps for layer in self.layers]


class Int8Chain:
    """The compiled chain: ``run(x)`` takes [N, K] integers in the input type, returns int64.

    With two exact forms (the fixes as step columns, and in the thresholds), each batch runs
    on the form timed faster for its size on this machine (``chain_timer`` and
    ``batch_routing``): step columns add multiply-adds to save elementwise ops, which pays at
    batch 1 everywhere, at batch 64 only where the GEMM kernel is fast (VNNI)."""

    def __init__(self, forms: list[Form], threads: int,
                 timer: Callable[[int, int], float] | None = None) -> None:
        self.forms = forms
        self.x_zero = forms[0].layers[0].x_zero
        self._runs = [_session_run(session(chain_model(f.layers, f.kinds), threads))
                      for f in forms]
        self.first, self.split = 0, None  # forms[first] below batch ``split``, the other from it
        if len(forms) == 2:
            timer = timer or chain_timer(self._feed, self._runs, forms[0].layers[0])
            times = [(timer(i, ROUTE_SMALL), timer(i, ROUTE_LARGE)) for i in range(2)]
            self.first, self.split = batch_routing(times)
            log.info("int8 chain: %s", self.routing())

    @property
    def kinds(self) -> list[str]:
        """The kernel kinds of the form that runs batch 1."""
        return self.forms[self.first].kinds

    @property
    def steps(self) -> list[Steps | None]:
        """The step columns of the form that runs batch 1."""
        return self.forms[self.first].steps

    def form_for(self, batch: int) -> int:
        """Index into ``forms`` of the form that runs a batch of ``batch`` rows."""
        return self.first if self.split is None or batch < self.split else 1 - self.first

    def describe(self, i: int) -> str:
        return "step columns" if any(self.forms[i].steps) else "fixes in the thresholds"

    def routing(self) -> str:
        """Which form runs which batch sizes, in words."""
        if self.split is None:
            return f"{self.describe(self.first)} at every batch size"
        return (f"{self.describe(self.first)} below batch {self.split}, "
                f"{self.describe(1 - self.first)} from it")

    def _feed(self, x: np.ndarray) -> np.ndarray:
        if self.x_zero:
            x = (x.astype(np.int16) + self.x_zero).astype(np.uint8)
        elif x.dtype != np.uint8:
            x = x.astype(np.uint8)
        return np.ascontiguousarray(x)

    def run(self, x: np.ndarray) -> np.ndarray:
        return self._runs[self.form_for(len(x))](self._feed(x))


def _session_run(sess) -> Callable[[np.ndarray], np.ndarray]:
    """``x -> y`` on a session: with the output named and a RunOptions made once, about 1 us
    less per call than run(None, ...), which matters at batch 1 (a call is ~17 us); the wrapped
    C++ session's run where there is one: the Python wrapper re-checks the feed's names on
    every call, and ours is always the one input."""
    import onnxruntime as ort

    run, outputs, options = getattr(sess, "_sess", sess).run, [sess.get_outputs()[0].name], \
        ort.RunOptions()
    return lambda x: run(outputs, {"x": x}, options)[0]


# the batch sizes the forms are timed at, and how often (the best of the repeats counts: a
# busy machine only ever makes a run slower)
ROUTE_SMALL, ROUTE_LARGE = 1, 64
ROUTE_REPEATS = {ROUTE_SMALL: 20, ROUTE_LARGE: 6}
# untimed runs first: a new engine's first batches run slower (first-touch page faults, the
# heap growing); measured on the MLP's plan at batch 64, ~15% slower for its first ~10 runs
ROUTE_WARMUP = 10


def chain_timer(feed: Callable[[np.ndarray], np.ndarray], runs: list[Callable],
                first: Layer) -> Callable[[int, int], float]:
    """``timer(form, batch)``: the best wall time of ``runs[form]`` on a batch of random
    inputs in the first layer's range."""
    rng = np.random.default_rng(0)

    def timer(i: int, batch: int) -> float:
        x = feed(rng.integers(first.x_lo, first.x_hi + 1, size=(batch, first.w.shape[0])))
        for _ in range(ROUTE_WARMUP):
            runs[i](x)
        best = float("inf")
        for _ in range(ROUTE_REPEATS.get(batch, 5)):
            t0 = time.perf_counter()
            runs[i](x)
            best = min(best, time.perf_counter() - t0)
        return best

    return timer


def batch_routing(times: list[tuple[float, float]], small: int = ROUTE_SMALL,
                  large: int = ROUTE_LARGE) -> tuple[int, int | None]:
    """Which of two forms runs which batch sizes, from each form's time on ``small`` and on
    ``large`` rows: ``(first, split)``, form ``first`` (the faster at ``small``) below batch
    ``split``, the other from it; ``split`` None: ``first`` at every size. Each form's time is
    taken as a line through its two points; ``split`` is where the lines cross."""
    first = 0 if times[0][0] <= times[1][0] else 1
    other = 1 - first
    if times[other][1] >= times[first][1]:
        return first, None
    (ts_f, tl_f), (ts_o, tl_o) = times[first], times[other]
    slope_f, slope_o = (tl_f - ts_f) / (large - small), (tl_o - ts_o) / (large - small)
    # ts_f + slope_f (n - small) = ts_o + slope_o (n - small); slope_f > slope_o here
    cross = small + (ts_o - ts_f) / (slope_f - slope_o)
    return first, max(small + 1, math.ceil(cross))


def build_chain(graph: HWGraph, in_lo: int, in_hi: int, outputs: list[str], threads: int,
                gemm: Gemm | None = None,
                timer: Callable[[int, int], float] | None = None) -> Int8Chain | None:
    """The int8 session for ``graph`` when it is a chain of 8-bit MVAUs whose kernels and
    thresholds pass their probes on this machine; None otherwise (the caller keeps the plan).
    ``gemm``: the kernel the probes test (default: onnxruntime's, as the session runs it);
    ``timer(form, batch)``: what routes batches between two forms (default: ``chain_timer``)."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:  # e.g. a board without it: numpy's plan only
        return None
    nodes = chain_nodes(graph, outputs)
    layers = plan_layers(graph, nodes, in_lo, in_hi) if nodes else None
    if not layers or not fits_int32(layers):
        return None
    forms = []  # with step columns where they apply, then without (if that is another form)
    for steps in (True, False):
        if not pick_forms(layers, steps):
            break
        chain = with_steps(layers)
        kinds = pick_kinds(chain, gemm or ort_gemm) if fits_int32(chain) else None
        if kinds is not None:
            forms.append(Form(chain, kinds))
        if not any(layer.steps for layer in layers):
            break
    return Int8Chain(forms, threads, timer) if forms else None
