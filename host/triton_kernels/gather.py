"""Index gathers along a frame: im2col (ConvolutionInputGenerator), SegmentPad, SegmentUnpad.

``out[b, j] = x[b, idx[j]]``, 0 where ``idx[j] < 0`` (padding); the index table is built once
per node on the host.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK = 1024


@triton.jit
def _gather_kernel(x_ptr, idx_ptr, out_ptr, J, stride_xb, BLOCK: tl.constexpr):
    b = tl.program_id(1)
    j = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    ok = j < J
    src = tl.load(idx_ptr + j, mask=ok, other=-1)
    val = tl.load(x_ptr + b.to(tl.int64) * stride_xb + src, mask=ok & (src >= 0), other=0)
    tl.store(out_ptr + b.to(tl.int64) * J + j, val, mask=ok)


def gather_frames(x: torch.Tensor, idx: torch.Tensor, out_shape: list[int]) -> torch.Tensor:
    """x [B, ...] viewed as [B, F]; idx int64 [J] (-1: zero) -> [B, *out_shape[1:]]."""
    batch = x.shape[0]
    x = x.reshape(batch, x[0].numel() if batch else 0).contiguous()
    j = idx.numel()
    out = torch.empty((batch, j), dtype=x.dtype, device=x.device)
    if batch and j:
        _gather_kernel[(triton.cdiv(j, BLOCK), batch)](x, idx, out, j, x.stride(0), BLOCK=BLOCK)
    return out.reshape(batch, *out_shape[1:])
