"""SegmentAttention: one fused kernel per (frame x segment x query block, head).

Per program: scores = thr(q . k^T) + act, the integer softmax of models/INT_SOFTMAX.md over the
segment's valid keys (exp LUT on max-subtracted scores, integer row sum, one reciprocal per
row, UINT8 probabilities), ctx = thr(p . v) + act. Scores and probabilities stay in registers:
no s x s tensor is written. A segment longer than one key tile (BLOCK_N) is walked three times
(row max, row sum, p . v), recomputing q . k^T each time instead of storing it.
p . v runs on int8 tensor cores as (p - 128) . v + 128 * colsum(v), exact for p in 0..255.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import triton
import triton.language as tl

from netfabric.errors import GraphError

from .common import pow2, threshold_count, threshold_table


@triton.jit
def _scores(q, k_base, stride_kt, stride_kd, seg_row0, n0, S, T_MEM, SHIFT, NTOK, DH,
            sthr_ptr, s_row, S_ACT, S_LOG2P: tl.constexpr,
            BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    """Thresholded scores of the query tile against keys n0 .. n0 + BLOCK_N of the segment,
    and which of those keys are valid (inside the segment, a real token)."""
    j = n0 + tl.arange(0, BLOCK_N)
    dd = tl.arange(0, BLOCK_D)
    pos = seg_row0 + j  # token row in memory
    in_mem = (j < S) & (pos < T_MEM)
    k = tl.load(k_base + pos.to(tl.int64)[:, None] * stride_kt + dd[None, :] * stride_kd,
                mask=in_mem[:, None] & (dd[None, :] < DH), other=0).to(tl.int8)
    acc = tl.dot(q, tl.trans(k), out_dtype=tl.int32)
    chan = tl.where(j < S, j, 0) * s_row  # per-key rows (s_row = 2^S_LOG2P) or one shared row
    sc = threshold_count(acc, sthr_ptr, chan[None, :], S_LOG2P) + S_ACT
    valid = in_mem & (pos >= SHIFT) & (pos < SHIFT + NTOK)
    return sc, valid


@triton.jit
def _segment_attention_kernel(
        q_ptr, k_ptr, v_ptr, out_ptr, sthr_ptr, lut_ptr, cthr_ptr,
        NSEG, QB, S, T_MEM, SHIFT, NTOK, DH, s_row, c_row, LUT_N,
        sq_b, sq_t, sq_h, sq_d, sk_b, sk_t, sk_h, sk_d, sv_b, sv_t, sv_h, sv_d,
        so_b, so_t, so_h, so_d, S_ACT, SCORE_MIN, P_MAX, C_ACT,
        S_LOG2P: tl.constexpr, RECIP_BITS: tl.constexpr, SHIFT_BITS: tl.constexpr,
        C_LOG2P: tl.constexpr, ONE_TILE: tl.constexpr,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    pid = tl.program_id(0)
    h = tl.program_id(1)
    b = pid // (NSEG * QB)
    seg = (pid // QB) % NSEG
    qb = pid % QB
    seg_row0 = seg * S
    i = qb * BLOCK_M + tl.arange(0, BLOCK_M)
    dd = tl.arange(0, BLOCK_D)
    q_pos = seg_row0 + i
    q_ok = (i < S) & (q_pos < T_MEM)
    d_ok = dd < DH
    q_base = q_ptr + b.to(tl.int64) * sq_b + h * sq_h
    q = tl.load(q_base + q_pos.to(tl.int64)[:, None] * sq_t + dd[None, :] * sq_d,
                mask=q_ok[:, None] & d_ok[None, :], other=0).to(tl.int8)
    k_base = k_ptr + b.to(tl.int64) * sk_b + h * sk_h
    v_base = v_ptr + b.to(tl.int64) * sv_b + h * sv_h

    # pass 1: row max over the valid keys
    if ONE_TILE:
        sc, valid = _scores(q, k_base, sk_t, sk_d, seg_row0, 0, S, T_MEM, SHIFT, NTOK, DH,
                            sthr_ptr, s_row, S_ACT, S_LOG2P, BLOCK_N, BLOCK_D)
        row_max = tl.max(tl.where(valid[None, :], sc, SCORE_MIN), axis=1)
    else:
        row_max = tl.zeros([BLOCK_M], tl.int32) + SCORE_MIN
        for n0 in range(0, S, BLOCK_N):
            sc, valid = _scores(q, k_base, sk_t, sk_d, seg_row0, n0, S, T_MEM, SHIFT, NTOK,
                                DH, sthr_ptr, s_row, S_ACT, S_LOG2P, BLOCK_N, BLOCK_D)
            row_max = tl.maximum(row_max,
                                 tl.max(tl.where(valid[None, :], sc, SCORE_MIN), axis=1))
    # pass 2: integer row sum of exp LUT values, one reciprocal per row
    if ONE_TILE:
        d = tl.where(valid[None, :], row_max[:, None] - sc, 0)
        e = tl.load(lut_ptr + d, mask=valid[None, :] & (d < LUT_N), other=0).to(tl.int64)
        total = tl.sum(e, axis=1)
    else:
        total = tl.zeros([BLOCK_M], tl.int64)
        for n0 in range(0, S, BLOCK_N):
            sc, valid = _scores(q, k_base, sk_t, sk_d, seg_row0, n0, S, T_MEM, SHIFT, NTOK,
                                DH, sthr_ptr, s_row, S_ACT, S_LOG2P, BLOCK_N, BLOCK_D)
            d = tl.where(valid[None, :], row_max[:, None] - sc, 0)
            e = tl.load(lut_ptr + d, mask=valid[None, :] & (d < LUT_N), other=0).to(tl.int64)
            total += tl.sum(e, axis=1)
    recip = tl.where(total > 0, (1 << RECIP_BITS) // tl.maximum(total, 1), 0)
    # pass 3: probabilities (UINT8) times v on int8 tensor cores
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.int32)
    for n0 in range(0, S, BLOCK_N):
        if not ONE_TILE:
            sc, valid = _scores(q, k_base, sk_t, sk_d, seg_row0, n0, S, T_MEM, SHIFT, NTOK,
                                DH, sthr_ptr, s_row, S_ACT, S_LOG2P, BLOCK_N, BLOCK_D)
            d = tl.where(valid[None, :], row_max[:, None] - sc, 0)
            e = tl.load(lut_ptr + d, mask=valid[None, :] & (d < LUT_N), other=0).to(tl.int64)
        p = (e * recip[:, None] + (1 << (SHIFT_BITS - 1))) >> SHIFT_BITS
        p = tl.minimum(p, P_MAX)
        j = n0 + tl.arange(0, BLOCK_N)
        pos = seg_row0 + j
        in_mem = (j < S) & (pos < T_MEM)
        v = tl.load(v_base + pos.to(tl.int64)[:, None] * sv_t + dd[None, :] * sv_d,
                    mask=in_mem[:, None] & d_ok[None, :], other=0).to(tl.int8)
        acc = tl.dot((p - 128).to(tl.int8), v, acc, out_dtype=tl.int32)
        acc += 128 * tl.sum(v.to(tl.int32), axis=0)[None, :]
    chan = tl.where(d_ok, dd, 0) * c_row
    ctx = threshold_count(acc, cthr_ptr, chan[None, :], C_LOG2P) + C_ACT
    o_base = out_ptr + b.to(tl.int64) * so_b + h * so_h
    tl.store(o_base + q_pos.to(tl.int64)[:, None] * so_t + dd[None, :] * so_d,
             ctx.to(out_ptr.dtype.element_ty), mask=q_ok[:, None] & d_ok[None, :])


@dataclass
class AttentionPlan:
    """Device-side tables and constants of one SegmentAttention, prepared once."""

    score_thr: torch.Tensor  # int32 [1 or s, 2^s_log2p]
    s_log2p: int
    score_act: int
    lut: torch.Tensor  # int32 [2^score_bits]
    ctx_thr: torch.Tensor  # int32 [1 or dh, 2^c_log2p]
    c_log2p: int
    ctx_act: int
    score_min: int
    recip_bits: int
    frac_bits: int
    p_max: int


def make_plan(seg: int, head_dim: int, score_thr, score_act: int, lut, ctx_thr, ctx_act: int,
              recip_bits: int, frac_bits: int, out_bits: int, score_min: int, device,
              what: str = "SegmentAttention") -> AttentionPlan:
    """Check and upload the tables (numpy integers) of an integer attention."""
    if not 0 < frac_bits < recip_bits <= 40:
        raise GraphError(f"{what}: need 0 < ProbFracBits < RecipBits <= 40")
    if not 1 <= out_bits <= 8:
        raise GraphError(f"{what}: probabilities must be 1..8-bit unsigned, not {out_bits}-bit")
    if head_dim * 128 * 128 > 2**31 - 2 or seg * 255 * 128 > 2**31 - 2:
        raise GraphError(f"{what}: segment {seg} x head dim {head_dim} overflows int32")
    score_thr, ctx_thr = np.asarray(score_thr), np.asarray(ctx_thr)
    # one shared row, or one per key (scores) / per head channel (context), as the semantics'
    # threshold_count reads a table on the last axis
    s_rows = 1 if score_thr.ndim == 2 and score_thr.shape[0] == 1 else seg
    c_rows = 1 if ctx_thr.ndim == 2 and ctx_thr.shape[0] == 1 else head_dim
    st, s_log2p = threshold_table(score_thr, s_rows, torch.int32, f"{what} score thresholds")
    ct, c_log2p = threshold_table(ctx_thr, c_rows, torch.int32, f"{what} context thresholds")
    lut = np.asarray(lut, dtype=np.int64).reshape(-1)
    if lut.min(initial=0) < 0 or lut.max(initial=0) >= 2**24:
        raise GraphError(f"{what}: exp LUT values must lie in 0 .. 2^24 - 1")
    as_dev = lambda a: torch.as_tensor(a, dtype=torch.int32, device=device).contiguous()  # noqa: E731
    return AttentionPlan(as_dev(st), s_log2p, int(score_act), as_dev(lut), as_dev(ct), c_log2p,
                         int(ctx_act), int(score_min), int(recip_bits), int(frac_bits),
                         (1 << out_bits) - 1)


def _strides4(t: torch.Tensor) -> tuple[int, int, int, int]:
    return tuple(int(s) for s in t.stride())  # (batch, token, head, dim)


def launch(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor, plan:
           AttentionPlan, seg: int, tokens_in_memory: int, shift: int, num_tokens: int,
           block: tuple[int, int, int] | None = None) -> None:
    """q, k, v, out: 4-d views [B, T, H, dh] (any strides; q/k/v integers in int8 range,
    cast to int8 as they load). Tokens are rows
    0 .. T-1; segment g holds rows g*seg .. g*seg + seg - 1; keys outside
    [shift, shift + num_tokens) are masked out of the softmax."""
    batch, _, heads, dh = q.shape
    nseg = -(-tokens_in_memory // seg)
    bm, bn, bd = block or (pow2(seg, 16, 64), pow2(seg, 32, 64), pow2(dh, 32))
    if bd < dh:
        raise GraphError(f"BLOCK_D={bd} is smaller than the head dim {dh}")
    qb = triton.cdiv(seg, bm)
    grid = (batch * nseg * qb, heads)
    if grid[0] == 0 or heads == 0:
        return
    _segment_attention_kernel[grid](
        q, k, v, out, plan.score_thr, plan.lut, plan.ctx_thr,
        nseg, qb, seg, tokens_in_memory, shift, num_tokens, dh,
        plan.score_thr.shape[1] if plan.score_thr.shape[0] > 1 else 0,
        plan.ctx_thr.shape[1] if plan.ctx_thr.shape[0] > 1 else 0, plan.lut.numel(),
        *_strides4(q), *_strides4(k), *_strides4(v), *_strides4(out),
        plan.score_act, plan.score_min, plan.p_max, plan.ctx_act,
        S_LOG2P=plan.s_log2p, RECIP_BITS=plan.recip_bits,
        SHIFT_BITS=plan.recip_bits - plan.frac_bits, C_LOG2P=plan.c_log2p, ONE_TILE=seg <= bn,
        BLOCK_M=bm, BLOCK_N=bn, BLOCK_D=bd,
        # Triton's software pipeliner cannot predicate the wgmma of a key-tile loop (a fatal
        # compile error on Hopper): those loops run unpipelined
        **({} if seg <= bn else {"num_stages": 1}))


def default_params(head_dim: int) -> dict:
    """Plausible INT8 tables for benchmarks: scores = q.k^T / (4 sqrt(dh)) as INT8, the exp LUT
    of models/INT_SOFTMAX.md style (8-bit, 256 entries), ctx = p.v / 256 as INT8."""
    step = 4.0 * np.sqrt(head_dim)
    score_thr = np.ceil((np.arange(255) - 127.5) * step)[None, :]
    lut = np.round(255 * np.exp(-np.arange(256) / 16.0))
    ctx_thr = np.ceil((np.arange(255) - 127.5) * 256.0)[None, :]
    return dict(score_thr=score_thr, score_act=-128, lut=lut, ctx_thr=ctx_thr, ctx_act=-128,
                recip_bits=20, frac_bits=8, out_bits=8, score_min=-128)


def prepare_segment_attention(seg: int, head_dim: int, device, params: dict | None = None
                              ) -> AttentionPlan:
    """The checked, uploaded tables for :func:`segment_attention` (``default_params`` when
    None): prepare once, pass as ``plan=`` to every call, as a model's node does."""
    p = dict(default_params(head_dim) if params is None else params)
    return make_plan(seg, head_dim, p["score_thr"], p["score_act"], p["lut"], p["ctx_thr"],
                     p["ctx_act"], p["recip_bits"], p["frac_bits"], p["out_bits"],
                     p["score_min"], device, what="segment_attention")


def segment_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, seg: int,
                      params: dict | None = None, block: tuple[int, int, int] | None = None,
                      plan: AttentionPlan | None = None) -> torch.Tensor:
    """Just the fused segmented-attention kernel on int8 q, k, v [B, H, n, dh] (one device):
    attention only among tokens of the same segment of ``seg`` consecutive tokens (a last,
    shorter segment is masked). Returns the int8-range context [B, H, n, dh] as int32.

    ``params`` holds the integer tables (``default_params(dh)`` when None): score_thr [1, T],
    score_act, lut [2^score_bits], ctx_thr [1, T'], ctx_act, recip_bits, frac_bits, out_bits,
    score_min. They are checked and uploaded on each call unless ``plan`` (from
    :func:`prepare_segment_attention`) is given; ``block`` = (BLOCK_M, BLOCK_N, BLOCK_D) overrides the tile sizes. No s x s tensor is
    written to memory."""
    if not (q.shape == k.shape == v.shape and q.dim() == 4):
        raise GraphError("segment_attention takes q, k, v of one shape [B, H, n, dh]")
    if {q.dtype, k.dtype, v.dtype} != {torch.int8}:
        raise GraphError("segment_attention takes int8 q, k, v")
    batch, heads, n, dh = q.shape
    if plan is None:
        plan = prepare_segment_attention(seg, dh, q.device, params)
    out = torch.empty((batch, heads, n, dh), dtype=torch.int32, device=q.device)
    view = lambda t: t.transpose(1, 2)  # noqa: E731 -- [B, n, H, dh] strides, no copy
    launch(view(q), view(k), view(v), view(out), plan, seg, n, 0, n, block=block)
    return out
