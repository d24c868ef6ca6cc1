"""MVAU: tiled int8 ``tl.dot`` (int32 accumulator) with the multi-threshold count fused in the
epilogue; batch x vectors is M, MW is K, MH is N.

Operands reach the tensor cores as int8. An input type that does not fit int8 is shifted by a
zero point first (UINT8: x - 128, the column sums put it back through a per-channel bias);
wider inputs (e.g. pooled sums) and weights are split into 7-bit limbs, each pair of limbs one
exact int8 dot, combined in int64 (``sum dot(x_j, w_i) << 7 (i + j)``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import triton
import triton.language as tl

from netfabric.errors import GraphError

from .common import (
    RequantPlan,
    fit_requant,
    pow2,
    requantize,
    threshold_count,
    threshold_table,
    torch_dtype,
)

LIMB = 7  # bits per limb below the top one (the top limb is signed)
MAX_K = 2**17 - 1  # 128 * 128 * K must fit an int32 accumulator
LIMB_BITS = tl.constexpr(LIMB)


@triton.jit
def _mvau_kernel(x_ptr, w_ptr, bias_ptr, thr_ptr, rq_mult_ptr, rq_add_ptr, out_ptr, M, N, K,
                 stride_xm, stride_om, XZERO, ACT_VAL, RQ_LEVELS, XL: tl.constexpr,
                 WL: tl.constexpr, HAS_BIAS: tl.constexpr, HALVE: tl.constexpr,
                 ACC64: tl.constexpr, LOG2P: tl.constexpr, HAS_THR: tl.constexpr,
                 RQ: tl.constexpr, RQ_SHIFT: tl.constexpr,
                 BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rk = tl.arange(0, BLOCK_K)
    m_ok = rm < M
    n_ok = rn < N
    wide: tl.constexpr = XL * WL > 1
    if wide:
        acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.int64)
    else:
        acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.int32)
    for k0 in range(0, K, BLOCK_K):
        kk = k0 + rk
        x = tl.load(x_ptr + rm.to(tl.int64)[:, None] * stride_xm + kk[None, :],
                    mask=m_ok[:, None] & (kk[None, :] < K), other=XZERO)
        if wide:
            x = x.to(tl.int64) - XZERO  # masked entries become 0
        else:
            x = x.to(tl.int32) - XZERO
        w_off = kk[:, None] * N + rn[None, :]
        w_mask = (kk[:, None] < K) & n_ok[None, :]
        if wide:
            for j in tl.static_range(XL):
                if j == XL - 1:
                    limb = (x >> (LIMB_BITS * j)).to(tl.int8)  # signed top limb
                else:
                    limb = ((x >> (LIMB_BITS * j)) & 127).to(tl.int8)
                for i in tl.static_range(WL):
                    w = tl.load(w_ptr + i * K * N + w_off, mask=w_mask, other=0)
                    part = tl.dot(limb, w, out_dtype=tl.int32)
                    acc += part.to(tl.int64) << (LIMB_BITS * (i + j))
        else:
            w = tl.load(w_ptr + w_off, mask=w_mask, other=0)
            acc = tl.dot(x.to(tl.int8), w, acc, out_dtype=tl.int32)
    if ACC64:
        acc = acc.to(tl.int64)
    if HAS_BIAS:
        acc += tl.load(bias_ptr + rn, mask=n_ok, other=0)[None, :]
    if HALVE:  # BIPOLAR x BIPOLAR: (x . w + MW) / 2, an exact halving of an even number
        acc = acc >> 1
    if RQ:  # every channel a proven requantizer: no table search
        acc = requantize(acc, rq_mult_ptr, rq_add_ptr, rn[None, :], n_ok[None, :], RQ_SHIFT,
                         RQ_LEVELS) + ACT_VAL
    elif HAS_THR:
        chan = tl.where(n_ok, rn, 0) * (1 << LOG2P)
        acc = threshold_count(acc, thr_ptr, chan[None, :], LOG2P) + ACT_VAL
    out = out_ptr + rm.to(tl.int64)[:, None] * stride_om + rn[None, :]
    tl.store(out, acc.to(out_ptr.dtype.element_ty), mask=m_ok[:, None] & n_ok[None, :])


def limbs_for(lo: int, hi: int) -> int:
    """Number of limbs (7 bits each, top one signed int8) that hold every value in [lo, hi]."""
    mag = max(-lo, hi + 1, 1)  # values lie in [-mag, mag - 1]; limbs hold [-2^7L, 2^7L - 1]
    return max(1, -(-(mag - 1).bit_length() // LIMB))


def split_limbs(w: np.ndarray, count: int) -> np.ndarray:
    """Integers -> [count, ...] int8 limbs: ``w == sum_i limb_i << 7 i``."""
    w = np.asarray(w, dtype=np.int64)
    out = []
    for i in range(count):
        part = w >> (LIMB * i)
        out.append(part if i == count - 1 else part & 127)
    limbs = np.stack(out)
    if limbs.min() < -128 or limbs.max() > 127:
        raise GraphError("weights do not fit their limbs")  # limbs_for() rules this out
    return limbs.astype(np.int8)


@dataclass
class MvauPlan:
    """One MVAU's device-side constants and launch settings, prepared once."""

    w: torch.Tensor  # int8 [WL, K, N]
    bias: torch.Tensor | None  # [N]
    thr: torch.Tensor | None  # [N, 2^LOG2P]
    log2p: int
    act_val: int
    x_zero: int
    x_limbs: int
    halve: bool
    acc64: bool
    out_dtype: torch.dtype
    rq: RequantPlan | None = None  # the thresholds as a proven requantizer, when they are one

    @property
    def k(self) -> int:
        return self.w.shape[1]

    @property
    def n(self) -> int:
        return self.w.shape[2]


def make_plan(w: np.ndarray, x_range: tuple[int, int], device, *, bias: np.ndarray | None = None,
              thresholds: np.ndarray | None = None, act_val: int = 0, halve: bool = False,
              out_bound: int | None = None, what: str = "MVAU", requant: bool = True
              ) -> MvauPlan:
    """Prepare weights [K, N] (integers), the input range, an optional per-channel bias added
    to the accumulator, an optional halving (bipolar) and optional thresholds [N or 1, T]."""
    w = np.asarray(w, dtype=np.int64)
    k, n = w.shape
    if k > MAX_K:
        raise GraphError(f"{what}: MW={k} is more than the {MAX_K} an int32 tile accumulates")
    lo, hi = x_range
    if -128 <= lo and hi <= 127:
        x_zero, x_limbs = 0, 1
    elif hi - lo <= 255:  # e.g. UINT8: x - 128 fits int8
        x_zero, x_limbs = lo + 128, 1
    else:
        x_zero, x_limbs = 0, limbs_for(lo, hi)
    w_limbs = limbs_for(int(w.min(initial=0)), int(w.max(initial=0)))
    bias = np.zeros(n, np.int64) if bias is None else np.asarray(bias, np.int64)
    bias = bias + x_zero * w.sum(axis=0)  # (x - z) . w + z * colsum(w) == x . w
    x_mag = max(-lo, hi, abs(lo - x_zero), abs(hi - x_zero))
    bound = x_mag * int(np.abs(w).sum(axis=0).max(initial=0)) + int(np.abs(bias).max(initial=0))
    if bound >= 2**62:
        raise GraphError(f"{what}: the accumulator could exceed int64")
    acc64 = x_limbs * w_limbs > 1 or bound > 2**31 - 2
    acc_dtype = torch.int64 if acc64 else torch.int32
    thr, log2p, rq = None, 0, None
    if thresholds is not None:
        table, log2p = threshold_table(thresholds, n, acc_dtype, what)
        thr = torch.as_tensor(table, dtype=acc_dtype, device=device)
        out_bound = max(abs(act_val), abs(act_val + table.shape[1]))
        if requant:  # the accumulator lies in [-bound, bound]: a proof there holds for it
            rq = fit_requant(thresholds, n, -bound, bound, device)
    out_dtype = torch_dtype(bound if out_bound is None else out_bound)
    return MvauPlan(
        w=torch.as_tensor(split_limbs(w, w_limbs), device=device).contiguous(),
        bias=torch.as_tensor(bias, dtype=acc_dtype, device=device) if bias.any() else None,
        thr=thr, log2p=log2p, act_val=int(act_val), x_zero=x_zero, x_limbs=x_limbs,
        halve=halve, acc64=acc64, out_dtype=out_dtype, rq=rq)


def blocks(m: int, n: int, k: int) -> tuple[int, int, int]:
    """Tile sizes: tl.dot needs >= 16 on M/N and >= 32 on K for int8; bigger tiles for big
    problems (tensor-core friendly on a GPU, fewer programs under the interpreter)."""
    return pow2(m, 16, 128), pow2(n, 16, 128), pow2(k, 32, 128)


def run_plan(x: torch.Tensor, plan: MvauPlan, block: tuple[int, int, int] | None = None,
             num_warps: int | None = None, num_stages: int | None = None) -> torch.Tensor:
    """x [M, K] (any integer dtype, values in the planned range) -> [M, N]. ``block``,
    ``num_warps`` and ``num_stages`` override the launch heuristics (GPU tuning)."""
    if x.dim() != 2 or x.shape[1] != plan.k:
        raise GraphError(f"MVAU input {list(x.shape)} does not fit [M, {plan.k}]")
    if x.stride(1) != 1:
        x = x.contiguous()
    m = x.shape[0]
    out = torch.empty((m, plan.n), dtype=plan.out_dtype, device=x.device)
    if m == 0:
        return out
    bm, bn, bk = block or blocks(m, plan.n, plan.k)
    grid = (triton.cdiv(m, bm), triton.cdiv(plan.n, bn))
    tuning = {"num_warps": num_warps or (8 if bm * bn >= 128 * 128 else 4)}
    if num_stages:
        tuning["num_stages"] = num_stages
    dummy, rq = plan.w, plan.rq
    _mvau_kernel[grid](
        x, plan.w, plan.bias if plan.bias is not None else dummy,
        plan.thr if plan.thr is not None else dummy, rq.mult if rq else dummy,
        rq.add if rq else dummy, out, m, plan.n, plan.k, x.stride(0),
        out.stride(0), plan.x_zero, plan.act_val, rq.levels if rq else 0, XL=plan.x_limbs,
        WL=plan.w.shape[0], HAS_BIAS=plan.bias is not None, HALVE=plan.halve, ACC64=plan.acc64,
        LOG2P=plan.log2p, HAS_THR=plan.thr is not None, RQ=rq is not None,
        RQ_SHIFT=rq.shift if rq else 0, BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, **tuning)
    return out


def mvau_int8(x_i8: torch.Tensor, w_i8: torch.Tensor, thresholds: torch.Tensor | None = None,
              act_val: int = 0, block: tuple[int, int, int] | None = None,
              num_warps: int | None = None, num_stages: int | None = None) -> torch.Tensor:
    """Just the fused int8 MVAU kernel: ``x_i8 [M, K] @ w_i8 [K, N]`` (both int8, on one
    device) with an int32 accumulator; with ``thresholds`` [N or 1, T] (integers, any order),
    FINN's multi-threshold count ``#{k: acc >= T[c, k]} + act_val`` in the epilogue instead
    of the accumulator. Returns int32 [M, N].

    The weights are used as they are; thresholds are sorted and padded on the device each
    call (a model's MVAU prepares both once: ``make_plan``). ``block`` = (BLOCK_M, BLOCK_N,
    BLOCK_K), ``num_warps`` and ``num_stages`` override the launch heuristics."""
    if x_i8.dtype != torch.int8 or w_i8.dtype != torch.int8 or x_i8.dim() != 2 \
            or w_i8.dim() != 2 or x_i8.shape[1] != w_i8.shape[0]:
        raise GraphError("mvau_int8 takes int8 x [M, K] and w [K, N]")
    k, n = w_i8.shape
    if k > MAX_K:
        raise GraphError(f"mvau_int8: K={k} is more than the {MAX_K} an int32 tile accumulates")
    thr, log2p = None, 0
    if thresholds is not None:
        if thresholds.dim() != 2 or thresholds.shape[0] not in (1, n):
            raise GraphError(f"mvau_int8: thresholds {list(thresholds.shape)} do not fit {n} "
                             "channels")
        log2p = int(thresholds.shape[1]).bit_length()
        info = torch.iinfo(torch.int32)
        rows = torch.sort(thresholds.to(x_i8.device, torch.int64), dim=1).values
        thr = torch.full((n, 1 << log2p), info.max, dtype=torch.int32, device=x_i8.device)
        thr[:, : rows.shape[1]] = rows.clamp(info.min, info.max).to(torch.int32)
    plan = MvauPlan(w=w_i8.unsqueeze(0).contiguous(), bias=None, thr=thr, log2p=log2p,
                    act_val=int(act_val), x_zero=0, x_limbs=1, halve=False, acc64=False,
                    out_dtype=torch.int32)
    return run_plan(x_i8, plan, block, num_warps, num_stages)
