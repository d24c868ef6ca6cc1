"""Thresholding: FINN's multi-threshold count on a stream, channels on the last axis."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .common import threshold_count

BLOCK = 1024


@triton.jit
def _threshold_kernel(x_ptr, thr_ptr, out_ptr, total, C, ACT_VAL, LOG2P: tl.constexpr,
                      BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    ok = offs < total
    x = tl.load(x_ptr + offs, mask=ok, other=0)
    chan = (offs % C) * (1 << LOG2P)
    y = threshold_count(x.to(thr_ptr.dtype.element_ty), thr_ptr, chan, LOG2P) + ACT_VAL
    tl.store(out_ptr + offs, y.to(out_ptr.dtype.element_ty), mask=ok)


def thresholding(x: torch.Tensor, thr: torch.Tensor, log2p: int, act_val: int,
                 out_dtype: torch.dtype) -> torch.Tensor:
    """count(x >= T[c, :]) + act_val per element, c = the last-axis index; ``thr`` is the
    prepared table [C, 2^log2p] (``common.threshold_table``) in a dtype that holds x."""
    x = x.contiguous()
    out = torch.empty(x.shape, dtype=out_dtype, device=x.device)
    total = x.numel()
    if total:
        _threshold_kernel[(triton.cdiv(total, BLOCK),)](
            x, thr, out, total, thr.shape[0], int(act_val), LOG2P=log2p, BLOCK=BLOCK)
    return out
