"""ElementwiseAdd: lhs + rhs over a frame; either side may be a constant shared by all frames."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK = 1024


@triton.jit
def _add_kernel(a_ptr, b_ptr, out_ptr, total, F, A_CONST: tl.constexpr, B_CONST: tl.constexpr,
                BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    ok = offs < total
    a_idx = offs % F if A_CONST else offs  # a constant holds one frame (F values)
    b_idx = offs % F if B_CONST else offs
    a = tl.load(a_ptr + a_idx, mask=ok, other=0).to(tl.int64)
    b = tl.load(b_ptr + b_idx, mask=ok, other=0).to(tl.int64)
    tl.store(out_ptr + offs, (a + b).to(out_ptr.dtype.element_ty), mask=ok)


def add_frames(a: torch.Tensor, b: torch.Tensor, a_const: bool, b_const: bool, batch: int,
               frame: int, out_dtype: torch.dtype) -> torch.Tensor:
    """a + b over [batch, frame] values; a constant operand holds one frame."""
    a, b = a.contiguous(), b.contiguous()
    total = batch * frame
    out = torch.empty(total, dtype=out_dtype, device=(b if a_const else a).device)
    if total:
        _add_kernel[(triton.cdiv(total, BLOCK),)](a, b, out, total, frame, A_CONST=a_const,
                                                  B_CONST=b_const, BLOCK=BLOCK)
    return out
