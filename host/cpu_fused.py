"""One-pass kernels for the CPU plan, compiled by numba when it is installed.

numpy evaluates the proven threshold line ``clip(floor(x * a + b), lo, hi)`` minus its
single-point fixes (``cpu_thresholds._fixed_line``) as 4-5 passes over the data plus 2 per fix;
on a transformer at batch 64 those passes were 40% of the engine's time. ``FusedLine`` runs the
same IEEE operations in the same order and dtypes (a float multiply, a float add, the clip, the
floor, then each fix subtracted where x equals its point) one element at a time in one pass:
numba compiles without fast-math, so nothing is fused or reordered, and every value equals the
numpy form's; ``cpu_thresholds`` still checks each kernel on its proof points before it uses it.
``softmax_u32`` is the transformer's integer softmax (``cpu_plan_transformer._softmax_u32``) in
one pass per segment.

Optional: without numba (e.g. on a board image) ``enabled()`` is False and the plan keeps the
numpy passes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np


@functools.cache
def _kernel() -> tuple[Callable, Callable, Callable] | None:
    """The compiled kernels (a line with per-channel parameters, with one shared row, the
    integer softmax), or None without numba (each compiled once per argument dtypes)."""
    try:
        import numba
    except ImportError:
        return None

    # cache=True: the machine code is kept on disk (numba's cache), so a new process does not
    # compile again; nogil: an engine's caller may run it from several threads
    @numba.njit(cache=True, nogil=True)
    def fixed_line(x, a, b, clo, chi, points, deltas, c0, c1, out):  # pragma: no cover (JIT)
        rows, cols = x.shape
        for r in range(rows):
            xr, yr = x[r], out[r]
            for c in range(cols):
                # the numpy form's order: x * a rounded, + b rounded, clip, floor
                y = xr[c] * a[c]
                y = y + b[c]
                y = min(max(y, clo[c]), chi[c])
                yr[c] = np.floor(y)
            # the fixes, on columns [c0, c1) (where any are): as slices and a loop from 0 (a
            # loop from c0 measured 8x slower: it did not vectorize), subtracting a select of
            # one dtype (d, or d - d == 0) with no branch
            xs, ys = xr[c0:c1], yr[c0:c1]
            for e in range(points.shape[0]):
                pe, de = points[e, c0:c1], deltas[e, c0:c1]
                for c in range(c1 - c0):
                    d = de[c]
                    ys[c] -= d if xs[c] == pe[c] else d - d
        return out

    @numba.njit(cache=True, nogil=True)
    def fixed_line_shared(x, a, b, clo, chi, points, deltas, out):  # pragma: no cover (JIT)
        # one threshold row for every value: x and out flat, the parameters scalars
        for i in range(x.shape[0]):
            y = x[i] * a
            y = y + b
            out[i] = np.floor(min(max(y, clo), chi))
        for e in range(points.shape[0]):
            p, d = points[e], deltas[e]
            for i in range(x.shape[0]):
                out[i] -= d if x[i] == p else d - d
        return out

    @numba.njit(cache=True, nogil=True)
    def softmax_u32(q, k0s, k1s, lut, numer, half, scale, pmax, out):  # pragma: no cover
        # q [m, s(key), R] integer scores, segment g's real keys [k0s[g], k1s[g]). Every
        # integer here is below 2^53 (``cpu_plan_transformer._u32_softmax_exact``: below
        # 2^32), so float64 holds it exactly and vectorizes where int64 products do not:
        # (e * recip + half) >> shift is floor((e * recip + half) * 2^-shift)
        m, s, rows = q.shape
        top = np.empty(rows, q.dtype)
        total = np.empty(rows, np.float64)
        recip = np.empty(rows, np.float64)
        e = np.empty((s, rows), np.float64)
        for g in range(m):
            k0, k1 = k0s[g], k1s[g]
            total[:] = 0
            e[:] = 0  # a padded key's e
            if k1 > k0:
                top[:] = q[g, k0]
                for k in range(k0 + 1, k1):
                    qk = q[g, k]
                    for r in range(rows):
                        top[r] = max(top[r], qk[r])
                for k in range(k0, k1):
                    qk, ek = q[g, k], e[k]
                    for r in range(rows):
                        ek[r] = lut[np.int64(top[r] - qk[r])]
                        total[r] += ek[r]
            for r in range(rows):  # 2^R // sum (exact: 2^R and the sum below 2^53)
                recip[r] = np.floor(numer / total[r]) if total[r] > 0 else 0.0
            for k in range(s):
                ek, ok = e[k], out[g, k]
                for r in range(rows):
                    ok[r] = min(np.floor((ek[r] * recip[r] + half) * scale), pmax)
        return out
    return fixed_line, fixed_line_shared, softmax_u32


USE = True  # False: plans compiled from now on keep numpy's passes (tests compare both)


def enabled() -> bool:
    """Whether plans compiled now use the one-pass kernel (numba importable, ``USE``)."""
    return USE and _kernel() is not None


class FusedLine:
    """``_fixed_line(x, params, points, deltas)`` over x's last axis as one numba pass.

    ``params`` (a, b, clip lo, clip hi): one value per channel or one for all; ``points`` and
    ``deltas`` [E, channels] (delta 0: no fix). A threshold row shared by all channels
    (one value each) serves any last-axis width."""

    def __init__(self, params, points: np.ndarray, deltas: np.ndarray, out_dtype) -> None:
        kernels = _kernel()
        if kernels is None:
            raise RuntimeError("numba is not installed")
        self.kernel, self.shared_kernel, _ = kernels
        dtype = np.result_type(params[0], params[1])
        self.params = [np.atleast_1d(np.asarray(p, dtype)) for p in params]
        self.points, self.deltas = np.atleast_2d(points), np.atleast_2d(deltas)
        self.out_dtype = np.dtype(out_dtype)
        # the fix loops cover the smallest column range holding every fix
        has = np.flatnonzero(np.any(self.deltas != 0, axis=0))
        self.fix_cols = (int(has[0]), int(has[-1]) + 1) if len(has) else (0, 0)
        if not len(has):
            self.points, self.deltas = self.points[:0], self.deltas[:0]
        # one row for all channels: a flat pass over every value (the last axis may be short,
        # e.g. an attention head's 16 values, which would leave the channel loop too short)
        self.shared = all(p.shape[-1] == 1 for p in (*self.params, self.points))
        if self.shared:
            self._scalars = (*(p.dtype.type(p[0]) for p in self.params),
                             np.ascontiguousarray(self.points[:, 0]),
                             np.ascontiguousarray(self.deltas[:, 0]))
        else:  # one value per channel: the clip bounds may be one for all
            width = self.params[0].shape[-1]
            self._args = (*(np.ascontiguousarray(np.broadcast_to(p, width))
                            for p in self.params),
                          np.ascontiguousarray(self.points), np.ascontiguousarray(self.deltas),
                          *self.fix_cols)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.shared:
            out = np.empty(x.shape, self.out_dtype)
            self.shared_kernel(np.ascontiguousarray(x).reshape(-1), *self._scalars,
                               out.reshape(-1))
            return out
        width = self._args[0].shape[0]
        if x.shape[-1] != width:
            raise ValueError(f"{width} threshold channels, {x.shape[-1]} in the data")
        flat = np.ascontiguousarray(x).reshape(-1, width)
        out = np.empty(flat.shape, self.out_dtype)
        self.kernel(flat, *self._args, out)
        return out.reshape(x.shape)


def softmax_u32(keys: list[tuple[int, int]] | None, s: int, lut: np.ndarray, recip_bits: int,
                frac: int, pmax: int, out_dtype) -> Callable[[np.ndarray], np.ndarray]:
    """``cpu_plan_transformer._softmax_u32``'s integers in one kernel call: scores
    [m, s(key), N, H, s(query)] (integer-valued floats or integers) to probabilities of the
    same layout in ``out_dtype``; ``keys``: per segment its real keys' [start, stop), None when
    every key is real."""
    kernel = _kernel()[2]
    k0s = np.array([k[0] for k in keys] if keys is not None else [], np.int64)
    k1s = np.array([k[1] for k in keys] if keys is not None else [], np.int64)
    table = np.asarray(lut, np.float64)
    numer, half = float(1 << recip_bits), float(1 << (recip_bits - frac - 1))
    scale, top = 2.0 ** -(recip_bits - frac), float(pmax)

    def softmax(q: np.ndarray) -> np.ndarray:
        m = q.shape[0]
        lo = k0s if keys is not None else np.zeros(m, np.int64)
        hi = k1s if keys is not None else np.full(m, s, np.int64)
        out = np.empty(q.shape, out_dtype)
        kernel(np.ascontiguousarray(q).reshape(m, s, -1), lo, hi, table, numer, half, scale,
               top, out.reshape(m, s, -1))
        return out

    # compiled (or loaded from numba's cache) now, for both score dtypes the plan may hand
    # over, not inside the first timed batch
    segments = len(k0s) if keys is not None else 1
    for dtype in (np.float32, np.int32):
        softmax(np.zeros((segments, s, 1), dtype))
    return softmax
