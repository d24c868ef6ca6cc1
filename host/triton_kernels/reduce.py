"""Reductions: Pool (max over each window) and GlobalAccPool (sum over the spatial axes)."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .common import pow2


@triton.jit
def _window_reduce_kernel(x_ptr, out_ptr, R, W, C, IS_MAX: tl.constexpr,
                          BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
    """x [R, W, C] -> out [R, C]: max (IS_MAX) or int64 sum over W."""
    r = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    ok = (r < R)[:, None] & (c < C)[None, :]
    base = x_ptr + r.to(tl.int64)[:, None] * W * C + c[None, :]
    acc = tl.load(base, mask=ok, other=0).to(tl.int64)  # W >= 1: start from the first row
    for w in range(1, W):
        v = tl.load(base + w * C, mask=ok, other=0).to(tl.int64)
        if IS_MAX:
            acc = tl.maximum(acc, v)
        else:
            acc += v
    tl.store(out_ptr + r[:, None] * C + c[None, :], acc.to(out_ptr.dtype.element_ty), mask=ok)


def window_reduce(x: torch.Tensor, rows: int, window: int, channels: int, is_max: bool,
                  out_dtype: torch.dtype) -> torch.Tensor:
    """x viewed as [rows, window, channels] -> [rows, channels] (max or sum over window)."""
    x = x.contiguous()
    out = torch.empty((rows, channels), dtype=out_dtype, device=x.device)
    br, bc = pow2(rows, 1, 64), pow2(channels, 1, 128)
    if rows and channels:
        _window_reduce_kernel[(triton.cdiv(rows, br), triton.cdiv(channels, bc))](
            x, out, rows, window, channels, IS_MAX=is_max, BLOCK_R=br, BLOCK_C=bc)
    return out
