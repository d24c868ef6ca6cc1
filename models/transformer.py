"""Segmented-attention transformer for images as patch sequences: float twin and Brevitas QAT.

Architecture (pre-norm, ``depth`` blocks, MNIST default: 4x4 patches -> 49 tokens, d=64, 4 heads,
segments of s=14 tokens, odd layers shifted by s // 2 so information crosses segment borders)::

    pixels 0..255 -> /255 -> patchify -> Linear(p*p -> d) + pos -> [Block] * depth
      -> norm -> mean over tokens -> Linear(d -> classes, no bias)
    Block: x = x + Attn(norm1(x)); x = x + MLP(norm2(x))

Why BatchNorm as the norm: at inference it is a per-channel affine map, which the following
quantizer absorbs exactly (FINN turns "affine + quantize" into one threshold table, or a
multiply-shift-clip requantizer). LayerNorm needs a per-token mean, variance, square root and
division at run time: an extra datapath per token for no accuracy gain on this task.

Integer structure of the QAT model (every tensor between ops is an integer times a per-tensor
float scale; [brackets] name the module attribute holding the quantizer; Q(y) = clip(round(y/s)),
round half to even; weights are INT8 per-tensor (narrow range, -127..127); "acc" is an integer
matmul of the integer operands; b is the layer's float bias, folded into the requantizer):

=====================  ==================  ========================================================
tensor                 integer type        scale, how it is produced
=====================  ==================  ========================================================
pixels                 UINT8               1/255, [pixel_quant] (constant scale): the raw pixel
patch embedding e      INT8                s_0 [res_quants[0]]: Q(acc * s_w / 255 + b)
position table         INT8 const n x d    s_0 [res_quants[0]] (so e + pos is an integer add)
residual stream x_k    INT8                s_k [res_quants[k]], k = 1 .. 2*depth + 1:
                                           x_1 = Q((e + pos) * s_0); then per residual add
                                           x_k = Q((x_{k-1} + br) * s_{k-1}), an INT9 sum
branch output br       INT8                s_{k-1} [res_quants[k-1]]: Q(acc * s_in s_w + b), the
                                           attention (o proj) or MLP (fc2) output quantized by
                                           the stream's own quantizer, so the add is integer
norm output a          INT8                [attn_norm_quant | mlp_norm_quant]: Q(BN(x)), BN a
                                           per-channel affine -> one threshold table per channel
q, k, v                INT8                [q_quant | k_quant | v_quant]: Q(acc * s_a s_w + b)
scores                 INT8                s_sc [score_quant]: Q(q.k^T acc * s_q s_k / sqrt(dh))
probabilities          UINT8               2^-8: integer softmax (INT_SOFTMAX.md), LUT built
                                           from s_sc; padded keys masked
context                INT8                [ctx_quant]: Q(p.v acc * 2^-8 * s_v)
mlp hidden             UINT8               [mlp.act] QuantReLU: Q(max(acc * s_a s_w + b, 0))
final tokens           INT8                s_f [final_quant]: Q(BN(x_{2*depth+1}))
pooled                 int sum, 14 bit     s_f / n (mean = sum / n; 1/n goes into the scale)
logits                 int32 acc           s_w * s_f / n, bias-free per-tensor: argmax is exact
=====================  ==================  ========================================================

Every Q after an integer accumulator is a requantizer (FINN: MultiThreshold, or multiply-shift-
clip where the table is evenly spaced). ``transformer_int.py`` writes the same forward pass in
numpy integers.

Evaluation is exact: in eval mode the QAT model computes every quantizer's input in float64 from
the exact integer accumulator, ``acc * (s_in * s_w) + b`` (BatchNorm: ``x * a + c``), the
expressions ``integer_forward`` and the HW graph's threshold tables are built from; Brevitas'
own quantizers then round it (half to even, clip) in float64. Its integers and predictions
therefore equal the HW graph's exactly. Training runs Brevitas' float32 layers (gradients,
statistics), whose summation order would flip about 1 in 10^6 requantized values by one LSB.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from .int_softmax import IntSoftmaxParams, int_softmax_ste, masked_softmax
from .segments import SegmentGeometry, from_segments, key_mask_segments, to_segments

__all__ = [
    "TransformerConfig",
    "SegmentedAttention",
    "SegmentTransformer",
    "build_transformer",
    "evaluate",
    "predict_logits",
    "segmented_attention",
]


@dataclass
class TransformerConfig:
    """Everything needed to rebuild the model; stored in every checkpoint."""

    image_size: int = 28
    in_chans: int = 1
    patch: int = 4
    dim: int = 64
    depth: int = 2
    heads: int = 4
    mlp_ratio: int = 2
    segment: int = 14
    shift_alternate: bool = True  # odd layers shift their segments by segment // 2
    num_classes: int = 10
    quant: bool = True  # False: the float twin
    weight_bits: int = 8
    act_bits: int = 8
    softmax: dict = field(
        default_factory=lambda: {
            "exp_bits": 15,
            "recip_bits": 31,
            "out_bits": 8,
            "out_frac_bits": 8,
        }
    )

    @property
    def num_tokens(self) -> int:
        return (self.image_size // self.patch) ** 2

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads

    def shift(self, layer: int) -> int:
        return self.segment // 2 if self.shift_alternate and layer % 2 == 1 else 0

    def softmax_params(self, score_scale: float = 1.0) -> IntSoftmaxParams:
        return IntSoftmaxParams(score_scale=score_scale, score_bits=self.act_bits, **self.softmax)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TransformerConfig:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown transformer config keys: {sorted(unknown)}")
        return cls(**d)

    def validate(self) -> None:
        positive = ("image_size", "in_chans", "patch", "dim", "depth", "heads", "mlp_ratio")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.segment <= 0:
            raise ValueError(f"segment length must be positive, got {self.segment}")
        if self.image_size % self.patch:
            raise ValueError(f"patch {self.patch} does not divide image_size {self.image_size}")
        if self.dim % self.heads:
            raise ValueError(f"dim {self.dim} is not a multiple of heads {self.heads}")
        if not 2 <= self.weight_bits <= 8 or not 2 <= self.act_bits <= 8:
            raise ValueError("weight_bits and act_bits must be in 2..8")
        self.softmax_params()  # validates the softmax widths


# --------------------------------------------------------------------------- float functional


def segmented_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    segment: int,
    shift: int = 0,
    key_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Float attention inside segments of ``segment`` tokens. q, k, v: [B, H, n, dh] -> [B, H, n, dh].

    Sequences whose length is not a multiple of ``segment`` are padded; padded keys are masked
    out of the softmax and padded query rows dropped (see ``segments.py``). ``key_mask`` (bool
    [B, n], True = real token) masks further keys; a query whose segment has no valid key gets 0.
    Memory is O(n * segment): the scores tensor is [B, H, n/segment, segment, segment].
    """
    if q.dim() != 4 or q.shape != k.shape or k.shape != v.shape:
        raise ValueError(
            f"q, k, v must all be [batch, heads, n, head_dim], got {tuple(q.shape)}, "
            f"{tuple(k.shape)}, {tuple(v.shape)}"
        )
    geo = SegmentGeometry(q.shape[2], segment, shift)
    mask = key_mask_segments(geo, key_mask, q.device)
    qs, ks, vs = (to_segments(t, geo) for t in (q, k, v))
    if key_mask is None:
        # Every segment holds a real key, so no row is fully masked: the fused kernel is safe.
        # It wants 4-D [batch, heads, L, dh]: fold the segments into the head axis.
        b, h, m, s, dh = qs.shape
        if mask is not None:
            mask = mask.expand(1, h, m, 1, s).reshape(1, h * m, 1, s)
        out = nn.functional.scaled_dot_product_attention(
            *(t.reshape(b, h * m, s, dh) for t in (qs, ks, vs)), attn_mask=mask
        ).view(b, h, m, s, dh)
    else:
        scores = (qs @ ks.transpose(-1, -2)) * (q.shape[-1] ** -0.5)
        out = masked_softmax(scores, mask) @ vs
    return from_segments(out, geo)


# --------------------------------------------------------------------------- layer factory

# Activation scales start from percentile statistics over this many training calls, then become
# learned parameters. Brevitas' default (300) spends minutes in kthvalue on a 2-core CPU; when QAT
# starts from the float twin, 50 batches already give stable ranges.
STATS_STEPS = 50


class _Layers:
    """Float or Brevitas layers with the same parameter names (float weights seed QAT)."""

    def __init__(self, cfg: TransformerConfig):
        self.cfg = cfg

    def linear(self, fin: int, fout: int, bias: bool = True) -> nn.Module:
        if not self.cfg.quant:
            return nn.Linear(fin, fout, bias=bias)
        from brevitas.nn import QuantLinear
        from brevitas.quant import Int8WeightPerTensorFloat

        return QuantLinear(
            fin,
            fout,
            bias=bias,
            weight_quant=Int8WeightPerTensorFloat,
            weight_bit_width=self.cfg.weight_bits,
        )

    def quant(self, return_quant_tensor: bool = False) -> nn.Module:
        """Signed per-tensor activation quantizer (identity in the float twin)."""
        if not self.cfg.quant:
            return nn.Identity()
        from brevitas.nn import QuantIdentity
        from brevitas.quant import Int8ActPerTensorFloat

        return QuantIdentity(
            act_quant=Int8ActPerTensorFloat,
            bit_width=self.cfg.act_bits,
            collect_stats_steps=STATS_STEPS,
            return_quant_tensor=return_quant_tensor,
        )

    def relu(self) -> nn.Module:
        if not self.cfg.quant:
            return nn.ReLU()
        from brevitas.nn import QuantReLU
        from brevitas.quant import Uint8ActPerTensorFloat

        return QuantReLU(
            act_quant=Uint8ActPerTensorFloat,
            bit_width=self.cfg.act_bits,
            collect_stats_steps=STATS_STEPS,
        )

    def pixels(self) -> nn.Module:
        """x/255 as UINT8 with the constant scale 1/255: the integers are the raw pixels."""
        if not self.cfg.quant:
            return nn.Identity()
        from brevitas.inject.enum import ScalingImplType
        from brevitas.nn import QuantIdentity
        from brevitas.quant import Uint8ActPerTensorFloat

        class PixelQuant(Uint8ActPerTensorFloat):
            scaling_impl_type = ScalingImplType.CONST
            scaling_init = 1.0  # unsigned 8 bit: scale = 1.0 / 255

        return QuantIdentity(act_quant=PixelQuant, return_quant_tensor=False)


class TokenNorm(nn.Module):
    """BatchNorm over the channels of [B, n, d] tokens: a per-channel affine map at inference."""

    def __init__(self, dim: int):
        super().__init__()
        self.bn = nn.BatchNorm1d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        return self.bn(x.reshape(b * n, d)).reshape(b, n, d)

    def affine(self) -> tuple[np.ndarray, np.ndarray]:
        """The eval-mode BatchNorm as ``y = x * a + c`` per channel (float64): the one folding the
        exact evaluation, ``integer_forward`` and the HW graph's threshold tables all use."""
        bn = self.bn
        inv = 1.0 / np.sqrt(bn.running_var.double().numpy() + bn.eps)
        a = bn.weight.detach().double().numpy() * inv
        c = bn.bias.detach().double().numpy() - bn.running_mean.double().numpy() * a
        return a, c

    def exact(self, x: torch.Tensor) -> torch.Tensor:
        """``x * a + c`` in float64; ``x`` a float64 quantizer output (integer * scale, exact)."""
        a, c = (torch.from_numpy(t).to(x.device) for t in self.affine())
        return x * a + c


# --------------------------------------------------------------------------- exact evaluation
# Eval-mode helpers: tensors are float64 quantizer outputs, integer * scale, which float64 holds
# exactly (an 8-bit integer times a float32 scale), so dividing by the scale recovers the integer.


def act_scale(quant: nn.Module) -> float:
    """A Brevitas activation quantizer's per-tensor scale, as the Python float the integer
    reference uses."""
    return float(quant.act_quant.scale().detach())


def grid_ints(t: torch.Tensor, quant: nn.Module) -> torch.Tensor:
    """The integers (float64) of ``quant``'s float64 output ``t``."""
    return torch.round(t / act_scale(quant))


def exact_linear(lin: nn.Module, x: torch.Tensor, quant_in: nn.Module) -> torch.Tensor:
    """``lin(x)`` as ``integer_forward`` writes it: ``acc * (s_in * s_w) + b`` in float64, ``acc``
    the exact integer accumulator (float64 sums of these integers stay far below 2^53).
    A float32 ``F.linear`` sums rounded products instead, which moves a value lying next to a
    rounding tie of the following quantizer across it."""
    qw = lin.quant_weight()
    acc = grid_ints(x, quant_in) @ qw.int().to(torch.float64).T
    y = acc * (act_scale(quant_in) * float(qw.scale.detach()))
    return y if lin.bias is None else y + lin.bias.detach().double()


# --------------------------------------------------------------------------- blocks


class SegmentedAttention(nn.Module):
    """Multi-head attention inside fixed segments, float or QAT (INT8 scores, integer softmax).

    forward(x [B, n, d], key_mask [B, n] | None) -> [B, n, d]. Any n >= 1 is accepted: the
    sequence is padded to whole segments, padded keys masked, padded query rows dropped.
    """

    def __init__(self, cfg: TransformerConfig, shift: int = 0):
        super().__init__()
        f = _Layers(cfg)
        self.cfg = cfg
        self.segment, self.shift = cfg.segment, shift
        SegmentGeometry(1, cfg.segment, shift)  # validates segment and shift early
        self.heads, self.head_dim = cfg.heads, cfg.head_dim
        self.q, self.k, self.v = (f.linear(cfg.dim, cfg.dim) for _ in range(3))
        self.q_quant, self.k_quant, self.v_quant = f.quant(), f.quant(), f.quant()
        self.score_quant = f.quant(return_quant_tensor=True)
        self.ctx_quant = f.quant()
        self.o = f.linear(cfg.dim, cfg.dim)
        self.record = False  # when True, keep the last integer scores/probabilities (tests, debug)
        self.last: dict[str, torch.Tensor] = {}

    def _split(self, t: torch.Tensor) -> torch.Tensor:
        b, n, _ = t.shape
        return t.view(b, n, self.heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        if x.dim() != 3 or x.shape[-1] != self.cfg.dim:
            raise ValueError(f"expected [batch, n, {self.cfg.dim}] tokens, got {tuple(x.shape)}")
        b, n, d = x.shape
        q = self._split(self.q_quant(self.q(x)))
        k = self._split(self.k_quant(self.k(x)))
        v = self._split(self.v_quant(self.v(x)))
        if not self.cfg.quant:
            ctx = segmented_attention(q, k, v, self.segment, self.shift, key_mask)
        else:
            ctx = self._quant_attention(q, k, v, key_mask)
        ctx = ctx.transpose(1, 2).reshape(b, n, d)
        return self.o(self.ctx_quant(ctx))

    def _quant_attention(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None
    ) -> torch.Tensor:
        geo = SegmentGeometry(q.shape[2], self.segment, self.shift)
        mask = key_mask_segments(geo, key_mask, q.device)
        qs, ks, vs = (to_segments(t, geo) for t in (q, k, v))  # zero pads are on every grid
        # 1/sqrt(dh) before the score quantizer: the INT8 score scale then includes the
        # temperature, and the softmax LUT is built from that one scale.
        raw = (qs @ ks.transpose(-1, -2)) * (self.head_dim**-0.5)
        sq = self.score_quant(raw)
        params = self.cfg.softmax_params()
        probs = int_softmax_ste(sq.value, sq.scale, mask, params)
        self._remember(sq, probs, mask)
        return from_segments(probs @ vs, geo)

    def _remember(self, sq, probs: torch.Tensor, mask: torch.Tensor | None) -> None:
        if not self.record:
            return
        scale = float(sq.scale.detach())
        self.last = {
            "scores_int": torch.round(sq.value.detach() / scale).to(torch.int64),
            "score_scale": torch.tensor(scale, dtype=torch.float64),
            "probs_int": torch.round(probs.detach() / self.cfg.softmax_params().out_scale).to(
                torch.int64
            ),
            "mask": mask if mask is not None else torch.ones((), dtype=torch.bool),
        }

    def exact_forward(self, a: torch.Tensor, quant_in: nn.Module) -> torch.Tensor:
        """Eval-mode branch on exact integers: ``a`` [B, n, d] is ``quant_in``'s float64 output;
        returns the output projection's float64 input to the residual quantizer (see
        ``exact_linear``). Integer products q.k and p.v, scaled as ``integer_forward`` does."""
        b, n, d = a.shape
        q, k, v = (
            self._split(quant(exact_linear(lin, a, quant_in)))
            for lin, quant in ((self.q, self.q_quant), (self.k, self.k_quant), (self.v, self.v_quant))
        )
        geo = SegmentGeometry(n, self.segment, self.shift)
        mask = key_mask_segments(geo, None, a.device)
        qs, ks, vs = (to_segments(t, geo) for t in (q, k, v))
        acc = grid_ints(qs, self.q_quant) @ grid_ints(ks, self.k_quant).transpose(-1, -2)
        s_q, s_k, s_v = (act_scale(t) for t in (self.q_quant, self.k_quant, self.v_quant))
        sq = self.score_quant(acc * (s_q * s_k * self.head_dim**-0.5))
        params = self.cfg.softmax_params()
        probs = int_softmax_ste(sq.value, sq.scale, mask, params)
        self._remember(sq, probs, mask)
        p_int = torch.round(probs / params.out_scale)  # exact: probs = p * 2^-P (+ STE ulps)
        ctx = from_segments((p_int @ grid_ints(vs, self.v_quant)) * (params.out_scale * s_v), geo)
        ctx = self.ctx_quant(ctx.transpose(1, 2).reshape(b, n, d))
        return exact_linear(self.o, ctx, self.ctx_quant)


class MLP(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        f = _Layers(cfg)
        hidden = cfg.dim * cfg.mlp_ratio
        self.fc1, self.act, self.fc2 = (
            f.linear(cfg.dim, hidden),
            f.relu(),
            f.linear(hidden, cfg.dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block; the residual quantizers live in the model (shared scales)."""

    def __init__(self, cfg: TransformerConfig, layer: int):
        super().__init__()
        f = _Layers(cfg)
        self.attn_norm, self.attn_norm_quant = TokenNorm(cfg.dim), f.quant()
        self.attn = SegmentedAttention(cfg, shift=cfg.shift(layer))
        self.mlp_norm, self.mlp_norm_quant = TokenNorm(cfg.dim), f.quant()
        self.mlp = MLP(cfg)

    def attn_branch(self, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.attn(self.attn_norm_quant(self.attn_norm(x)), key_mask)

    def mlp_branch(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.mlp_norm_quant(self.mlp_norm(x)))

    def exact_attn_branch(self, x: torch.Tensor) -> torch.Tensor:
        """``attn_branch`` on exact integers (eval; ``x`` a float64 quantizer output)."""
        a = self.attn_norm_quant(self.attn_norm.exact(x))
        return self.attn.exact_forward(a, self.attn_norm_quant)

    def exact_mlp_branch(self, x: torch.Tensor) -> torch.Tensor:
        a = self.mlp_norm_quant(self.mlp_norm.exact(x))
        h = self.mlp.act(exact_linear(self.mlp.fc1, a, self.mlp_norm_quant))
        return exact_linear(self.mlp.fc2, h, self.mlp.act)


def residual_add(
    x: torch.Tensor, branch: torch.Tensor, q_in: nn.Module, q_out: nn.Module
) -> torch.Tensor:
    """q_out(x + q_in(branch)). ``q_in`` produced x, so both addends share its scale and the add
    is INT8 + INT8 -> INT9 in hardware, followed by one requantization to the next INT8 scale."""
    return q_out(x + q_in(branch))


class SegmentTransformer(nn.Module):
    """Image classifier: raw pixels [B, C, H, W] (or [B, H, W]) in 0..255 -> logits [B, classes]."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        cfg.validate()
        f = _Layers(cfg)
        self.cfg = cfg
        self.pixel_quant = f.pixels()
        self.embed = f.linear(cfg.in_chans * cfg.patch * cfg.patch, cfg.dim)
        self.pos = nn.Parameter(torch.randn(1, cfg.num_tokens, cfg.dim) * 0.02)
        # res_quants[0] quantizes the embedding and the position table; res_quants[j + 1] the
        # residual stream after the j-th residual add (2 per block).
        self.res_quants = nn.ModuleList(f.quant() for _ in range(2 * cfg.depth + 2))
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.depth))
        self.final_norm, self.final_quant = TokenNorm(cfg.dim), f.quant()
        self.head = f.linear(cfg.dim, cfg.num_classes, bias=False)
        # eval mode of the QAT model runs on exact integers (module docstring); the QONNX
        # export turns it off to trace Brevitas' own layers
        self.exact_eval = True

    def exact(self) -> bool:
        """True when forward runs on exact integers: the QAT model in eval mode."""
        return self.cfg.quant and self.exact_eval and not self.training

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C, H, W] -> [B, n, C*p*p], patches in row-major order over the patch grid."""
        b, c, h, w = x.shape
        p, g = self.cfg.patch, self.cfg.image_size // self.cfg.patch
        return x.reshape(b, c, g, p, g, p).permute(0, 2, 4, 1, 3, 5).reshape(b, g * g, c * p * p)

    def _check_input(self, x: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        if x.dim() == 3 and cfg.in_chans == 1:
            x = x.unsqueeze(1)
        want = (cfg.in_chans, cfg.image_size, cfg.image_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != want:
            raise ValueError(
                f"expected images [batch, {', '.join(map(str, want))}], got {tuple(x.shape)}"
            )
        return x.float()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Token features after the final norm, [B, n, d] (float64 when ``exact()``)."""
        if self.exact():
            return self._exact_features(x)
        x = self.pixel_quant(self._check_input(x) * (1.0 / 255.0))
        rq = self.res_quants
        h = rq[1](rq[0](self.embed(self.patchify(x))) + rq[0](self.pos))
        for i, blk in enumerate(self.blocks):
            j = 2 * i + 1
            h = residual_add(h, blk.attn_branch(h), rq[j], rq[j + 1])
            h = residual_add(h, blk.mlp_branch(h), rq[j + 1], rq[j + 2])
        return self.final_quant(self.final_norm(h))

    def _exact_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pixel_quant(self._check_input(x).double() * (1.0 / 255.0))
        rq = self.res_quants
        e = rq[0](exact_linear(self.embed, self.patchify(x), self.pixel_quant))
        # float64 sums of two values on one grid are exact: (x + br) * s, as integer_forward
        h = rq[1](e + rq[0](self.pos.detach().double()))
        for i, blk in enumerate(self.blocks):
            j = 2 * i + 1
            h = residual_add(h, blk.exact_attn_branch(h), rq[j], rq[j + 1])
            h = residual_add(h, blk.exact_mlp_branch(h), rq[j + 1], rq[j + 2])
        return self.final_quant(self.final_norm.exact(h))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits [B, classes]. When ``exact()``: float64, exactly the HW graph's integer logits
        times its ``output_scale`` (``head.s_w * final.s / n``), so argmax ties break alike."""
        f = self.features(x)
        if not self.exact():
            return self.head(f.mean(dim=1))
        qw = self.head.quant_weight()
        acc = grid_ints(f, self.final_quant).sum(dim=1) @ qw.int().to(torch.float64).T
        return acc * (float(qw.scale.detach()) * act_scale(self.final_quant) / self.cfg.num_tokens)

    def attention_modules(self) -> list[SegmentedAttention]:
        return [blk.attn for blk in self.blocks]


def build_transformer(config: TransformerConfig | dict) -> SegmentTransformer:
    """Build the float twin (``quant=False``) or the QAT model from a config (or its dict)."""
    cfg = TransformerConfig.from_dict(config) if isinstance(config, dict) else config
    cfg.validate()
    return SegmentTransformer(cfg)


@torch.no_grad()
def predict_logits(model: nn.Module, images: np.ndarray, batch: int = 500) -> np.ndarray:
    """Logits for uint8 images [N, H, W] (or [N, C, H, W]); the model sees raw pixels / 255."""
    model.eval()
    out = []
    for i in range(0, len(images), batch):
        out.append(model(torch.from_numpy(np.asarray(images[i : i + batch], dtype=np.float32))))
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)


def evaluate(model: nn.Module, images: np.ndarray, labels: np.ndarray, batch: int = 500) -> float:
    """Top-1 accuracy in percent on uint8 images and int labels."""
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    if len(labels) == 0:
        raise ValueError("cannot evaluate on an empty set")
    pred = predict_logits(model, images, batch).argmax(axis=1)
    return 100.0 * float((pred == np.asarray(labels)).mean())


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def float_flops_per_image(cfg: TransformerConfig) -> int:
    """Multiply-accumulates per image (for the docs and the bench)."""
    n, d, h = cfg.num_tokens, cfg.dim, cfg.dim * cfg.mlp_ratio
    s = min(cfg.segment, n)
    per_block = n * (4 * d * d + 2 * d * h) + 2 * n * s * d
    return n * cfg.patch**2 * cfg.in_chans * d + cfg.depth * per_block + d * cfg.num_classes
