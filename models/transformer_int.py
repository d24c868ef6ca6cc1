"""The QAT transformer's forward pass in numpy integers: the structure the FINN compile path maps.

``export_integer_params(model)`` pulls every integer weight and every scale out of a trained
QAT ``SegmentTransformer``; ``integer_forward(params, images)`` runs the network on uint8 pixels
using only integer tensors, integer matmuls and one requantizer:

    requant(y, s, lo, hi) = clip(round_half_even(y / s), lo, hi)       (float64)

where ``y`` is an integer accumulator times the product of its operands' scales plus a float
bias (or a per-channel BatchNorm affine). In hardware each requantizer is a threshold table (or
multiply-shift-clip) computed from these float64 expressions. The QAT model's eval forward
evaluates the same expressions in torch float64 (``exact_linear``, ``TokenNorm.exact``) and
rounds them with its Brevitas quantizers, so the integers agree exactly
(``tests/test_integer_contract.py`` checks it against the HW graph on 1000 MNIST images).
The integer softmax is one function for all (``int_softmax.py``).
"""

from __future__ import annotations

import numpy as np
import torch

from .int_softmax import IntSoftmaxParams, int_softmax_ref
from .segments import SegmentGeometry
from .transformer import SegmentTransformer

INT8 = (-128, 127)
UINT8 = (0, 255)


def requant(y: np.ndarray, scale: float, lo_hi: tuple[int, int]) -> np.ndarray:
    """clip(round_half_even(y / scale)) as int64."""
    return np.clip(np.round(np.asarray(y, np.float64) / scale), *lo_hi).astype(np.int64)


def _act_scale(qmod) -> float:
    return float(qmod.act_quant.scale().detach())


def _range(qmod) -> tuple[int, int]:
    bits = int(qmod.act_quant.bit_width())
    if qmod.act_quant.is_signed:
        lo = -(1 << (bits - 1)) + (1 if qmod.act_quant.is_narrow_range else 0)
        return lo, (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def _linear(lin) -> dict:
    qw = lin.quant_weight()
    out = {"w": qw.int().to(torch.int64).numpy(), "s_w": float(qw.scale.detach())}
    out["b"] = None if lin.bias is None else lin.bias.detach().double().numpy()
    return out


def _bn(norm) -> dict:
    """BatchNorm (eval) as y = x * a + c per channel, in float64 (``TokenNorm.affine``)."""
    a, c = norm.affine()
    return {"a": a, "c": c}


def _quant(qmod) -> dict:
    return {"s": _act_scale(qmod), "range": _range(qmod)}


@torch.no_grad()
def export_integer_params(model: SegmentTransformer) -> dict:
    """Integer weights (int64 arrays) and float scales of a trained QAT model, in eval mode."""
    if not model.cfg.quant:
        raise ValueError(
            "integer export needs the QAT model (config quant=True), not the float twin"
        )
    model.eval()
    cfg = model.cfg
    rq = model.res_quants
    p: dict = {"config": cfg.to_dict(), "pixel": _quant(model.pixel_quant)}
    p["embed"] = _linear(model.embed)
    p["res"] = [_quant(q) for q in rq]
    s_e, r_e = p["res"][0]["s"], p["res"][0]["range"]
    p["pos_int"] = requant(model.pos.detach().double().numpy()[0], s_e, r_e)
    p["blocks"] = []
    for blk in model.blocks:
        att = blk.attn
        p["blocks"].append(
            {
                "attn_norm": _bn(blk.attn_norm),
                "attn_norm_quant": _quant(blk.attn_norm_quant),
                "q": _linear(att.q),
                "k": _linear(att.k),
                "v": _linear(att.v),
                "o": _linear(att.o),
                "q_quant": _quant(att.q_quant),
                "k_quant": _quant(att.k_quant),
                "v_quant": _quant(att.v_quant),
                "score_quant": _quant(att.score_quant),
                "ctx_quant": _quant(att.ctx_quant),
                "shift": att.shift,
                "mlp_norm": _bn(blk.mlp_norm),
                "mlp_norm_quant": _quant(blk.mlp_norm_quant),
                "fc1": _linear(blk.mlp.fc1),
                "act": _quant(blk.mlp.act),
                "fc2": _linear(blk.mlp.fc2),
            }
        )
    p["final_norm"] = _bn(model.final_norm)
    p["final_quant"] = _quant(model.final_quant)
    p["head"] = _linear(model.head)
    return p


def _affine_requant(acc: np.ndarray, s_in: float, lin: dict, q: dict) -> np.ndarray:
    """requant(acc * s_in * s_w + b): an MVAU output followed by its activation (thresholds)."""
    y = acc.astype(np.float64) * (s_in * lin["s_w"])
    if lin["b"] is not None:
        y = y + lin["b"]
    return requant(y, q["s"], q["range"])


def _norm_requant(x: np.ndarray, s_x: float, bn: dict, q: dict) -> np.ndarray:
    return requant(x.astype(np.float64) * s_x * bn["a"] + bn["c"], q["s"], q["range"])


def _segments(t: np.ndarray, geo: SegmentGeometry) -> np.ndarray:
    """[..., n, c] -> [..., m, s, c] with zero padding (masked, so the value never matters)."""
    pad = [(0, 0)] * (t.ndim - 2) + [(geo.pad_left, geo.pad_right), (0, 0)]
    t = np.pad(t, pad)
    return t.reshape(*t.shape[:-2], geo.num_segments, geo.segment, t.shape[-1])


def _attention(
    a: np.ndarray, s_a: float, blk: dict, cfg: dict, trace: dict, tag: str
) -> np.ndarray:
    """INT8 normed tokens [N, n, d] -> INT8 context [N, n, d] (before the output projection)."""
    heads = cfg["heads"]
    n_img, n, d = a.shape
    dh = d // heads
    geo = SegmentGeometry(n, cfg["segment"], blk["shift"])

    def proj(name: str) -> np.ndarray:
        t = _affine_requant(a @ blk[name]["w"].T, s_a, blk[name], blk[f"{name}_quant"])
        trace[f"{tag}.{name}"] = t
        return _segments(t.reshape(n_img, n, heads, dh).transpose(0, 2, 1, 3), geo)

    q, k, v = proj("q"), proj("k"), proj("v")
    s_q, s_k, s_v = (blk[f"{x}_quant"]["s"] for x in "qkv")
    sq = blk["score_quant"]
    scores = requant((q @ k.swapaxes(-1, -2)) * (s_q * s_k * dh**-0.5), sq["s"], sq["range"])
    mask = np.broadcast_to(geo.valid().numpy()[None, None, :, None, :], scores.shape)
    smp = IntSoftmaxParams(score_scale=sq["s"], score_bits=cfg["act_bits"], **cfg["softmax"])
    probs = int_softmax_ref(scores, mask, smp)
    cq = blk["ctx_quant"]
    ctx = requant((probs @ v) * (smp.out_scale * s_v), cq["s"], cq["range"])
    ctx = ctx.reshape(n_img, heads, geo.padded, dh)[:, :, geo.pad_left : geo.pad_left + n]
    trace[f"{tag}.scores"], trace[f"{tag}.probs"] = scores, probs
    return ctx.transpose(0, 2, 1, 3).reshape(n_img, n, d)


def integer_forward(params: dict, images: np.ndarray, trace: dict | None = None) -> np.ndarray:
    """uint8 images [N, H, W] -> int64 logit accumulators [N, classes] (argmax = prediction).

    The real logits are ``acc * head.s_w * final_quant.s / n_tokens``: a positive per-tensor
    factor, so the argmax of the integers is the model's prediction. ``trace`` (a dict) collects
    every intermediate integer tensor by name.
    """
    images = np.asarray(images)
    cfg = params["config"]
    if images.dtype != np.uint8 or images.ndim != 3:
        raise ValueError(f"expected uint8 images [N, H, W], got {images.dtype} {images.shape}")
    if images.shape[1:] != (cfg["image_size"],) * 2 or cfg["in_chans"] != 1:
        raise ValueError(f"images {images.shape[1:]} do not match the config's {cfg['image_size']}")
    trace = {} if trace is None else trace
    n_img, g, pch = len(images), cfg["image_size"] // cfg["patch"], cfg["patch"]
    pix = images.astype(np.int64).reshape(n_img, g, pch, g, pch).transpose(0, 1, 3, 2, 4)
    pix = pix.reshape(n_img, g * g, pch * pch)  # UINT8 pixels, scale 1/255

    res = params["res"]
    e = _affine_requant(pix @ params["embed"]["w"].T, params["pixel"]["s"], params["embed"], res[0])
    x = requant((e + params["pos_int"]) * res[0]["s"], res[1]["s"], res[1]["range"])
    trace["embed"], trace["res1"] = e, x
    for i, blk in enumerate(params["blocks"]):
        j = 2 * i + 1
        s_x = res[j]["s"]
        a = _norm_requant(x, s_x, blk["attn_norm"], blk["attn_norm_quant"])
        ctx = _attention(a, blk["attn_norm_quant"]["s"], blk, cfg, trace, f"block{i}")
        br = _affine_requant(ctx @ blk["o"]["w"].T, blk["ctx_quant"]["s"], blk["o"], res[j])
        x = requant((x + br) * s_x, res[j + 1]["s"], res[j + 1]["range"])  # INT9 sum -> INT8
        trace[f"res{j + 1}"] = x
        s_x = res[j + 1]["s"]
        a = _norm_requant(x, s_x, blk["mlp_norm"], blk["mlp_norm_quant"])
        h = _affine_requant(
            a @ blk["fc1"]["w"].T, blk["mlp_norm_quant"]["s"], blk["fc1"], blk["act"]
        )
        br = _affine_requant(h @ blk["fc2"]["w"].T, blk["act"]["s"], blk["fc2"], res[j + 1])
        x = requant((x + br) * s_x, res[j + 2]["s"], res[j + 2]["range"])
        trace[f"block{i}.mlp_hidden"], trace[f"res{j + 2}"] = h, x
    f = _norm_requant(x, res[-1]["s"], params["final_norm"], params["final_quant"])
    pooled = f.sum(axis=1)  # mean = sum / n: the 1/n goes into the logit scale
    trace["final"], trace["pooled"] = f, pooled
    return pooled @ params["head"]["w"].T
