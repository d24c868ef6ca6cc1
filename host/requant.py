"""Exact requantizers: replace a threshold table by multiply, add, shift and clip, when provably equal.

FINN expresses a uniform quantized activation as 2^bits - 1 sorted thresholds per channel. When
the thresholds of a channel are an arithmetic progression rounded up to integers (the usual case
after streamlining a BatchNorm + uniform quantizer), the count

    count(acc) = #{k : acc >= T[k]}

equals   clip((acc * M + B) >> S, 0, n)   for integers M > 0, B, S, on every accumulator value.

`fit_requantizer` finds M, B, S by a small linear program on the threshold positions and then
*proves* equality: both sides are monotone step functions of acc, so they are equal on the whole
accumulator range iff they agree at the range ends and at every point where either one steps.
A table that is not such a progression (or any proof failure) returns None, and the caller keeps
the table. The same integers drive the CPU engine and can drive a one-DSP hardware requantizer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Requantizer:
    mult: np.ndarray  # int64 [C], > 0
    add: np.ndarray  # int64 [C]
    shift: int
    levels: int  # n: the count saturates at n

    def __call__(self, acc: np.ndarray) -> np.ndarray:
        """Reference evaluation (int64, floor shift), acc channels on the last axis."""
        y = acc.astype(np.int64) * self.mult + self.add
        return np.clip(y >> self.shift, 0, self.levels)


def _count(thr_row: np.ndarray, acc: np.ndarray) -> np.ndarray:
    return np.searchsorted(thr_row, acc, side="right")


def _fit_channel(row: np.ndarray, lo: int, hi: int) -> tuple[float, float] | None:
    """Real (u, v) with k*u - v strictly inside (T[k-1] - 1, T[k-1]] for in-range thresholds,
    maximising the margin; the step for level k then sits at acc = ceil(k*u - v)."""
    from scipy.optimize import linprog

    n = len(row)
    a_ub, b_ub = [], []
    for k in range(1, n + 1):
        t = int(row[k - 1])
        # level k reached iff acc >= t; positions outside [lo, hi] only need to stay outside
        if t > lo:  # k*u - v > t - 1  ->  -(k u - v) + m <= -(t - 1)
            a_ub.append([-k, 1, 1])
            b_ub.append(-(t - 1) if t <= hi else -hi)
        if t <= hi:  # k*u - v <= t - m
            a_ub.append([k, -1, 1])
            b_ub.append(t if t > lo else lo)
    if not a_ub:
        return None
    res = linprog(c=[0, 0, -1], A_ub=np.array(a_ub, float), b_ub=np.array(b_ub, float),
                  bounds=[(1e-9, None), (None, None), (None, 0.5)], method="highs")
    if not res.success or res.x[2] <= 1e-6:
        return None
    return float(res.x[0]), float(res.x[1])


def _proof_points(row: np.ndarray, rq_steps: np.ndarray, lo: int, hi: int) -> np.ndarray:
    pts = np.concatenate([row - 1, row, rq_steps - 1, rq_steps, rq_steps + 1, [lo, hi]])
    return np.unique(np.clip(pts, lo, hi))


def fit_requantizer(thr: np.ndarray, acc_min: int, acc_max: int,
                    max_shift: int = 40) -> tuple[Requantizer, np.ndarray] | None:
    """Integer requantizer proven equal to the table on [acc_min, acc_max] for the channels it
    returns in the boolean mask (the others keep their table); None when no channel fits.

    FINN computes thresholds in float32, so a few rows of large magnitude are *almost* a
    progression, off by one somewhere: those rows stay tables, the rest become requantizers.
    """
    thr = np.asarray(thr)
    if thr.ndim != 2 or thr.shape[1] == 0 or np.any(np.diff(thr, axis=1) < 0):
        return None
    thr = np.ceil(thr).astype(np.int64)
    channels, n = thr.shape
    uv = [_fit_channel(thr[c], acc_min, acc_max) for c in range(channels)]
    fits = np.array([p is not None for p in uv])
    if not fits.any():
        return None
    u = np.array([p[0] if p else 1.0 for p in uv])
    v = np.array([p[1] if p else 0.0 for p in uv])
    for shift in range(8, max_shift + 1):
        # level k <-> acc/u + v/u >= k; the int64 product must keep headroom
        mult = np.maximum(np.round(2.0**shift / u), 1).astype(np.int64)
        add = np.floor(v / u * 2.0**shift).astype(np.int64)
        if (mult * max(abs(acc_min), abs(acc_max)) + np.abs(add)).max() >= 2**62:
            break
        rq = Requantizer(mult, add, shift, n)
        # the quotient at the range ends (it is monotone) must fit int32 for the CPU engine
        ends = (np.array([[acc_min], [acc_max]]) * mult + add) >> shift
        if np.abs(ends[:, fits]).max() >= 2**31:
            return None
        proven = fits & np.array([_proves(rq, c, thr[c], acc_min, acc_max) for c in range(channels)])
        if proven.sum() == fits.sum():
            return rq, proven
    return None


def _proves(rq: Requantizer, c: int, row: np.ndarray, lo: int, hi: int) -> bool:
    # where the requantizer steps: smallest acc with (acc*M + B) >> S >= k
    k = np.arange(1, rq.levels + 1, dtype=np.int64)
    steps = -((-(k * 2**rq.shift - rq.add[c])) // rq.mult[c])  # ceil division
    pts = _proof_points(row, steps, lo, hi)
    y = np.clip((pts * rq.mult[c] + rq.add[c]) >> rq.shift, 0, rq.levels)
    return bool(np.array_equal(y, _count(row, pts)))
