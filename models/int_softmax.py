"""Integer softmax: one exact definition shared by the QAT model, the reference and the HW graph.

The spec is ``models/INT_SOFTMAX.md``. In short, for each row of signed ``score_bits`` integer
scores ``q`` (real logit = ``q * score_scale``) and a validity mask:

1. ``m = max(q[valid])``                                  (integer compare)
2. ``d = m - q``, in ``[0, 2**score_bits - 1]``            (integer subtract)
3. ``e = LUT[d]`` for valid positions, ``0`` for masked    (UINT ``exp_bits``)
   ``LUT[i] = floor((2**exp_bits - 1) * exp(-i * score_scale) + 1/2)``  (float64, offline)
4. ``S = sum(e)``                                          (integer add)
5. ``r = floor(2**recip_bits / S)``                        (one integer division per row)
6. ``p = min((e * r + 2**(recip_bits - out_frac_bits - 1)) >> (recip_bits - out_frac_bits),
            2**out_bits - 1)``                           (multiply, round half up, saturate)

``p`` is UINT ``out_bits`` with scale ``2**-out_frac_bits``. A fully masked row gives all zeros.

``int_softmax_ref`` is the numpy reference; ``int_softmax_torch`` computes the same integers on
torch tensors, and ``IntSoftmax`` wraps it with a straight-through gradient for QAT.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported lazily: the numpy reference must run without it (boards)
    from torch import Tensor

__all__ = [
    "IntSoftmaxParams",
    "build_lut",
    "int_softmax_ref",
    "int_softmax_torch",
    "int_softmax_ste",
]


@dataclass(frozen=True)
class IntSoftmaxParams:
    """Widths and the score scale that define one integer softmax (see INT_SOFTMAX.md)."""

    score_scale: float  # real logit per integer score step (temperature folded in), > 0
    score_bits: int = 8  # scores are signed integers of this width
    exp_bits: int = 15  # LUT entries are unsigned, LUT[0] = 2**exp_bits - 1
    recip_bits: int = 31  # R: reciprocal r = floor(2**R / S)
    out_bits: int = 8  # output width (unsigned), saturating
    out_frac_bits: int = 8  # output scale 2**-out_frac_bits

    def __post_init__(self) -> None:
        if not (np.isfinite(self.score_scale) and self.score_scale > 0):
            raise ValueError(
                f"score_scale must be a positive finite number, got {self.score_scale}"
            )
        if not 2 <= self.score_bits <= 16:
            raise ValueError(f"score_bits must be in 2..16, got {self.score_bits}")
        if not 1 <= self.exp_bits <= 24:
            raise ValueError(f"exp_bits must be in 1..24, got {self.exp_bits}")
        if not 1 <= self.out_bits <= 16 or not 0 <= self.out_frac_bits <= 16:
            raise ValueError("out_bits must be in 1..16 and out_frac_bits in 0..16")
        # R > P keeps a rounding bit; R <= 40 keeps e * r well inside int64 (e < 2**24).
        if not self.out_frac_bits < self.recip_bits <= 40:
            raise ValueError(
                f"recip_bits must be in (out_frac_bits, 40], got {self.recip_bits} "
                f"with out_frac_bits={self.out_frac_bits}"
            )

    @property
    def qmin(self) -> int:
        return -(1 << (self.score_bits - 1))

    @property
    def qmax(self) -> int:
        return (1 << (self.score_bits - 1)) - 1

    @property
    def lut_size(self) -> int:
        """Every difference max - q of two in-range scores indexes the table directly."""
        return 1 << self.score_bits

    @property
    def out_max(self) -> int:
        return (1 << self.out_bits) - 1

    @property
    def out_scale(self) -> float:
        return 2.0**-self.out_frac_bits


@lru_cache(maxsize=256)
def _lut_cached(score_scale: float, score_bits: int, exp_bits: int) -> np.ndarray:
    i = np.arange(1 << score_bits, dtype=np.float64)
    lut = np.floor(float((1 << exp_bits) - 1) * np.exp(-i * score_scale) + 0.5).astype(np.int64)
    lut.flags.writeable = False  # shared through the cache
    return lut


def build_lut(params: IntSoftmaxParams) -> np.ndarray:
    """The exp table ``LUT[i] = floor((2**E - 1) * exp(-i * s) + 1/2)``, int64, 2**score_bits long.

    Computed in IEEE float64 from the float score scale; the integers are the contract (the
    HW-layer graph carries them, and an RTL block would store them; entries past the first zero
    are all zero and may be dropped).
    """
    return _lut_cached(float(params.score_scale), params.score_bits, params.exp_bits)


def _check_inputs(scores: np.ndarray, mask: np.ndarray | None, p: IntSoftmaxParams):
    scores = np.asarray(scores)
    if scores.ndim < 1 or scores.shape[-1] == 0:
        raise ValueError(f"scores need a non-empty last (row) axis, got shape {scores.shape}")
    if not np.issubdtype(scores.dtype, np.integer):
        raise TypeError(f"scores must be integers, got dtype {scores.dtype}")
    scores = scores.astype(np.int64)
    if scores.size and (scores.min() < p.qmin or scores.max() > p.qmax):
        raise ValueError(
            f"scores outside the signed {p.score_bits}-bit range [{p.qmin}, {p.qmax}]: "
            f"[{scores.min()}, {scores.max()}]"
        )
    if mask is None:
        mask = np.ones(scores.shape, dtype=bool)
    else:
        mask = np.asarray(mask)
        if mask.dtype != np.bool_:
            raise TypeError(f"mask must be boolean (True = valid), got dtype {mask.dtype}")
        try:
            mask = np.broadcast_to(mask, scores.shape)
        except ValueError as exc:
            raise ValueError(
                f"mask shape {mask.shape} does not broadcast to {scores.shape}"
            ) from exc
    return scores, mask


def int_softmax_ref(
    scores_int: np.ndarray, mask: np.ndarray | None, params: IntSoftmaxParams
) -> np.ndarray:
    """Numpy reference: integer softmax over the last axis, returns int64 probabilities.

    ``scores_int``: signed integers within ``params.score_bits``; ``mask``: bool, True = valid,
    broadcastable to the scores (None = all valid). Output values are in ``[0, 2**out_bits - 1]``
    with scale ``2**-out_frac_bits``; masked positions and fully masked rows are exactly 0.
    """
    from netfabric.ops.kernels import int_softmax_lut

    q, mask = _check_inputs(scores_int, mask, params)
    # one integer definition: the kernel SegmentAttention's semantics use, on this LUT
    return int_softmax_lut(q, mask, build_lut(params), params.recip_bits, params.out_frac_bits,
                           params.out_bits, params.qmin)


def int_softmax_torch(scores_int: Tensor, mask: Tensor | None, params: IntSoftmaxParams) -> Tensor:
    """The same integers as :func:`int_softmax_ref`, on torch tensors (int64 in, int64 out).

    No range checks on the hot path beyond what the QAT quantizer already guarantees; tests
    compare it with the reference bit for bit.
    """
    import torch

    q = scores_int.to(torch.int64)
    lut = torch.from_numpy(build_lut(params).copy()).to(q.device)
    if mask is None:
        mask = torch.ones_like(q, dtype=torch.bool)
    mask = mask.expand_as(q)
    row_max = torch.where(mask, q, params.qmin).amax(dim=-1, keepdim=True)
    d = torch.where(mask, row_max - q, 0).clamp_(0, params.lut_size - 1)
    e = torch.where(mask, lut[d], 0)
    total = e.sum(dim=-1, keepdim=True)
    recip = torch.where(
        total > 0, torch.div(1 << params.recip_bits, total.clamp(min=1), rounding_mode="floor"), 0
    )
    shift = params.recip_bits - params.out_frac_bits
    p = (e * recip + (1 << (shift - 1))) >> shift
    return p.clamp_(max=params.out_max)


def masked_softmax(x: Tensor, mask: Tensor | None) -> Tensor:
    """Float softmax over the last axis; masked positions (and fully masked rows) give 0."""
    import torch

    if mask is None:
        return torch.softmax(x, dim=-1)
    # A finite fill keeps fully masked rows NaN-free (they become uniform, then zeroed).
    filled = torch.where(mask, x, torch.finfo(x.dtype).min)
    return torch.softmax(filled, dim=-1) * mask


def int_softmax_ste(
    scores: Tensor,
    score_scale: Tensor | float,
    mask: Tensor | None,
    params_base: IntSoftmaxParams | None = None,
) -> Tensor:
    """QAT softmax: forward = integer softmax probabilities (p * 2**-P), backward = float softmax.

    ``scores``: float tensor holding ``q * score_scale`` (the output of the score quantizer);
    ``score_scale``: that quantizer's scale (tensor or float). The integers are recovered by
    rounding, which is exact because ``scores`` sit on the integer grid.
    """
    import torch

    if torch.is_tensor(score_scale):
        if score_scale.numel() != 1:
            raise ValueError("the integer softmax needs a per-tensor score scale (one LUT)")
        score_scale = score_scale.detach().item()
    scale = float(score_scale)
    params = replace(params_base or IntSoftmaxParams(score_scale=1.0), score_scale=scale)
    with torch.no_grad():
        q = torch.round(scores.detach() / scale).to(torch.int64).clamp_(params.qmin, params.qmax)
        p_int = int_softmax_torch(q, mask, params)
        p_hw = p_int.to(scores.dtype) * params.out_scale
    soft = masked_softmax(scores, mask)
    # Straight-through: the value is the integer softmax's (the HW graph's), the gradient the
    # float softmax's.
    return soft + (p_hw - soft).detach()
