"""Plan compilers (``cpu_plan.py``) for FINN's dataflow ops: ``fn(plan, node, graph)``.

Each reads its inputs' proven ranges, picks exact dtypes, binds its constants and adds its
step; the integers are the op's registry semantics (``netfabric/ops/defs``).
"""

from __future__ import annotations

import numpy as np

from netfabric.errors import GraphError

from .cpu_plan import Plan, exact_dtype
from .cpu_thresholds import ThresholdEval
from .hwgraph import HWGraph, HWNode, prod

SMALL_BATCH = 4  # the small plan serves batches up to this many
SEARCH_VALUES = 1024  # an MVAU with at most this many outputs a call searches its thresholds


def _out_shape(graph: HWGraph, name: str) -> tuple[int, ...]:
    return (-1, *graph.shapes[name][1:])


def _threshold_ints(graph: HWGraph, name: str) -> np.ndarray:
    return np.ceil(np.asarray(graph.params[name], dtype=np.float64)).astype(np.int64)


def mvau(plan: Plan, node: HWNode, graph: HWGraph) -> None:
    """x @ W (BLAS in float when every partial sum is provably exact), then the thresholds.

    The input may arrive with permuted channels (the previous MVAU put its proven-line
    channels first); the permutation is absorbed into W's rows. This MVAU's output is
    permuted the same way when some of its channels need the table search, so that search
    reads one contiguous slice."""
    from netfabric.ops.defs.mvau import bipolar_pair

    w = np.asarray(graph.params[node.inputs[1]], dtype=np.int64)
    mw = w.shape[0]
    xnor = bool(node.attr("binaryXnorMode", 0))
    bipolar = not xnor and bipolar_pair(node)
    src = plan.get(node.inputs[0], natural=False)
    search = plan.small and not (xnor or bipolar) and \
        prod(node.attr("numInputVectors", [1])) * SMALL_BATCH * w.shape[1] <= SEARCH_VALUES
    if search and _absorbable(src, mw):
        return _mvau_search(plan, node, graph, src, w)
    if src.perm is not None and len(src.perm) == mw and src.shift is None:
        w = w[src.perm, :]
    else:
        src = plan.get(node.inputs[0])
        if search:
            return _mvau_search(plan, node, graph, src, w)
    lo_in, hi_in = src.lo, src.hi
    offset = np.zeros(w.shape[1], np.int64)
    if xnor:  # popcount(xnor(x, w)) = x . (2w - 1) + MW - colsum(w)
        if (node.attr("inputDataType"), node.attr("weightDataType")) != ("BINARY", "BINARY"):
            raise GraphError(f"node {node.name}: binary XNOR MVAUs need BINARY inputs and weights")
        offset = mw - w.sum(0)
        w = 2 * w - 1
    elif bipolar:  # FINN counts agreements: (x . w + MW) / 2
        offset = np.full(w.shape[1], mw, np.int64)
    lo_c = np.minimum(w * lo_in, w * hi_in).sum(0) + offset
    hi_c = np.maximum(w * lo_in, w * hi_in).sum(0) + offset
    partial = int((np.maximum(np.abs(w * lo_in), np.abs(w * hi_in)).sum(0) + np.abs(offset)).max())
    mm = exact_dtype(partial)
    if bipolar:
        lo_c, hi_c = lo_c // 2, hi_c // 2
    lo, hi = int(lo_c.min(initial=0)), int(hi_c.max(initial=0))
    out_perm = None
    thr_fn = None
    if not node.attr("noActivation", 0):
        thr = _threshold_ints(graph, node.inputs[2])
        act = int(node.attr("ActVal", 0))
        levels = thr.shape[1]
        per_row = thr.shape[0] == w.shape[1]  # each channel's own range: tighter fits
        permutable = _mvaus_only_consume(graph, node.outputs[0], w.shape[1])
        ev = ThresholdEval(thr, w.shape[1], lo_c if per_row else lo, hi_c if per_row else hi,
                           act, mm, exact_dtype(max(abs(act), abs(act + levels))), permutable)
        order = None
        if permutable and not np.array_equal(ev.order, np.arange(len(ev.order))):
            order = out_perm = ev.order  # natural channel order[i] sits at column i
            w, offset = w[:, order], offset[order]
        thr_fn = ev.build(order, consume=True)  # acc: the fresh matmul result
        out_dtype, out_lo, out_hi = ev.out_dtype, act, act + levels
    else:
        out_dtype, out_lo, out_hi = mm, lo, hi
    matmul = _rows_matmul(graph, node, w.astype(mm))
    off = offset.astype(mm) if np.any(offset) else None
    out = _out_reshape(graph, node.outputs[0])

    def run(x):
        acc = matmul(x)
        if off is not None:
            acc += off
            if bipolar:
                acc = acc // 2 if mm.kind == "i" else acc * 0.5
        if thr_fn is not None:
            acc = thr_fn(acc)
        return out(acc)

    dst = plan.new(node.outputs[0], out_dtype, out_lo, out_hi, out_perm)
    plan.unary(run, src, dst)


def _rows_matmul(graph: HWGraph, node: HWNode, w: np.ndarray):
    """x @ w over x's rows of MW values (FINN's numInputVectors x MW view), by
    ``ndarray.dot``: at batch 1 np.matmul's dispatch costs half again as much as the product.
    No reshape when the input already is [rows, MW]."""
    wm = np.ascontiguousarray(w)
    mw, mm = wm.shape[0], wm.dtype
    if list(graph.shapes.get(node.inputs[0], [])[1:]) == [mw]:
        return lambda x: x.astype(mm, copy=False).dot(wm)
    return lambda x: x.reshape(-1, mw).astype(mm, copy=False).dot(wm)


def _out_reshape(graph: HWGraph, name: str):
    """[rows, channels] to the tensor's shape (nothing to do for a 2-d tensor)."""
    shape = _out_shape(graph, name)
    if len(shape) == 2:
        return lambda y: y
    return lambda y: y.reshape(shape)


def _mvaus_only_consume(graph: HWGraph, name: str, width: int) -> bool:
    """Whether every reader of ``name`` is an MVAU of that width (it absorbs a channel
    permutation into its weight rows; anything else would pay a gather to undo it)."""
    readers = [n for n in graph.nodes if name in n.inputs]
    return bool(readers) and all(n.op_type.startswith("MVAU") and n.inputs[0] == name
                                 and graph.params[n.inputs[1]].shape[0] == width
                                 for n in readers)


def _absorbable(src, mw: int) -> bool:
    return all(v is None or v.shape[-1] == mw for v in (src.perm, src.shift))


def _mvau_search(plan: Plan, node: HWNode, graph: HWGraph, src, w: np.ndarray) -> None:
    """The few-rows MVAU: matmul, one add, one searchsorted (3 numpy calls).

    The output is the raw searchsorted position: count + ActVal + base[c] (``shift``); the
    next MVAU absorbs that shift (and the channel order) into its constants, others
    subtract it (``Plan.get``)."""
    mw = w.shape[0]
    if src.perm is not None:
        w = w[src.perm, :]
    shift = src.shift if src.shift is not None else np.zeros(mw, np.int64)
    const = -(shift @ w)  # acc = raw @ w - shift @ w
    rlo, rhi = src.lo + shift, src.hi + shift  # the raw inputs' range per row
    partial = int((np.maximum(np.abs(w * rlo[:, None]), np.abs(w * rhi[:, None])).sum(0)
                   + np.abs(const)).max())
    mm = exact_dtype(partial)
    lo_c = np.minimum(w * src.lo, w * src.hi).sum(0)
    hi_c = np.maximum(w * src.lo, w * src.hi).sum(0)
    matmul = _rows_matmul(graph, node, w.astype(mm))
    out = _out_reshape(graph, node.outputs[0])
    if node.attr("noActivation", 0):
        lo, hi = int(lo_c.min(initial=0)), int(hi_c.max(initial=0))
        add = const.astype(mm)

        def run(x):
            acc = matmul(x)
            acc += add
            return out(acc)
        plan.unary(run, src, plan.new(node.outputs[0], mm, lo, hi))
        return
    from .cpu_thresholds import search_table

    thr = _threshold_ints(graph, node.inputs[2])
    act = int(node.attr("ActVal", 0))
    per_row = thr.shape[0] == w.shape[1]
    ev = ThresholdEval(thr, w.shape[1], lo_c if per_row else lo_c.min(), hi_c if per_row
                       else hi_c.max(), act, mm, np.int64)
    flat, offset, base, kdtype = search_table(ev.thr, ev.lo, ev.hi, act)
    if partial + int(np.abs(offset).max()) >= 2**53 and kdtype.kind == "f":
        kdtype = np.dtype(np.int64)
        flat = flat.astype(np.int64)
    key = (const + offset).astype(kdtype)  # the key's shift, folded into one add
    out_shift = np.broadcast_to(base, (w.shape[1],)).astype(np.int64)

    search = flat.searchsorted  # the method: np.searchsorted's dispatch costs a third more

    def run(x):
        if kdtype.kind == "f":  # float keys: the sum promotes to float64 (exact below 2^53)
            return out(search(matmul(x) + key, "right"))
        return out(search(np.add(matmul(x), key, dtype=kdtype), "right"))
    levels = thr.shape[1]
    plan.unary(run, src, plan.new(node.outputs[0], np.int64, act, act + levels,
                                  shift=out_shift))


def thresholding(plan: Plan, node: HWNode, graph: HWGraph) -> None:
    """Standalone thresholds, natural channel order (a table lookup on narrow inputs)."""
    src = plan.get(node.inputs[0])
    thr = _threshold_ints(graph, node.inputs[1])
    channels = int(graph.shapes[node.outputs[0]][-1])
    act = int(node.attr("ActVal", 0))
    levels = thr.shape[1]
    out_dtype = exact_dtype(max(abs(act), abs(act + levels)))
    fn = ThresholdEval(thr, channels, src.lo, src.hi, act, src.dtype, out_dtype).build()
    plan.unary(fn, src, plan.new(node.outputs[0], out_dtype, act, act + levels))


def swg(plan: Plan, node: HWNode, graph: HWGraph) -> None:
    """im2col as one take with precomputed indices (window order ky, kx, c)."""
    from .cpu_engine import _im2col_indices

    src = plan.get(node.inputs[0])
    h, w = node.attr("IFMDim")
    c = node.attr("IFMChannels")
    idx = _im2col_indices(h, w, c, tuple(node.attr("ConvKernelDim")), tuple(node.attr("Stride")),
                          tuple(node.attr("Dilation", [1, 1])))
    flat = h * w * c
    plan.unary(lambda x: x.reshape(-1, flat).take(idx, axis=1), src,
               plan.new(node.outputs[0], src.dtype, src.lo, src.hi))


def pool(plan: Plan, node: HWNode, graph: HWGraph) -> None:
    if node.attr("Function") != "MaxPool":
        raise GraphError(f"node {node.name}: only MaxPool is supported, not {node.attr('Function')}")
    src = plan.get(node.inputs[0])
    k = node.attr("KernelSize")
    oh, ow = node.attr("OutImgDims")
    shape = (-1, oh, ow, k[0] * k[1], node.attr("Channels"))
    plan.unary(lambda x: x.reshape(shape).max(axis=3), src,
               plan.new(node.outputs[0], src.dtype, src.lo, src.hi))


def label_select(plan: Plan, node: HWNode, graph: HWGraph) -> None:
    """Top-K indices, ties to the lower index (argmax returns the first maximum)."""
    src = plan.get(node.inputs[0])
    k = int(node.attr("K"))
    if k == 1:
        def fn(x):
            return x.argmax(axis=-1)[..., None]
    else:
        def fn(x):
            return np.argsort(-x.astype(np.int64), axis=-1, kind="stable")[..., :k]
    labels = int(graph.shapes[node.inputs[0]][-1])
    plan.unary(fn, src, plan.new(node.outputs[0], np.int64, 0, labels - 1))


def passthrough(plan: Plan, node: HWNode, graph: HWGraph) -> None:
    """FIFOs, width converters, forks: every output is the input (channel order included)."""
    src = plan.get(node.inputs[0], natural=False)
    for name in node.outputs:
        plan.alias(name, src)
