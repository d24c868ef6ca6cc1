"""QONNX export of the QAT segmented-attention transformer.

Brevitas' ``export_qonnx`` writes every quantizer as a QONNX ``Quant`` node and every linear
layer, BatchNorm, residual add, head split and segment pad as standard ONNX. The one part it
cannot express is the integer softmax (``int_softmax_ste``: LUT, integer division, shifts),
which would otherwise be traced into a long float graph. During export each attention module
therefore routes its softmax through ``torch.onnx.ops.symbolic``, which emits one
``netfabric.hls.custom_ops::IntSoftmax`` node carrying the integer exp LUT and the widths, with
the segment key mask as its second input. qonnx executes that node with the python
implementation in ``hls/custom_ops/int_softmax.py`` (``execute_onnx`` works on the file).

Batch: the graph is traced with a symbolic batch dimension, so every Reshape carries -1 for the
batch and nothing folds the batch into another axis (the token norm is exported as BatchNorm on
[B, d, n] instead of the model's [B*n, d] reshape, the same per-channel affine map). The file
declares batch 1 on its input and output, as qonnx expects; qonnx's ``ChangeBatchSize(n)``
(which rewrites dim 0 of the graph input/output and of every constant Reshape shape) turns it
into a batch-n graph.

Faithfulness: the graph is the QAT model's float-interface computation, traced from Brevitas'
own layers (the export turns the model's exact float64 eval path off); the only op with a
non-standard definition is ``IntSoftmax``, whose integers are those of the QAT forward pass.
MatMul and BatchNormalization run in float32, so a value next to a rounding tie can land one
LSB off the HW-layer graph's exact float64 tables (about 1 in 10^6 locally; spread by attention
and the residual stream to at most 0.14% of a tensor on 1000 MNIST test images, predictions
equal): ``tests/test_integer_contract.py`` bounds it.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator
from pathlib import Path

INPUT_DTYPE = "UINT8"
SOFTMAX_OP = "netfabric.hls.custom_ops::IntSoftmax"
# Batch of the example input. Any size > 1: torch.export specialises a dimension of size 1,
# which would bake it into the graph again.
TRACE_BATCH = 2


def _export_attention(self, q, k, v, key_mask):
    """``SegmentedAttention._quant_attention`` with the softmax as one IntSoftmax node."""
    import torch

    from netfabric.models.segments import SegmentGeometry, from_segments, to_segments

    if key_mask is not None:
        raise ValueError("the QONNX export has no caller key mask (only segment padding)")
    geo = SegmentGeometry(q.shape[2], self.segment, self.shift)
    mask = geo.valid(q.device).view(1, 1, geo.num_segments, 1, geo.segment)
    qs, ks, vs = (to_segments(t, geo) for t in (q, k, v))
    raw = (qs @ ks.transpose(-1, -2)) * (self.head_dim**-0.5)
    sq = self.score_quant(raw)
    scores = sq.value if hasattr(sq, "value") else sq
    probs = torch.onnx.ops.symbolic(SOFTMAX_OP, (scores, mask), self._nf_softmax_attrs,
                                    dtype=scores.dtype, shape=scores.shape, version=1)
    return from_segments(probs @ vs, geo)


def _softmax_attrs(attn) -> dict:
    from netfabric.models.int_softmax import build_lut

    # the score scale is read here, outside tracing (a traced .item() is data dependent)
    params = attn.cfg.softmax_params(float(attn.score_quant.act_quant.scale().detach()))
    return {
        "score_scale": params.score_scale,
        "score_bits": params.score_bits,
        "exp_bits": params.exp_bits,
        "recip_bits": params.recip_bits,
        "out_bits": params.out_bits,
        "out_frac_bits": params.out_frac_bits,
        "lut": [int(x) for x in build_lut(params)],
    }


def _export_token_norm(self, x):
    """``TokenNorm.forward`` without the [B*n, d] reshape, which would fold the batch into the
    token axis (qonnx's ChangeBatchSize sets dim 0 of every constant Reshape shape to the batch)."""
    return self.bn(x.transpose(1, 2)).transpose(1, 2)


@contextlib.contextmanager
def _export_patches(model) -> Iterator[None]:
    """Patch ``model`` for export (softmax as one IntSoftmax node, token norm without a batch-
    folding reshape); restore it afterwards."""
    from netfabric.models.transformer import TokenNorm

    mods = model.attention_modules()
    norms = [m for m in model.modules() if isinstance(m, TokenNorm)]
    exact_eval = model.exact_eval
    try:
        model.exact_eval = False  # trace Brevitas' layers (Quant nodes), not the float64 path
        for attn in mods:
            attn._nf_softmax_attrs = _softmax_attrs(attn)
            attn._quant_attention = types.MethodType(_export_attention, attn)
        for norm in norms:
            norm.forward = types.MethodType(_export_token_norm, norm)
        yield
    finally:
        model.exact_eval = exact_eval
        for attn in mods:
            attn.__dict__.pop("_quant_attention", None)
            attn.__dict__.pop("_nf_softmax_attrs", None)
        for norm in norms:
            norm.__dict__.pop("forward", None)


def _declare_batch(model, batch: int):
    """Give the graph input and output a fixed batch (qonnx's execute_onnx checks it); the
    intermediate shapes, traced with a symbolic batch, are inferred again from it."""
    from qonnx.transformation.infer_shapes import InferShapes

    inits = {t.name for t in model.graph.initializer}
    for vi in (*model.graph.input, *model.graph.output):
        if vi.name in inits:  # weights listed as inputs (keep_initializers_as_inputs)
            continue
        dim = vi.type.tensor_type.shape.dim[0]
        dim.Clear()
        dim.dim_value = batch
    del model.graph.value_info[:]
    return model.transform(InferShapes())


def export_transformer_qonnx(model, out: Path) -> Path:
    """Write the QAT transformer as QONNX to ``out`` (atomically); input annotated UINT8."""
    import torch
    from brevitas.export import export_qonnx
    from qonnx.core.datatype import DataType
    from qonnx.core.modelwrapper import ModelWrapper

    from netfabric.files import atomic_path

    if not getattr(model.cfg, "quant", False):
        raise ValueError("QONNX export needs the QAT transformer (config quant=True)")
    cfg = model.cfg
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    with atomic_path(out) as tmp_path, torch.no_grad(), _export_patches(model):
        tmp = str(tmp_path)
        x = torch.zeros(TRACE_BATCH, cfg.in_chans, cfg.image_size, cfg.image_size)
        export_qonnx(model, input_t=x, export_path=tmp,
                     dynamic_shapes={"x": {0: torch.export.Dim("batch")}})
        wrapped = _declare_batch(ModelWrapper(tmp), 1)
        wrapped.set_tensor_datatype(wrapped.graph.input[0].name, DataType[INPUT_DTYPE])
        wrapped.set_metadata_prop("netfabric_kind", "netfabric.transformer")
        wrapped.save(tmp)
    return out
