"""The transformer's HW-layer graph, built from its integer parameters.

``TransformerLowering(export_integer_params(model)).build().to_model()`` gives the generic
(unspecialized) FINN-ONNX graph; ``transformer.py`` runs FINN's passes on it. Node list and
stream shapes: see ``transformer.py``. Each requantizer is a threshold table computed from
``models/transformer_int.py``'s own float64 expression (``thresholds.py``), so the graph's
integers equal ``integer_forward``'s exactly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from netfabric.ops.graphbuild import FINN_DOMAIN

from .custom_ops import DOMAIN as NF_DOMAIN
from .custom_ops import HW_OPS as NF_OPS
from .errors import CompileError
from .thresholds import matmul_acc_range, threshold_table

F32_EXACT = 2**24  # FINN stores thresholds in float32 containers: integers must stay below this


def _dtype(lo: int, hi: int) -> str:
    """Smallest FINN integer type holding [lo, hi]."""
    if lo >= 0:
        return f"UINT{max(1, int(hi).bit_length())}"
    bits = max(int(-lo - 1).bit_length(), int(hi).bit_length()) + 1
    return f"INT{bits}"


@dataclass
class _GraphBuilder:
    """Nodes, initializers, shapes and datatypes of the HW graph under construction."""

    nodes: list = field(default_factory=list)
    inits: dict = field(default_factory=dict)
    shapes: dict = field(default_factory=dict)
    dtypes: dict = field(default_factory=dict)

    def tensor(self, name: str, shape: list[int], dtype: str) -> str:
        if name in self.shapes:
            raise CompileError(f"internal: tensor {name} defined twice")
        self.shapes[name], self.dtypes[name] = list(shape), dtype
        return name

    def param(self, name: str, value: np.ndarray, dtype: str | None = None) -> str:
        self.inits[name] = value
        if dtype:
            self.dtypes[name] = dtype
        return name

    def node(self, op_type: str, name: str, inputs: list[str], outputs: list[str], **attrs) -> None:
        from onnx import helper

        domain = NF_DOMAIN if op_type in NF_OPS else FINN_DOMAIN
        self.nodes.append(helper.make_node(op_type, inputs, outputs, name=name, domain=domain,
                                           backend="fpgadataflow", **attrs))


class TransformerLowering:
    """Builds the generic (unspecialized) HW-layer graph from ``export_integer_params``."""

    def __init__(self, params: dict):
        self.p = params
        self.cfg = params["config"]
        self.n = (self.cfg["image_size"] // self.cfg["patch"]) ** 2
        self.d = self.cfg["dim"]
        self.g = _GraphBuilder()

    # ------------------------------------------------------------------ layer helpers

    def _tok(self, channels: int) -> list[int]:
        return [1, self.n, 1, channels]

    def _table(self, fn, acc_lo, acc_hi, out_range, what: str) -> np.ndarray:
        thr = threshold_table(fn, acc_lo, acc_hi, out_range, what)
        if np.abs(thr).max() >= F32_EXACT:
            raise CompileError(f"{what}: thresholds exceed 2^24 and do not fit FINN's float32 "
                               "threshold container exactly")
        return thr

    def mvau(self, name: str, x: str, w_out_in: np.ndarray, fn_tables, out_range, out: str,
             vectors: list[int] | None = None) -> str:
        """x @ W^T with a fused threshold activation. ``fn_tables``: [(fn, rows)] per channel
        group, each fn the float64 requantizer of integer_forward for those output channels."""
        in_type = self.g.dtypes[x]
        lo_in, hi_in = _range_of(in_type)
        w = np.asarray(w_out_in, np.int64).T  # FINN: [MW, MH]
        acc_lo, acc_hi = matmul_acc_range(w, lo_in, hi_in)
        tables, start = [], 0
        for fn, rows in fn_tables:
            sl = slice(start, start + rows)
            tables.append(self._table(fn, acc_lo[sl], acc_hi[sl], out_range, f"{name} thresholds"))
            start += rows
        thr = np.concatenate(tables)
        vectors = vectors or [1, self.n, 1]
        self.g.tensor(out, [*vectors, w.shape[1]], _dtype(*out_range))
        self.g.node("MVAU", name, [x, self.g.param(f"{name}_W", w.astype(np.float32), "INT8"),
                                   self.g.param(f"{name}_T", thr.astype(np.float32))], [out],
                    MW=w.shape[0], MH=w.shape[1], SIMD=1, PE=1, inputDataType=in_type,
                    weightDataType="INT8", outputDataType=_dtype(*out_range),
                    ActVal=int(out_range[0]), binaryXnorMode=0, noActivation=0,
                    numInputVectors=vectors, mem_mode="internal_decoupled")
        return out

    def thresholding(self, name: str, x: str, fn, channels_fn: int, out_range, out: str) -> str:
        """Standalone requantizer on a stream; ``channels_fn`` is 1 for one shared table."""
        in_type = self.g.dtypes[x]
        lo, hi = _range_of(in_type)
        thr = self._table(fn, np.full(channels_fn, lo), np.full(channels_fn, hi), out_range,
                          f"{name} thresholds")
        shape = self.g.shapes[x]
        self.g.tensor(out, shape, _dtype(*out_range))
        self.g.node("Thresholding", name,
                    [x, self.g.param(f"{name}_T", thr.astype(np.float32), _dtype(lo, hi + 1))],
                    [out], NumChannels=shape[-1], PE=1, numSteps=thr.shape[1],
                    inputDataType=in_type, weightDataType=_dtype(lo, hi + 1),
                    outputDataType=_dtype(*out_range), ActVal=int(out_range[0]),
                    numInputVectors=shape[:-1])
        return out

    def add(self, name: str, lhs: str, rhs: str, out: str) -> str:
        lo_l, hi_l = _range_of(self.g.dtypes[lhs])
        lo_r, hi_r = _range_of(self.g.dtypes[rhs])
        out_type = _dtype(lo_l + lo_r, hi_l + hi_r)
        shape = self.g.shapes[lhs]
        self.g.tensor(out, shape, out_type)
        self.g.node("ElementwiseAdd", name, [lhs, rhs], [out], lhs_dtype=self.g.dtypes[lhs],
                    rhs_dtype=self.g.dtypes[rhs], out_dtype=out_type, lhs_shape=shape,
                    rhs_shape=list(self.g.shapes[rhs]), out_shape=shape, lhs_style="input",
                    rhs_style="const" if rhs in self.g.inits else "input", PE=1)
        return out

    def duplicate(self, name: str, x: str) -> tuple[str, str]:
        shape, dtype = self.g.shapes[x], self.g.dtypes[x]
        outs = [self.g.tensor(f"{name}_out{i}", shape, dtype) for i in range(2)]
        self.g.node("DuplicateStreams", name, [x], outs, NumChannels=shape[-1], PE=1,
                    NumOutputStreams=2, inputDataType=dtype, numInputVectors=shape[:-1])
        return outs[0], outs[1]

    # ------------------------------------------------------------------ model parts

    def build(self):
        from netfabric.models.transformer_int import requant

        p, g, n, d = self.p, self.g, self.n, self.d
        res = p["res"]
        patch_len = self.cfg["in_chans"] * self.cfg["patch"] ** 2
        x = g.tensor("pixels", self._tok(patch_len), "UINT8")
        e = self.mvau("embed", x, p["embed"]["w"],
                      [(_affine(p["pixel"]["s"], p["embed"], res[0]), d)], res[0]["range"],
                      "embed_out")
        pos = g.param("pos_table", p["pos_int"].reshape(self._tok(d)).astype(np.float32),
                      _dtype(int(p["pos_int"].min()), int(p["pos_int"].max())))
        g.shapes[pos] = self._tok(d)
        t = self.add("pos_add", e, pos, "pos_sum")
        x = self.thresholding("pos_requant", t, _scaled(res[0]["s"], res[1], requant), 1,
                              res[1]["range"], "x1")
        for i, blk in enumerate(p["blocks"]):
            x = self.block(i, blk, x)
        f = self.thresholding("final_norm", x, _norm(res[-1]["s"], p["final_norm"],
                                                    p["final_quant"]), d,
                              p["final_quant"]["range"], "final_tokens")
        lo, hi = _range_of(g.dtypes[f])
        pooled = g.tensor("pooled", [1, 1, 1, d], _dtype(n * lo, n * hi))
        g.node("GlobalAccPool", "token_sum", [f], [pooled], NumChannels=d, PE=1,
               inputDataType=g.dtypes[f], numInputVectors=[1, n, 1])
        w = np.asarray(p["head"]["w"], np.int64).T
        classes = w.shape[1]
        a_lo, a_hi = matmul_acc_range(w, *_range_of(g.dtypes[pooled]))
        logits = g.tensor("logits", [1, 1, 1, classes], _dtype(int(a_lo.min()), int(a_hi.max())))
        # float64 weights: FINN's python MVAU then accumulates in float64, exactly (float32
        # would round sums above 2^24, which INT14 x INT8 x 64 can reach)
        g.node("MVAU", "head", [pooled, g.param("head_W", w.astype(np.float64), "INT8")],
               [logits], MW=d, MH=classes, SIMD=1, PE=1, inputDataType=g.dtypes[pooled],
               weightDataType="INT8", outputDataType=g.dtypes[logits], ActVal=0,
               binaryXnorMode=0, noActivation=1, numInputVectors=[1, 1, 1],
               mem_mode="internal_decoupled")
        return self

    def block(self, i: int, blk: dict, x: str) -> str:
        from netfabric.models.transformer_int import requant

        res, d, j = self.p["res"], self.d, 2 * i + 1
        b = f"b{i}_"
        skip, xn = self.duplicate(b + "fork1", x)
        a = self.thresholding(b + "norm1", xn, _norm(res[j]["s"], blk["attn_norm"],
                                                     blk["attn_norm_quant"]), d,
                              blk["attn_norm_quant"]["range"], b + "norm1_out")
        s_a = blk["attn_norm_quant"]["s"]
        ranges = {blk[f"{t}_quant"]["range"] for t in "qkv"}
        if len(ranges) != 1:
            raise CompileError(f"block {i}: q, k and v quantizers must share one integer range")
        w_qkv = np.concatenate([blk[t]["w"] for t in "qkv"])
        qkv = self.mvau(b + "qkv", a, w_qkv,
                        [(_affine(s_a, blk[t], blk[f"{t}_quant"]), d) for t in "qkv"],
                        ranges.pop(), b + "qkv_out")
        ctx = self.attention(b, blk, qkv)
        br = self.mvau(b + "o", ctx, blk["o"]["w"],
                       [(_affine(blk["ctx_quant"]["s"], blk["o"], res[j]), d)], res[j]["range"],
                       b + "attn_branch")
        t = self.add(b + "res1_add", skip, br, b + "res1_sum")
        x = self.thresholding(b + "res1_requant", t, _scaled(res[j]["s"], res[j + 1], requant), 1,
                              res[j + 1]["range"], b + "x_mid")
        skip, xn = self.duplicate(b + "fork2", x)
        a = self.thresholding(b + "norm2", xn, _norm(res[j + 1]["s"], blk["mlp_norm"],
                                                     blk["mlp_norm_quant"]), d,
                              blk["mlp_norm_quant"]["range"], b + "norm2_out")
        h = self.mvau(b + "fc1", a, blk["fc1"]["w"],
                      [(_affine(blk["mlp_norm_quant"]["s"], blk["fc1"], blk["act"]),
                        blk["fc1"]["w"].shape[0])], blk["act"]["range"], b + "mlp_hidden")
        br = self.mvau(b + "fc2", h, blk["fc2"]["w"],
                       [(_affine(blk["act"]["s"], blk["fc2"], res[j + 1]), d)],
                       res[j + 1]["range"], b + "mlp_branch")
        t = self.add(b + "res2_add", skip, br, b + "res2_sum")
        return self.thresholding(b + "res2_requant", t,
                                 _scaled(res[j + 1]["s"], res[j + 2], requant), 1,
                                 res[j + 2]["range"], b + "x_out")

    def attention(self, b: str, blk: dict, qkv: str) -> str:
        from netfabric.models.int_softmax import IntSoftmaxParams, build_lut
        from netfabric.models.segments import SegmentGeometry
        from netfabric.models.transformer_int import requant

        g, cfg, d = self.g, self.cfg, self.d
        heads, seg, shift = cfg["heads"], cfg["segment"], int(blk["shift"])
        dh = d // heads
        geo = SegmentGeometry(self.n, seg, shift)
        m = geo.num_segments
        geom = {"NumTokens": self.n, "SegLen": seg, "Shift": shift}
        qkv_type = g.dtypes[qkv]
        padded = g.tensor(b + "qkv_segments", [1, m, seg, 3 * d], qkv_type)
        g.node("SegmentPad", b + "seg_pad", [qkv], [padded], NumChannels=3 * d, PE=1,
               inputDataType=qkv_type, **geom)

        lo, hi = _range_of(qkv_type)
        sq, cq = blk["score_quant"], blk["ctx_quant"]
        s_q, s_k, s_v = (blk[f"{t}_quant"]["s"] for t in "qkv")
        # integer_forward: requant((q @ k^T) * (s_q * s_k * dh**-0.5), s_score)
        qk_scale = s_q * s_k * dh**-0.5
        qk_lo, qk_hi = dh * min(lo * hi, lo * lo, hi * hi), dh * max(lo * lo, hi * hi)
        score_thr = self._table(lambda acc: requant(acc * qk_scale, sq["s"], sq["range"]),
                                [qk_lo], [qk_hi], sq["range"], b + "attn score thresholds")
        smp = IntSoftmaxParams(score_scale=sq["s"], score_bits=cfg["act_bits"], **cfg["softmax"])
        # integer_forward: requant((probs @ v) * (2^-P * s_v), s_ctx)
        av_scale = smp.out_scale * s_v
        av_lo, av_hi = seg * smp.out_max * lo, seg * smp.out_max * hi
        ctx_thr = self._table(lambda acc: requant(acc * av_scale, cq["s"], cq["range"]),
                              [av_lo], [av_hi], cq["range"], b + "attn context thresholds")
        lut = build_lut(smp)
        ctx_seg = g.tensor(b + "ctx_segments", [1, m, seg, d], _dtype(*cq["range"]))
        g.node("SegmentAttention", b + "attn",
               [padded, g.param(b + "attn_score_T", score_thr.astype(np.float32)),
                g.param(b + "attn_exp_lut", lut.astype(np.float32), f"UINT{smp.exp_bits}"),
                g.param(b + "attn_ctx_T", ctx_thr.astype(np.float32))],
               [ctx_seg], NumChannels=3 * d, PE=1, inputDataType=qkv_type,
               outputDataType=_dtype(*cq["range"]), Heads=heads, HeadDim=dh,
               scoreDataType=_dtype(*sq["range"]), probDataType=f"UINT{smp.out_bits}",
               ScoreActVal=int(sq["range"][0]), CtxActVal=int(cq["range"][0]),
               ExpBits=smp.exp_bits, RecipBits=smp.recip_bits, ProbFracBits=smp.out_frac_bits,
               accQKDataType=_dtype(qk_lo, qk_hi), accAVDataType=_dtype(av_lo, av_hi), **geom)
        ctx = g.tensor(b + "ctx", self._tok(d), _dtype(*cq["range"]))
        g.node("SegmentUnpad", b + "seg_unpad", [ctx_seg], [ctx], NumChannels=d, PE=1,
               inputDataType=g.dtypes[ctx_seg], **geom)
        return ctx

    # ------------------------------------------------------------------ to FINN-ONNX

    def to_model(self):
        """The generic HW graph as a qonnx ModelWrapper, with host steps and output scale."""
        from onnx import TensorProto, helper, numpy_helper
        from qonnx.core.datatype import DataType
        from qonnx.core.modelwrapper import ModelWrapper

        g = self.g
        first, last = g.nodes[0].input[0], g.nodes[-1].output[0]
        vinfo = {name: helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)
                 for name, shape in g.shapes.items() if name not in g.inits}
        graph = helper.make_graph(
            g.nodes, "netfabric_transformer", [vinfo[first]], [vinfo[last]],
            [numpy_helper.from_array(v, k) for k, v in g.inits.items()],
            value_info=[v for k, v in vinfo.items() if k not in (first, last)])
        model = ModelWrapper(helper.make_model(graph, opset_imports=[
            helper.make_opsetid("", 11), helper.make_opsetid(FINN_DOMAIN, 1),
            helper.make_opsetid(NF_DOMAIN, 1)], producer_name="netfabric"))
        for name, dtype in g.dtypes.items():
            model.set_tensor_datatype(name, DataType[dtype])
        cfg = self.cfg
        c, gp, pp = cfg["in_chans"], cfg["image_size"] // cfg["patch"], cfg["patch"]
        model.set_metadata_prop("host_input_shape", json.dumps([1, c, cfg["image_size"],
                                                                cfg["image_size"]]))
        model.set_metadata_prop("host_pre", json.dumps([
            {"op": "Reshape", "shape": [1, c, gp, pp, gp, pp]},
            {"op": "Transpose", "perm": [0, 2, 4, 1, 3, 5]},
            {"op": "Reshape", "shape": self._tok(c * pp * pp)},
        ]))
        classes = g.shapes[last][-1]
        model.set_metadata_prop("host_post", json.dumps([{"op": "Reshape", "shape": [1, classes]}]))
        scale = self.p["head"]["s_w"] * self.p["final_quant"]["s"] / self.n
        model.set_metadata_prop("output_scale", repr(float(scale)))
        model.set_metadata_prop("netfabric_kind", "netfabric.transformer")
        return model


def _range_of(dtype: str) -> tuple[int, int]:
    from qonnx.core.datatype import DataType

    t = DataType[dtype]
    return int(t.min()), int(t.max())


# Requantizers exactly as models/transformer_int.py writes them (same operations, same order),
# as functions of the integer accumulator with channels on the last axis.


def _affine(s_in: float, lin: dict, q: dict):
    from netfabric.models.transformer_int import _affine_requant

    return lambda acc: _affine_requant(acc, s_in, lin, q)


def _norm(s_x: float, bn: dict, q: dict):
    from netfabric.models.transformer_int import _norm_requant

    return lambda x: _norm_requant(x, s_x, bn, q)


def _scaled(s_x: float, q: dict, requant):
    """requant(t * s_x, q): the residual / position sum (an INT9 integer) to the next grid."""
    return lambda t: requant(t * s_x, q["s"], q["range"])
