"""The CPU engine's fast paths (host/cpu_plan*.py, host/cpu_thresholds.py) give exactly the
registry semantics' integers, including where each fast path must give way: thresholds that are
no progression, a progression off by one (single-point fixes) or by more (table search), partial
sums past 2^24 (float64) and past 2^53 (int64), channel permutations and shifts between layers,
batch 1 (the few-rows plan) and larger batches."""

from __future__ import annotations

import numpy as np
import pytest

from netfabric.host.cpu_engine import CpuEngine
from netfabric.host.cpu_plan import exact_dtype
from netfabric.host.cpu_thresholds import ThresholdEval
from netfabric.host.hwgraph import IntType, load_hwgraph
from netfabric.ops.execute import run_graph
from netfabric.ops.graphbuild import HWGraphBuilder


def _count(x: np.ndarray, thr: np.ndarray, act: int) -> np.ndarray:
    return (x[..., None] >= thr).sum(-1) + act


def _progression(rng, channels: int, n: int, lo: int, hi: int) -> np.ndarray:
    """Thresholds as streamlining makes them: ceil(k * u - v), per channel."""
    u = rng.uniform(1.5, (hi - lo) / (n + 1), size=(channels, 1))
    v = -rng.uniform(lo, lo + (hi - lo) / 4, size=(channels, 1))
    return np.ceil(np.arange(1, n + 1) * u - v).astype(np.int64)


@pytest.mark.parametrize("in_dtype", [np.float32, np.float64])
def test_threshold_eval_equals_count_on_every_integer(in_dtype):
    """Channels: exact progressions (line), one threshold one off (line + fix), one two off
    (table search), random sorted (search), and saturated ends (per-channel ranges)."""
    rng = np.random.default_rng(1)
    lo, hi, n, act = -3000, 5000, 15, -8
    thr = _progression(rng, 8, n, lo, hi)
    thr[1, 7] += 1  # FINN's float32 rounding: one threshold one off the progression
    thr[2, 3] -= 1
    thr[2, 9] += 1
    thr[3, 5] += 2  # two off: no single-point fix
    thr[4] = np.sort(rng.integers(lo, hi, n))  # no progression at all
    thr[5, -4:] = hi + 1  # levels never reached
    thr = np.sort(thr, axis=1)
    ev = ThresholdEval(thr, 8, lo, hi, act, in_dtype)
    assert ev.kind == "line"
    assert ev.good[[0, 1, 2, 5]].all() and not ev.good[[3, 4]].any()
    x = np.tile(np.arange(lo, hi + 1)[:, None], (1, 8))
    want = _count(x, thr, act)
    for order in (None, ev.order):
        cols = slice(None) if order is None else order
        got = ev.build(order)(x[:, cols].astype(in_dtype))
        assert np.array_equal(got, want[:, cols])
        assert np.array_equal(ev.build(order)(x[:3, cols].astype(in_dtype)), want[:3, cols])


def _two_scattered_fixes(rng: np.random.Generator) -> tuple[int, int, np.ndarray]:
    """(lo, hi, thresholds): 8 channels of rounded progressions over [lo, hi], channels 1 and
    6 each moved off the line at one point (a single-point fix apiece, not adjacent)."""
    lo, hi = -2000, 3000
    thr = _progression(rng, 8, 15, lo, hi)
    thr[1, 4] += 1
    thr[6, 9] -= 1
    return lo, hi, np.sort(thr, axis=1)


def test_threshold_eval_fixes_scattered_channels():
    """Fixes on two channels that are not adjacent (a caller that cannot permute): applied
    over all channels, the others' points never match."""
    lo, hi, thr = _two_scattered_fixes(np.random.default_rng(5))
    ev = ThresholdEval(thr, 8, lo, hi, 0, np.float32)
    assert ev.good.all() and np.any(ev.deltas != 0, axis=0)[[1, 6]].all()
    x = np.tile(np.arange(lo, hi + 1)[:, None], (1, 8))
    assert np.array_equal(ev.build()(x.astype(np.float32)), _count(x, thr, 0))


def test_threshold_eval_lookup_direct_and_shared_rows():
    rng = np.random.default_rng(2)
    x = np.arange(-128, 128)[:, None].repeat(4, 1)
    sorted_rows = np.sort(rng.integers(-130, 130, (4, 7)), axis=1)
    unsorted = rng.integers(-130, 130, (4, 7))
    shared = np.sort(rng.integers(-130, 130, (1, 7)), axis=1)
    for thr, kind in ((sorted_rows, "lookup"), (unsorted, "direct"), (shared, "lookup")):
        ev = ThresholdEval(thr, 4, -128, 127, 3, np.float32)
        assert ev.kind == kind
        want = _count(x, np.clip(thr, -128, 128), 3)
        assert np.array_equal(ev.build()(x.astype(np.float32)), want)


@pytest.mark.parametrize("base", [0, 2**31 - 600, -(2**31) + 100])
def test_lookup_indices_past_int32(base):
    """The table lookup takes int32 indices where inputs and indices fit, int64 past that
    (a narrow range far from 0): the counts are the same on every input either way."""
    rng = np.random.default_rng(3)
    lo, hi = base - 200, base + 200
    thr = np.sort(rng.integers(lo - 3, hi + 3, (3, 9)), axis=1)
    ev = ThresholdEval(thr, 3, lo, hi, -4, np.float64, np.float64)
    assert ev.kind == "lookup"
    x = np.arange(lo, hi + 1)[:, None].repeat(3, 1)
    assert np.array_equal(ev.build()(x.astype(np.float64)), _count(x, thr, -4))
    assert np.array_equal(ev.build()(x), _count(x, thr, -4))  # int64 inputs too


def test_exact_dtype_bounds():
    assert exact_dtype(2**24 - 1) == np.float32
    assert exact_dtype(2**24) == np.float64
    assert exact_dtype(2**53 - 1) == np.float64
    assert exact_dtype(2**53) == np.int64


def _mlp(tmp_path, rng, widths, itype, wtype, kinds, acc_bits=None):
    """A chain of MVAUs; ``kinds[i]``: 'line', 'fixes', 'search', 'shared' or 'none'
    (noActivation) for layer i. Outputs are UINT4 counts (15 thresholds) between layers."""
    b = HWGraphBuilder("chain")
    b.input("x", [1, widths[0]], itype)
    src, src_type = "x", IntType(itype)
    wt = IntType(wtype)
    for i, (mw, mh, kind) in enumerate(zip(widths, widths[1:], kinds, strict=False)):
        w = rng.integers(wt.min, wt.max + 1, size=(mw, mh))
        b.param(f"w{i}", w, wtype)
        lo = int(np.minimum(w * src_type.min, w * src_type.max).sum(0).min())
        hi = int(np.maximum(w * src_type.min, w * src_type.max).sum(0).max())
        bits = acc_bits or max(abs(lo), abs(hi)).bit_length() + 1
        inputs = [src, f"w{i}"]
        attrs = dict(MW=mw, MH=mh, SIMD=1, PE=1, inputDataType=src_type.name,
                     weightDataType=wtype, accDataType=f"INT{bits}", binaryXnorMode=0,
                     numInputVectors=[1])
        if kind == "none":
            out_type = f"INT{bits}"
            attrs.update(outputDataType=out_type, ActVal=0, noActivation=1)
        else:
            span = (lo // 4, hi // 4)
            thr = _progression(rng, mh, 15, *span)
            if kind == "fixes":
                thr[::2, 6] += 1
            elif kind == "search":
                thr[::3] = np.sort(rng.integers(*span, size=(len(thr[::3]), 15)), axis=1)
            elif kind == "shared":
                thr = thr[:1]
            b.param(f"t{i}", np.sort(thr, axis=1))
            inputs.append(f"t{i}")
            out_type = "UINT4"
            attrs.update(outputDataType=out_type, ActVal=0, noActivation=0)
        b.node("MVAU", inputs, [(f"h{i}", [1, mh], out_type)], name=f"fc{i}", **attrs)
        src, src_type = f"h{i}", IntType(out_type)
    b.output(src)
    return b.save(tmp_path / "chain.onnx")


@pytest.mark.parametrize("kinds", [("line", "fixes", "none"), ("search", "shared", "none"),
                                   ("fixes", "search", "line"), ("shared", "line", "none")])
@pytest.mark.parametrize("batch", [1, 3, 37])
def test_mvau_chains_equal_semantics(tmp_path, kinds, batch):
    """Permuted and shifted channels travel between the layers of both plans."""
    rng = np.random.default_rng(abs(hash((kinds, batch))) % 2**32)
    path = _mlp(tmp_path, rng, [40, 24, 16, 10], "UINT8", "INT8", kinds)
    x = rng.integers(0, 256, size=(batch, 40))
    want = run_graph(load_hwgraph(path), x)["output"]
    plan = CpuEngine(path, mode="plan")
    assert plan.mode == "plan"
    assert np.array_equal(plan.run(x), want)
    assert np.array_equal(CpuEngine(path, mode="onnx").run(x), want)


@pytest.mark.parametrize("itype, wtype, dtype", [("INT14", "INT8", np.float64),
                                                 ("INT45", "INT8", np.int64)])
def test_wide_partial_sums_leave_float32(tmp_path, itype, wtype, dtype):
    """Past 2^24 the matmul runs in float64, past 2^53 in int64: still exact."""
    rng = np.random.default_rng(3)
    path = _mlp(tmp_path, rng, [64, 8], itype, wtype, ("none",))
    engine = CpuEngine(path, mode="plan")
    plan = engine.plans[1][1]
    assert plan.info["h0"].dtype == dtype
    it = IntType(itype)
    x = rng.integers(it.min, it.max + 1, size=(5, 64), dtype=np.int64)
    x[0], x[1] = it.max, it.min  # the extreme sums
    want = run_graph(load_hwgraph(path), x)["output"]
    assert np.array_equal(engine.run(x), want)
    assert np.array_equal(engine.run(x[:1]), want[:1])


@pytest.mark.parametrize("lut_lo", [0, -5])
def test_plan_softmax_equals_integer_reference(lut_lo):
    """The attention softmax: the float64 form where ``_float_softmax_exact`` allows it (e up
    to 2^20, RecipBits 40: e * recip reaches 2^40), the int64 form for a LUT with negative
    entries; both with a partly and a fully padded segment, against kernels.int_softmax_lut."""
    from netfabric.host.cpu_plan_transformer import (
        _float_softmax_exact,
        _softmax_float,
        _softmax_int,
    )
    from netfabric.ops.kernels import int_softmax_lut

    rng = np.random.default_rng(4)
    m, s, n, heads = 3, 5, 4, 2
    valid = np.ones((m, s), bool)
    valid[1, 3:] = False
    valid[2] = False
    lut = rng.integers(lut_lo, 2**20, 256)
    lut[0], lut[1] = 2**20, lut_lo
    scores = rng.integers(-128, 128, (n, m, heads, s, s))  # [N, m, H, query, key]
    scores[0, 0, 0, 0] = 127  # a row of equal maxima
    want = int_softmax_lut(scores, valid[None, :, None, None, :], lut, 40, 8, 8, -128)
    keys_outer = np.ascontiguousarray(scores.transpose(1, 4, 0, 2, 3))  # [m, key, N, H, query]
    valid5 = valid[:, :, None, None, None]
    assert _float_softmax_exact(lut, s) == (lut_lo >= 0)
    got = _softmax_int(valid5, lut, 40, 8, 255, -128, np.float64)(keys_outer)
    assert np.array_equal(got, want)
    if lut_lo >= 0:
        fn = _softmax_float(valid5, lut, 40, 8, 255, np.float32)
        assert np.array_equal(fn(keys_outer.astype(np.float32)), want)


def test_large_batches_run_in_chunks_exactly(tmp_path):
    """A batch past the chunk size runs as equal chunks (35 rows: 5 of 7; 9 rows: 5 and 4,
    the last one on the few-rows plan) and concatenates to the whole batch's integers."""
    from netfabric.host.cpu_engine import chunk_rows
    from netfabric.host.cpu_plan_ops import SMALL_BATCH

    rng = np.random.default_rng(6)
    path = _mlp(tmp_path, rng, [40, 24, 16, 10], "UINT8", "INT8", ("fixes", "search", "none"))
    engine = CpuEngine(path, mode="plan")
    assert engine._chunk == chunk_rows(engine.graph) >= 2 * SMALL_BATCH
    engine._chunk = 8
    x = rng.integers(0, 256, size=(35, 40))
    want = run_graph(load_hwgraph(path), x)["output"]
    assert np.array_equal(engine.run(x), want)
    assert np.array_equal(engine.run(x[:9]), want[:9])


def test_plan_softmax_uint32_equals_integer_reference():
    """The uint32 softmax (the shipped transformer's: RecipBits 31, e up to 2^15) on integer
    or integer-valued float scores with any offset, a one-key segment (e * recip = 2^31, p
    clipped to pmax), with and without a fully padded one (a zero sum);
    ``_u32_softmax_exact`` gives way past each of its bounds."""
    from netfabric.host.cpu_plan_transformer import _softmax_u32, _u32_softmax_exact
    from netfabric.ops.kernels import int_softmax_lut

    rng = np.random.default_rng(8)
    m, s, n, heads = 4, 6, 5, 3
    valid = np.ones((m, s), bool)
    valid[1, 1:] = False  # one real key
    valid[2, :2] = False
    valid[3] = False
    lut = np.sort(rng.integers(0, 2**15, 256))[::-1].copy()
    lut[0], lut[-3:] = 2**15 - 1, 0
    scores = rng.integers(-128, 128, (n, m, heads, s, s))
    scores[0, 0, 0, 0] = 127  # a row of equal maxima
    want = int_softmax_lut(scores, valid[None, :, None, None, :], lut, 31, 8, 8, -128)
    keys_outer = np.ascontiguousarray(scores.transpose(1, 4, 0, 2, 3))
    assert _u32_softmax_exact(lut, s, 31, 8, 255)
    fn = _softmax_u32(valid[:, :, None, None, None], lut, 31, 8, 255, np.float32)
    for offset in (128, 0, 1000):  # counts (score + 128), raw scores, any shift
        assert np.array_equal(fn((keys_outer + offset).astype(np.int32)), want)
    assert np.array_equal(fn(keys_outer.astype(np.float32)), want)  # integer-valued floats
    valid[3, 4:] = True  # every segment with a real key: sums > 0, no guard on the divide
    want = int_softmax_lut(scores, valid[None, :, None, None, :], lut, 31, 8, 8, -128)
    fn = _softmax_u32(valid[:, :, None, None, None], lut, 31, 8, 255, np.float32)
    assert np.array_equal(fn(keys_outer.astype(np.int32)), want)
    assert not _u32_softmax_exact(lut, s, 32, 8, 255)  # e * recip + half reaches 2^32
    assert not _u32_softmax_exact(np.full(256, 2**30), 4, 31, 8, 255)  # sum of e: 2^32
    assert not _u32_softmax_exact(lut - 1, s, 31, 8, 255)  # e < 0
    assert not _u32_softmax_exact(lut, s, 31, 8, 256)  # a score difference past the LUT


@pytest.mark.parametrize("rows", [1, 3])
def test_narrow_range_takes_its_line_only_without_fixes(rows):
    """Thresholds over a narrow input range (a residual requantizer: one shared row; a norm:
    one row per channel): the proven line when it needs no fix, else the table; the table
    also serves few values; the counts equal on every integer."""
    from netfabric.host.cpu_thresholds import LINE_MIN

    x = np.arange(-256, 255).repeat(6)[:, None].repeat(3, 1)  # every integer, 6 times
    assert x.size >= LINE_MIN > 60  # the line, then the table on 20 rows
    slopes = np.array([2.0, 1.75, 2.25])[:rows, None]
    line = np.ceil(np.arange(1, 256) * slopes - 255.5).astype(np.int64)  # progressions
    off = line.copy()
    off[0, 100] += 1  # one threshold one off: a fix the table avoids
    for thr, kind in ((line, "line"), (off, "lookup")):
        ev = ThresholdEval(thr, 3, -256, 254, -128, np.float32)
        assert ev.kind == kind
        want = _count(x, np.clip(thr, -256, 255), -128)
        fn = ev.build()
        assert np.array_equal(fn(x.astype(np.float32)), want)
        assert np.array_equal(fn(x[:20].astype(np.float32)), want[:20])


@pytest.mark.parametrize("permute", [False, True])
def test_consuming_evaluator_fixes_from_its_input_before_the_line_overwrites_it(permute):
    """``build(consume=True)`` runs the line in the input's own array: the fixes (adjacent
    channels: transposed; scattered: all channels) still compare the original inputs; without
    ``consume`` the input is left as it was."""
    lo, hi, thr = _two_scattered_fixes(np.random.default_rng(9))
    ev = ThresholdEval(thr, 8, lo, hi, 0, np.float32, permutable=permute)
    assert ev.line[0].dtype == np.float32  # the line's dtype is the input's: in place
    order = ev.order if permute else None
    x = np.tile(np.arange(lo, hi + 1)[:, None], (1, 8))[:, ev.order if permute else slice(None)]
    want = _count(x, thr[ev.order] if permute else thr, 0)
    xf = x.astype(np.float32)
    assert np.array_equal(ev.build(order)(xf), want)
    assert np.array_equal(xf, x)  # untouched
    assert np.array_equal(ev.build(order, consume=True)(xf), want)
