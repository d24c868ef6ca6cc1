"""The integer definitions of netfabric's HW-layer ops, in numpy (int64 throughout).

Each op's python execution calls these; the CPU engine's lowering must give the same integers.
Nothing here depends on FINN or qonnx.
"""

from __future__ import annotations

import numpy as np


def threshold_count(acc: np.ndarray, thr: np.ndarray, act_val: int) -> np.ndarray:
    """FINN's multi-threshold on the last axis: ``count_k(acc >= thr[c, k]) + act_val``.

    ``thr`` is [C, K] (one row per channel of the last axis) or [1, K] (one table for all).
    """
    acc = np.asarray(acc, dtype=np.int64)
    thr = np.asarray(thr)
    if thr.ndim != 2 or thr.shape[0] not in (1, acc.shape[-1]):
        raise ValueError(f"threshold table {thr.shape} does not fit {acc.shape[-1]} channels")
    return (acc[..., None] >= thr).sum(axis=-1).astype(np.int64) + int(act_val)


def segment_valid(num_tokens: int, seg_len: int, shift: int) -> np.ndarray:
    """bool [m, s]: True where a segment slot holds a real token (models/segments.py rules)."""
    pad_right = (-(shift + num_tokens)) % seg_len
    pos = np.arange(shift + num_tokens + pad_right)
    return ((pos >= shift) & (pos < shift + num_tokens)).reshape(-1, seg_len)


def segment_pad(x: np.ndarray, seg_len: int, shift: int) -> np.ndarray:
    """Tokens [..., n, C] -> segments [..., m, s, C]: ``shift`` zero tokens before, zeros after."""
    n = x.shape[-2]
    pad_right = (-(shift + n)) % seg_len
    widths = [(0, 0)] * (x.ndim - 2) + [(shift, pad_right), (0, 0)]
    x = np.pad(x, widths)
    return x.reshape(*x.shape[:-2], -1, seg_len, x.shape[-1])


def segment_unpad(x: np.ndarray, num_tokens: int, shift: int) -> np.ndarray:
    """Segments [..., m, s, C] -> tokens [..., n, C], dropping the padded rows."""
    x = x.reshape(*x.shape[:-3], -1, x.shape[-1])
    return x[..., shift : shift + num_tokens, :]


def int_softmax_lut(
    scores: np.ndarray,
    valid: np.ndarray,
    lut: np.ndarray,
    recip_bits: int,
    out_frac_bits: int,
    out_bits: int,
    score_min: int,
) -> np.ndarray:
    """The integer softmax of models/INT_SOFTMAX.md over the last axis, with its LUT given as
    integers (the hardware contract) instead of rebuilt from the float score scale."""
    q = np.asarray(scores, dtype=np.int64)
    valid = np.broadcast_to(valid, q.shape)
    lut = np.asarray(lut, dtype=np.int64)
    row_max = np.where(valid, q, score_min).max(axis=-1, keepdims=True)
    d = np.where(valid, row_max - q, 0)
    e = np.where(valid, lut[d], 0)
    total = e.sum(axis=-1, keepdims=True)
    recip = np.where(total > 0, (1 << recip_bits) // np.maximum(total, 1), 0)
    shift = recip_bits - out_frac_bits
    p = (e * recip + (1 << (shift - 1))) >> shift
    return np.minimum(p, (1 << out_bits) - 1)


def segment_attention(
    qkv: np.ndarray,
    heads: int,
    valid: np.ndarray,
    score_thr: np.ndarray,
    score_act: int,
    lut: np.ndarray,
    ctx_thr: np.ndarray,
    ctx_act: int,
    softmax: dict,
) -> np.ndarray:
    """Integer attention inside segments.

    qkv: [..., m, s, 3d] (q | k | v, each head-major: channel h * dh + j); valid: bool [m, s]
    (keys that take part). Returns the context [..., m, s, d]:

        scores = thr_count(q_h . k_h^T, score_thr) + score_act          INT8
        probs  = int_softmax(scores, valid keys, lut)                    UINT8, scale 2^-P
        ctx    = thr_count(probs . v_h, ctx_thr) + ctx_act               INT8
    """
    qkv = np.asarray(qkv, dtype=np.int64)
    *lead, m, s, c3 = qkv.shape
    d = c3 // 3
    dh = d // heads
    # [..., m, s, 3, H, dh] -> three [..., m, H, s, dh]
    parts = qkv.reshape(*lead, m, s, 3, heads, dh)
    q, k, v = (np.swapaxes(parts[..., i, :, :], -3, -2) for i in range(3))
    scores = threshold_count(q @ np.swapaxes(k, -1, -2), score_thr, score_act)
    key_ok = valid[:, None, None, :]  # [m, 1(H), 1(query), s(key)]
    probs = int_softmax_lut(scores, key_ok, lut, softmax["recip_bits"], softmax["out_frac_bits"],
                            softmax["out_bits"], softmax["score_min"])
    ctx = threshold_count(probs @ v, ctx_thr, ctx_act)  # [..., m, H, s, dh]
    return np.swapaxes(ctx, -3, -2).reshape(*lead, m, s, d)
