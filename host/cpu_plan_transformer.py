"""Plan compilers (``cpu_plan.py``) for the transformer's ops: residual adds, token pooling and
segmented attention, all segments and heads in one batched matmul each.

Integers: ``netfabric/ops/kernels.py`` (the registry semantics)."""

from __future__ import annotations

import numpy as np

from netfabric.errors import GraphError
from netfabric.ops.kernels import segment_valid

from . import cpu_fused
from .cpu_plan import Info, Plan, exact_dtype
from .cpu_thresholds import ThresholdEval
from .hwgraph import HWGraph, HWNode, IntType


def _const(graph: HWGraph, name: str, what: str) -> np.ndarray:
    value = np.asarray(graph.params[name])
    if not np.array_equal(value, np.round(value)):
        raise GraphError(f"{what}: {name} holds non-integer values")
    return np.round(value).astype(np.int64)


def elementwise_add(plan: Plan, node: HWNode, graph: HWGraph) -> None:
    """lhs + rhs, streams or constants (e.g. the position table), in an exact dtype."""
    streams: list[Info] = []
    ranges, consts = [], []
    for name in node.inputs[:2]:
        if name in graph.params:
            c = _const(graph, name, node.name)
            ranges.append((int(c.min(initial=0)), int(c.max(initial=0))))
            consts.append(c)
        else:
            info = plan.get(name)
            streams.append(info)
            ranges.append((info.lo, info.hi))
            consts.append(None)
    lo, hi = ranges[0][0] + ranges[1][0], ranges[0][1] + ranges[1][1]
    dtype = exact_dtype(max(abs(lo), abs(hi)))
    consts = [None if c is None else c.astype(dtype) for c in consts]
    dst = plan.new(node.outputs[0], dtype, lo, hi)
    if consts[0] is None and consts[1] is None:
        plan.nary(lambda a, b: (np.add(a, b, dtype=dtype),), streams, [dst])
    else:
        const = consts[0] if consts[0] is not None else consts[1]
        plan.unary(lambda a: np.add(a, const, dtype=dtype), streams[0], dst)


def global_acc_pool(plan: Plan, node: HWNode, graph: HWGraph) -> None:
    """Integer sum over the spatial axes of [N, H, W, C]."""
    src = plan.get(node.inputs[0])
    _, h, w, _ = graph.shapes[node.inputs[0]]
    count = int(h) * int(w)
    lo, hi = min(0, src.lo * count), max(0, src.hi * count)
    dtype = exact_dtype(src.bound * count)
    plan.unary(lambda x: x.sum(axis=(1, 2), keepdims=True, dtype=dtype), src,
               plan.new(node.outputs[0], dtype, lo, hi))


def _geometry(node: HWNode) -> tuple[int, int, int, int]:
    n, s, shift = (int(node.attr(a, 0)) for a in ("NumTokens", "SegLen", "Shift"))
    if n <= 0 or s <= 0 or not 0 <= shift < s:
        raise GraphError(f"node {node.name}: bad segment geometry n={n} s={s} shift={shift}")
    return n, s, shift, -(-(shift + n) // s)


def segment_pad(plan: Plan, node: HWNode, graph: HWGraph) -> None:
    """[N, n, 1, C] -> [N, m, s, C]: Shift zero tokens in front, zeros behind."""
    n, s, shift, m = _geometry(node)
    src = plan.get(node.inputs[0])
    c = int(graph.shapes[node.inputs[0]][-1])

    def pad(x):
        # only the pad rows zeroed: np.zeros would write every value once more
        out = np.empty((x.shape[0], m * s, c), x.dtype)
        out[:, :shift] = 0
        out[:, shift + n :] = 0
        out[:, shift : shift + n] = x.reshape(-1, n, c)
        return out.reshape(-1, m, s, c)
    plan.unary(pad, src, plan.new(node.outputs[0], src.dtype, min(0, src.lo), max(0, src.hi)))


def segment_unpad(plan: Plan, node: HWNode, graph: HWGraph) -> None:
    """[N, m, s, C] -> [N, n, 1, C]: the padded rows dropped."""
    n, s, shift, m = _geometry(node)
    src = plan.get(node.inputs[0])
    c = int(graph.shapes[node.inputs[0]][-1])
    plan.unary(lambda x: x.reshape(-1, m * s, c)[:, shift : shift + n].reshape(-1, n, 1, c),
               src, plan.new(node.outputs[0], src.dtype, src.lo, src.hi))


def segment_attention(plan: Plan, node: HWNode, graph: HWGraph) -> None:
    """q.k^T -> thresholds -> integer softmax (padded keys masked) -> p.v -> thresholds on
    [N, m, s, 3d] -> [N, m, s, d], every segment and head in one matmul per product."""
    n, s, shift, m = _geometry(node)
    name = node.name
    heads, dh = int(node.attr("Heads")), int(node.attr("HeadDim"))
    src = plan.get(node.inputs[0])
    score_thr, lut, ctx_thr = (_const(graph, node.inputs[i], name) for i in (1, 2, 3))
    score_type, prob_type = IntType(node.attr("scoreDataType")), IntType(node.attr("probDataType"))
    recip_bits, frac = int(node.attr("RecipBits")), int(node.attr("ProbFracBits"))
    if not frac < recip_bits <= 40 or recip_bits + int(lut.max(initial=1)).bit_length() >= 62:
        raise GraphError(f"node {name}: need ProbFracBits < RecipBits <= 40")

    qk_bound = dh * src.bound * src.bound
    qk_dtype = exact_dtype(qk_bound)
    score_act = int(node.attr("ScoreActVal"))
    valid = segment_valid(n, s, shift)[:, :, None, None, None]  # [m, s(key), 1, 1, 1]
    pmax = prob_type.max
    av_bound = s * pmax * src.bound
    av_dtype = exact_dtype(av_bound)
    floats = _float_softmax_exact(lut, s)
    narrow = _u32_softmax_exact(lut, s, recip_bits, frac, score_thr.shape[1])
    if narrow:
        scores_fn = _score_counts(score_thr, qk_bound, qk_dtype, score_act)
    else:
        scores_fn = ThresholdEval(score_thr, 1, -qk_bound, qk_bound, score_act, qk_dtype,
                                  np.float32 if floats else np.int64).build(consume=True)
    if narrow:
        softmax = _softmax_u32(valid, lut, recip_bits, frac, pmax, av_dtype)
    elif floats:
        softmax = _softmax_float(valid, lut, recip_bits, frac, pmax, av_dtype)
    else:
        softmax = _softmax_int(valid, lut, recip_bits, frac, pmax, score_type.min, av_dtype)
    ctx_act = int(node.attr("CtxActVal"))
    levels = ctx_thr.shape[1]
    out_dtype = exact_dtype(max(abs(ctx_act), abs(ctx_act + levels)))
    ctx_fn = ThresholdEval(ctx_thr, 1, -av_bound, av_bound, ctx_act, av_dtype,
                           out_dtype).build(consume=True)  # (p.v: a fresh array)
    d = heads * dh

    def attend(x):
        parts = x.reshape(-1, m, s, 3, heads, dh)
        q, k, v = (parts[:, :, :, i].transpose(0, 1, 3, 2, 4).astype(qk_dtype, copy=False)
                   for i in range(3))
        # scores laid out keys outermost, [m, s(key), N, H, s(query)]: the softmax's reductions
        # over keys and its per-row factors then run over long contiguous rows
        qk = np.empty((m, s, len(q), heads, s), qk_dtype)
        np.matmul(k, q.swapaxes(-1, -2), out=qk.transpose(2, 0, 3, 1, 4))
        probs = softmax(scores_fn(qk))  # [N, m, H, s(query), s(key)]
        # p.v written straight in the output's [N, m, s, H, dh] order (the thresholds after it
        # are one shared row: any layout), no copy to transpose at the end
        av = np.empty((len(q), m, s, heads, dh), av_dtype)
        np.matmul(probs, v.astype(av_dtype, copy=False), out=av.transpose(0, 1, 3, 2, 4))
        return ctx_fn(av).reshape(-1, m, s, d)

    plan.unary(attend, src, plan.new(node.outputs[0], out_dtype, ctx_act, ctx_act + levels))


def _float_softmax_exact(lut: np.ndarray, s: int) -> bool:
    """Whether ``_softmax_float`` is exact for this LUT: e >= 0 (so e * recip <= 2^RecipBits,
    RecipBits <= 40) and a row's sum of e below 2^53."""
    return int(lut.min(initial=0)) >= 0 and s * int(lut.max(initial=0)) < 2**53


def _score_counts(thr: np.ndarray, bound: int, in_dtype, score_act: int):
    """The scores plus an offset, for the uint32 softmax (it takes differences of scores only,
    so the offset drops out): int32 counts from the clipped line (offsets >= 0: the cast
    truncates, which is floor there) when one such offset's proven line needs no single-point
    fix (each offset moves the intercept, so the float rounding), else the scores themselves
    as floats (the softmax casts their differences), whichever needs fewer fixes."""
    best = None
    cands = [(act, np.int32) for act in dict.fromkeys((0, -score_act, 1, 2, 3)) if act >= 0]
    for act, out in cands + [(score_act, np.float32)]:
        ev = ThresholdEval(thr, 1, -bound, bound, act, in_dtype, out)
        cost = (not ev.good.all(), int(np.count_nonzero(ev.deltas)))
        if best is None or cost < best[0]:
            best = (cost, ev)
        if cost == (False, 0):
            break
    return best[1].build(consume=True)  # (the scores: a fresh array)


def _u32_softmax_exact(lut: np.ndarray, s: int, recip_bits: int, frac: int,
                       levels: int) -> bool:
    """Whether ``_softmax_u32`` is exact for this LUT: e >= 0, a row's sum of e below 2^32,
    e * recip + half below 2^32 (e <= sum, so e * recip <= 2^RecipBits), and every score
    difference (at most ``levels``, the score thresholds' count) a LUT index."""
    half = 1 << (recip_bits - frac - 1)
    return (int(lut.min(initial=0)) >= 0 and s * int(lut.max(initial=0)) < 2**32
            and (1 << recip_bits) + half < 2**32 and levels < len(lut))


def _mask_pad_keys(d: np.ndarray, keys, masked_d: int) -> None:
    """d [m, s(key), ...] set to ``masked_d`` (the LUT's e = 0 index) on each segment's keys
    outside its real range; nothing when every key is real (``keys`` None)."""
    if keys is not None:
        for seg, (k0, k1) in enumerate(keys):
            d[seg, :k0] = masked_d
            d[seg, k1:] = masked_d


def _segment_row_max(keys):
    """Per segment, the maximum over its real keys of [m, s(key), ...] (axis 1 kept)."""
    def row_max(q):
        if keys is None:
            return q.max(axis=1, keepdims=True)
        out = np.zeros((q.shape[0], 1, *q.shape[2:]), q.dtype)
        for seg, (k0, k1) in enumerate(keys):
            if k1 > k0:
                np.max(q[seg, k0:k1], axis=0, out=out[seg, 0])
        return out
    return row_max


def _softmax_u32(valid: np.ndarray, lut: np.ndarray, recip_bits: int, frac: int, pmax: int,
                 out_dtype):
    """INT_SOFTMAX.md on integer scores (any offset; integers or integer-valued floats below
    2^31) laid out [m, s(key), N, H, s(query)],
    every wide step in uint32 (``_u32_softmax_exact``): e from the LUT, the sum over keys,
    recip = 2^R // sum (one per row, exact in float64: 2^R and the sum below 2^53, and a
    non-integer quotient stays more than one ulp below the next integer), then
    p = min((e * recip + half) >> shift, pmax) -- the integers of ``_softmax_int`` in half
    the bytes of the float64 path. Returns [N, m, H, s(query), s(key)] (a view)."""
    keys = _valid_key_ranges(valid[:, :, 0, 0, 0])
    if cpu_fused.enabled():  # the same integers in one pass per segment
        fused = cpu_fused.softmax_u32(keys, valid.shape[1], lut, recip_bits, frac, pmax,
                                      out_dtype)
        return lambda q: fused(q).transpose(2, 0, 3, 4, 1)
    lut_ext = np.append(lut, 0).astype(np.uint32)  # index len(lut): a masked key's e = 0
    masked_d = len(lut)
    row_max = _segment_row_max(keys)
    half, rshift = np.uint32(1 << (recip_bits - frac - 1)), np.uint32(recip_bits - frac)
    numer = float(1 << recip_bits)
    # every row's sum >= lut[0] > 0 (its maximum's key has d = 0) when every segment has a
    # real key: the quotient needs no guard against 0 (it is at most 2^R: fits uint32, and
    # the cast truncates, which is floor on it)
    positive = int(lut[0]) > 0 and (keys is None or all(k1 > k0 for k0, k1 in keys))

    def softmax(q: np.ndarray) -> np.ndarray:
        d = np.subtract(row_max(q), q)  # in [0, len(lut)) on real keys
        if d.dtype.kind == "f":  # integer-valued float scores: one exact cast
            d = d.astype(np.int32)
        _mask_pad_keys(d, keys, masked_d)
        e = lut_ext.take(d, mode="wrap")  # every index in range: no bounds checks
        total = e.sum(axis=1, keepdims=True, dtype=np.uint32)
        if positive:
            recip = np.divide(numer, total).astype(np.uint32)
        else:
            total = total.astype(np.float64)
            recip = np.floor(np.divide(numer, total, out=np.zeros_like(total),
                                       where=total > 0)).astype(np.uint32)
        e *= recip
        e += half
        e >>= rshift
        p = e.astype(out_dtype)
        np.minimum(p, pmax, out=p)  # (after the cast: uint32's minimum measured slower)
        return p.transpose(2, 0, 3, 4, 1)
    return softmax


def _softmax_int(valid: np.ndarray, lut: np.ndarray, recip_bits: int, frac: int, pmax: int,
                 score_min: int, out_dtype):
    """INT_SOFTMAX.md on int64 scores laid out [m, s(key), N, H, s(query)]
    (kernels.int_softmax_lut); returns [N, m, H, s(query), s(key)]."""
    valid = valid.transpose(2, 0, 3, 4, 1)  # [1, m, 1, 1, s(key)]
    all_valid = bool(valid.all())
    lut_ext = np.append(lut, 0)  # index len(lut): a masked key's e = 0
    masked_d = len(lut)
    half, rshift, numer = 1 << (recip_bits - frac - 1), recip_bits - frac, 1 << recip_bits

    def softmax(q: np.ndarray) -> np.ndarray:
        q = np.ascontiguousarray(q.transpose(2, 0, 3, 4, 1))
        if all_valid:
            d_idx = q.max(axis=-1, keepdims=True) - q
        else:
            row_max = np.where(valid, q, score_min).max(axis=-1, keepdims=True)
            d_idx = np.where(valid, row_max - q, masked_d)
        e = lut_ext.take(d_idx)
        total = e.sum(axis=-1, keepdims=True)
        recip = numer // np.maximum(total, 1)
        recip[total <= 0] = 0
        e *= recip
        e += half
        e >>= rshift
        np.minimum(e, pmax, out=e)
        return e.astype(out_dtype)
    return softmax


def _softmax_float(valid: np.ndarray, lut: np.ndarray, recip_bits: int, frac: int, pmax: int,
                   out_dtype):
    """INT_SOFTMAX.md on integer-valued float scores laid out [m, s(key), N, H, s(query)],
    every step exact in float64 (``_float_softmax_exact``): e from the LUT, the sum over keys
    (integers below 2^53: any order), recip = 2^R // sum in int64 (one per row), then
    p = min(floor(e * (recip / 2^shift) + 1/2), pmax): e * recip <= 2^R <= 2^40 because
    e <= sum, and scaling by a power of two is exact, so this is (e * recip + half) >> shift.
    Returns [N, m, H, s(query), s(key)] (a view)."""
    lut_ext = np.append(lut, 0).astype(np.float64)  # index len(lut): a masked key's e = 0
    masked_d = len(lut)
    keys = _valid_key_ranges(valid[:, :, 0, 0, 0])
    rshift, numer = recip_bits - frac, 1 << recip_bits

    row_max = _segment_row_max(keys)

    def softmax(q: np.ndarray) -> np.ndarray:
        # integer values: exact; the float subtract then one cast to int32 (indices up to
        # len(lut)) measured faster than a subtract casting to intp on the fly
        d = np.subtract(row_max(q), q).astype(np.int32)
        _mask_pad_keys(d, keys, masked_d)
        e = lut_ext.take(d)
        total = e.sum(axis=1, keepdims=True).astype(np.int64)
        recip = numer // np.maximum(total, 1)
        recip[total <= 0] = 0
        e *= recip * 2.0**-rshift
        e += 0.5
        np.floor(e, out=e)
        np.minimum(e, pmax, out=e)  # then one cast: faster than a mixed-dtype minimum
        return e.astype(out_dtype).transpose(2, 0, 3, 4, 1)
    return softmax


def _valid_key_ranges(valid: np.ndarray) -> list[tuple[int, int]] | None:
    """Per segment, the [start, stop) of its real keys (contiguous: the tokens are one run
    across the segments); None when every key is real."""
    if valid.all():
        return None
    ranges = []
    for row in valid:
        idx = np.flatnonzero(row)
        if len(idx) and len(idx) != idx[-1] - idx[0] + 1:
            raise GraphError("segment keys are not one contiguous run")
        ranges.append((int(idx[0]), int(idx[-1]) + 1) if len(idx) else (0, 0))
    return ranges
