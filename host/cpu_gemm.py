"""The CPU plan's float GEMMs: numpy's BLAS, or torch's where that process already runs torch.

The plan multiplies integers held in float32 (float64) only where every partial sum is
provably below 2^24 (2^53): the product is then exact in any summation order, with or
without fused multiply-adds, so any IEEE GEMM gives the same integers. torch's CPU GEMM (MKL)
measured 25-50% faster than numpy's OpenBLAS on the transformer's shapes ([1568, 64] x
[64, 192]: 0.21 vs 0.28 ms, one thread), so it is used when all of these hold at the call:

- torch is already imported by the process (never imported here: it takes seconds, and a
  board has no torch);
- its float32 matmuls are IEEE (``get_float32_matmul_precision() == "highest"`` and oneDNN's
  fp32 precision unset or "ieee": "medium"/"high", bf16 or tf32 would round);
- its thread pool is no larger than the engine's (``set_threads``; one process-wide limit,
  as the BLAS limit is);
- the product has at least ``TORCH_MIN_ROWS`` rows (at batch 1 numpy's call costs less).
"""

from __future__ import annotations

import sys

import numpy as np

TORCH_MIN_ROWS = 256
_threads = 1


def set_threads(threads: int) -> None:
    """The engine's thread budget: torch's GEMM only when its pool fits in it."""
    global _threads
    _threads = max(1, int(threads))


def _torch_exact():
    """The torch module when its GEMM may run now (see the module doc), else None."""
    torch = sys.modules.get("torch")
    if torch is None or torch.get_num_threads() > _threads:
        return None
    try:
        if torch.get_float32_matmul_precision() != "highest":
            return None
        if torch.backends.mkldnn.matmul.fp32_precision not in ("none", "ieee"):
            return None
    except AttributeError:  # an older torch without these settings: not used
        return None
    return torch


def gemm(w: np.ndarray):
    """``f(x) = x @ w`` for 2-d x of w's dtype (float32 or float64), exact integers by the
    caller's bound; torch or numpy per call (see the module doc)."""
    wm = np.ascontiguousarray(w)
    tw = None

    def f(x: np.ndarray) -> np.ndarray:
        nonlocal tw
        if len(x) >= TORCH_MIN_ROWS and wm.dtype.kind == "f" and x.dtype == wm.dtype \
                and x.flags.c_contiguous and x.flags.writeable:  # (torch.from_numpy's terms)
            torch = _torch_exact()
            if torch is not None:
                if tw is None:
                    tw = torch.from_numpy(wm)
                return torch.mm(torch.from_numpy(x), tw).numpy()
        return x.dot(wm)
    return f
