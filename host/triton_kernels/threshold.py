"""Thresholding: FINN's multi-threshold count on a stream, channels on the last axis."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .common import RequantPlan, requantize, threshold_count

BLOCK = 1024


@triton.jit
def _threshold_kernel(x_ptr, thr_ptr, rq_mult_ptr, rq_add_ptr, out_ptr, total, C, ACT_VAL,
                      RQ_LEVELS, LOG2P: tl.constexpr, RQ: tl.constexpr,
                      RQ_SHIFT: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    ok = offs < total
    x = tl.load(x_ptr + offs, mask=ok, other=0)
    if RQ:  # every channel a proven requantizer: no table search
        y = requantize(x, rq_mult_ptr, rq_add_ptr, offs % C, ok, RQ_SHIFT, RQ_LEVELS) + ACT_VAL
    else:
        chan = (offs % C) * (1 << LOG2P)
        y = threshold_count(x.to(thr_ptr.dtype.element_ty), thr_ptr, chan, LOG2P) + ACT_VAL
    tl.store(out_ptr + offs, y.to(out_ptr.dtype.element_ty), mask=ok)


def thresholding(x: torch.Tensor, thr: torch.Tensor, log2p: int, act_val: int,
                 out_dtype: torch.dtype, rq: RequantPlan | None = None) -> torch.Tensor:
    """count(x >= T[c, :]) + act_val per element, c = the last-axis index; ``thr`` is the
    prepared table [C, 2^log2p] (``common.threshold_table``) in a dtype that holds x; ``rq``:
    the same counts as a proven requantizer (``common.fit_requant``), used instead."""
    x = x.contiguous()
    out = torch.empty(x.shape, dtype=out_dtype, device=x.device)
    total = x.numel()
    if total:
        _threshold_kernel[(triton.cdiv(total, BLOCK),)](
            x, thr, rq.mult if rq else thr, rq.add if rq else thr, out, total, thr.shape[0],
            int(act_val), rq.levels if rq else 0, LOG2P=log2p, RQ=rq is not None,
            RQ_SHIFT=rq.shift if rq else 0, BLOCK=BLOCK)
    return out
