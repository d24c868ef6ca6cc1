"""LabelSelect: the indices of the K largest values per row, ties to the lower index."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .common import pow2

LOWEST = tl.constexpr(-(2**63))  # below any int64 stream value


@triton.jit
def _topk_kernel(x_ptr, out_ptr, R, L, TOPK: tl.constexpr, BLOCK_R: tl.constexpr,
                 BLOCK_L: tl.constexpr):
    r = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    col = tl.arange(0, BLOCK_L)
    ok = (r < R)[:, None] & (col < L)[None, :]
    x = tl.load(x_ptr + r[:, None] * L + col[None, :], mask=ok, other=0).to(tl.int64)
    free = ok
    for k in tl.static_range(TOPK):
        best = tl.max(tl.where(free, x, LOWEST), axis=1)
        hit = free & (x == best[:, None])
        pick = tl.min(tl.where(hit, col[None, :], BLOCK_L), axis=1)  # lowest index wins
        tl.store(out_ptr + r * TOPK + k, pick.to(tl.int64), mask=r < R)
        free = free & (col[None, :] != pick[:, None])


def top_k(x: torch.Tensor, k: int) -> torch.Tensor:
    """x [..., L] -> int64 [..., k]: indices of the k largest, lower index first among ties."""
    labels = x.shape[-1]
    if not 1 <= k <= labels:
        raise ValueError(f"LabelSelect K={k} must lie in 1..{labels}")
    x2 = x.reshape(-1, labels).contiguous()
    rows = x2.shape[0]
    out = torch.empty((rows, k), dtype=torch.int64, device=x.device)
    br = pow2(rows, 1, 32)
    if rows:
        _topk_kernel[(triton.cdiv(rows, br),)](x2, out, rows, labels, TOPK=k, BLOCK_R=br,
                                               BLOCK_L=pow2(labels))
    return out.reshape(*x.shape[:-1], k)
