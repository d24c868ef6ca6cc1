"""Threshold tables from a requantizer written as a function of the integer accumulator.

A requantization ``out = clip(round(f(acc)), lo, hi)`` with ``f`` non-decreasing is exactly
FINN's multi-threshold ``count_k(acc >= T[c, k]) + lo`` with

    T[c, k] = min{acc : out_c(acc) >= lo + k + 1},   k = 0 .. hi - lo - 1,

searched over the reachable accumulator range. The function is evaluated as given (here: the
float64 expressions of ``models/transformer_int.py``), so the table reproduces its rounding
bit for bit, ties included, instead of re-deriving it from the float scales.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .errors import CompileError


def threshold_table(
    fn: Callable[[np.ndarray], np.ndarray],
    acc_lo: np.ndarray,
    acc_hi: np.ndarray,
    out_range: tuple[int, int],
    what: str,
) -> np.ndarray:
    """Thresholds [C, hi - lo] (int64, sorted rows) of ``fn`` on ``[acc_lo[c], acc_hi[c]]``.

    ``fn`` maps int64 accumulators [..., C] (channels last) to integer outputs [..., C] and must
    be non-decreasing in each channel. A level never reached gets ``acc_hi + 1``; one reached
    everywhere gets ``acc_lo``. The result is checked against ``fn`` at every step.
    """
    lo_out, hi_out = out_range
    acc_lo = np.asarray(acc_lo, np.int64).reshape(-1)
    acc_hi = np.asarray(acc_hi, np.int64).reshape(-1)
    channels = acc_lo.size
    levels = np.arange(lo_out + 1, hi_out + 1, dtype=np.int64)[:, None]  # [K, 1]
    # invariant: fn(lo) < level (lo may be the virtual acc_lo - 1), fn(hi) >= level (acc_hi + 1)
    lo = np.broadcast_to(acc_lo - 1, (levels.size, channels)).copy()
    hi = np.broadcast_to(acc_hi + 1, (levels.size, channels)).copy()
    while np.any(hi - lo > 1):
        mid = (lo + hi) // 2
        reached = np.asarray(fn(mid)) >= levels
        done = hi - lo <= 1
        hi = np.where(~done & reached, mid, hi)
        lo = np.where(~done & ~reached, mid, lo)
    thr = hi.T  # [C, K]
    _check_table(fn, thr, acc_lo, acc_hi, out_range, what)
    return thr


def _check_table(fn, thr, acc_lo, acc_hi, out_range, what: str) -> None:
    """The count must equal fn right at and just below every step (and at the range ends);
    anything else means fn was not monotone."""
    pts = np.concatenate([thr - 1, thr, acc_lo[:, None], acc_hi[:, None]], axis=1)
    pts = np.clip(pts, acc_lo[:, None], acc_hi[:, None]).T  # [P, C]
    want = np.clip(np.asarray(fn(pts)), *out_range)
    got = (pts[..., None] >= thr[None]).sum(-1) + out_range[0]
    if not np.array_equal(want, got):
        raise CompileError(f"{what}: the requantizer is not monotone in its accumulator, so it "
                           "has no threshold table (a negative BatchNorm weight?)")


def matmul_acc_range(w: np.ndarray, in_lo: int, in_hi: int) -> tuple[np.ndarray, np.ndarray]:
    """Per output channel, the accumulator range of x @ w for x in [in_lo, in_hi]; w is [MW, MH]."""
    w = np.asarray(w, np.int64)
    a, b = w * in_lo, w * in_hi
    return np.minimum(a, b).sum(0), np.maximum(a, b).sum(0)
