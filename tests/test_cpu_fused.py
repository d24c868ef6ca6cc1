"""The one-pass kernels (host/cpu_fused.py) give the numpy plan's integers bit for bit: the
threshold line with its single-point fixes (per-channel and shared rows, float32 and float64
lines, float and integer outputs) and the integer softmax (padded keys, float and integer
scores); a kernel that disagrees on the proof points is not used."""

from __future__ import annotations

import numpy as np
import pytest

from netfabric.host import cpu_fused
from netfabric.host import cpu_plan_transformer as tf_plan
from netfabric.host.cpu_thresholds import ThresholdEval, _fixed_line
from netfabric.ops.kernels import int_softmax_lut, segment_valid


def test_numba_is_installed_so_the_suite_runs_the_kernels():
    assert cpu_fused.enabled(), "numba is a pinned requirement: the kernels must be testable"


def _line_case(rng, channels: int, dtype, fixes: int):
    a = rng.uniform(0.001, 0.02, channels).astype(dtype)
    b = rng.uniform(-3, 3, channels).astype(dtype)
    clo = dtype(-128) if channels % 2 else np.full(channels, -128, dtype)
    chi = np.full(channels, 127, dtype)
    points = rng.integers(-20000, 20000, (fixes, channels)).astype(np.float32)
    deltas = rng.choice([-1, 0, 1], (fixes, channels))
    if channels > 4:
        deltas[:, :2] = 0  # fixes on a middle block of columns only
        deltas[:, -1] = 0
    return (a, b, clo, chi), points, deltas


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("out_dtype", [np.float32, np.int32, np.int64])
@pytest.mark.parametrize("channels,fixes", [(1, 0), (1, 2), (7, 1), (64, 0), (192, 2)])
def test_fused_line_equals_numpy_line(dtype, out_dtype, channels, fixes):
    rng = np.random.default_rng(channels * 10 + fixes)
    params, points, deltas = _line_case(rng, channels, dtype, fixes)
    width = channels if channels > 1 else 48  # a shared row serves any width
    x = rng.integers(-25000, 25000, (300, width)).astype(np.float32)
    if fixes:  # every fix point hit, and its neighbours
        x[: 3 * fixes, :] = np.concatenate([points - 1, points, points + 1])[:, :width] \
            if channels > 1 else np.concatenate([points - 1, points, points + 1])
    d = deltas.astype(out_dtype)
    want = _fixed_line(x.copy(), params, points, d, out_dtype=out_dtype)
    got = cpu_fused.FusedLine(params, points, d, out_dtype)(x.reshape(30, 10, width))
    assert got.dtype == np.dtype(out_dtype) and got.shape == (30, 10, width)
    assert np.array_equal(got.reshape(300, width), want)


def test_threshold_eval_refuses_a_kernel_that_misses_a_proof_point(monkeypatch):
    """The kernel is checked on the proof points: one that is off by one at a single input
    is not used, and the numpy passes give the count."""
    rng = np.random.default_rng(3)
    lo, hi, n, act = -3000, 5000, 15, 0
    u = rng.uniform(1.5, 400, (6, 1))
    thr = np.ceil(np.arange(1, n + 1) * u - 2000).astype(np.int64)
    bad_at = float(thr[2, 4])  # a threshold: a proof point

    class OffByOne(cpu_fused.FusedLine):
        def __call__(self, x):
            y = super().__call__(x)
            y[x == bad_at] += 1
            return y
    x = np.tile(np.arange(lo, hi + 1, dtype=np.float32)[:, None], (1, 6))
    want = (x[..., None] >= thr).sum(-1) + act
    ev = ThresholdEval(thr, 6, lo, hi, act, np.float32)
    assert ev._fused(ev.line, ev.points, ev.deltas, None, ev.good) is not None
    monkeypatch.setattr(cpu_fused, "FusedLine", OffByOne)
    assert ev._fused(ev.line, ev.points, ev.deltas, None, ev.good) is None
    assert np.array_equal(ev.build()(x), want)


@pytest.mark.parametrize("fused", [True, False])
def test_threshold_eval_with_and_without_kernel_equals_count(monkeypatch, fused):
    """Per-channel lines with fixes, a table-searched channel, permuted channel order."""
    monkeypatch.setattr(cpu_fused, "USE", fused)
    rng = np.random.default_rng(5)
    lo, hi, n, act = -3000, 5000, 15, -8
    u = rng.uniform(1.5, 400, (8, 1))
    thr = np.ceil(np.arange(1, n + 1) * u - 2500).astype(np.int64)
    thr[1, 7] += 1
    thr[2, 3] -= 1
    thr[3, 5] += 2  # two off: the table search
    thr = np.sort(thr, axis=1)
    ev = ThresholdEval(thr, 8, lo, hi, act, np.float32, permutable=True)
    assert ev.good[[0, 1, 2]].all() and not ev.good[3]
    x = np.tile(np.arange(lo, hi + 1)[:, None], (1, 8))
    want = (x[..., None] >= thr).sum(-1) + act
    for order in (None, ev.order):
        cols = slice(None) if order is None else order
        assert np.array_equal(ev.build(order)(x[:, cols].astype(np.float32)), want[:, cols])


@pytest.mark.parametrize("n,s,shift", [(49, 14, 0), (49, 14, 7), (20, 8, 5), (16, 16, 0)])
@pytest.mark.parametrize("score_dtype", [np.float32, np.int32])
def test_fused_softmax_equals_numpy_softmax_and_reference(monkeypatch, n, s, shift, score_dtype):
    rng = np.random.default_rng(n + s + shift)
    recip_bits, frac, pmax = 20, 8, 255
    lut = np.maximum(1, np.round(255 * np.exp(-np.arange(256) / 24))).astype(np.int64)
    valid = segment_valid(n, s, shift)[:, :, None, None, None]
    m = valid.shape[0]
    scores = rng.integers(-60, 120, (m, s, 5, 3, s)).astype(score_dtype)  # [m, key, N, H, q]
    monkeypatch.setattr(cpu_fused, "USE", False)
    plain = tf_plan._softmax_u32(valid, lut, recip_bits, frac, pmax, np.float32)
    monkeypatch.setattr(cpu_fused, "USE", True)
    fused = tf_plan._softmax_u32(valid, lut, recip_bits, frac, pmax, np.float32)
    got = fused(scores)
    assert got.shape == (5, m, 3, s, s)  # [N, m, H, q, key]
    assert np.array_equal(got, plain(scores))
    # the registry's integer softmax on each segment's real keys
    keys = valid[:, :, 0, 0, 0]
    q = scores.transpose(2, 0, 3, 4, 1).astype(np.int64)
    for g in range(m):
        want = int_softmax_lut(q[:, g], keys[g], lut, recip_bits, frac, 8, -(1 << 20))
        assert np.array_equal(got[:, g], want), g
