"""Compile the QAT segmented-attention transformer to a HW-layer graph (FINN-ONNX).

The graph is built from the model's integer parameters (``export_integer_params``, the same
ones ``integer_forward`` runs on) and then goes through FINN's own passes (shape and datatype
inference, threshold rounding, HLS/RTL specialization, folding, accumulator minimization,
estimates). FINN's streamliner is not run on the QONNX export: it rounds every requantizer in
float32 and has no pattern for the attention block, while the contract here is the exact
float64 rounding of ``integer_forward`` (see ``thresholds.py``). The QONNX file is written
alongside by ``compile_transformer_cli`` as the interchange artifact (``transformer_export.py``).

Graph (tokens [1, n, 1, C], n = 49, d = 64; * = FINN op, + = netfabric op)::

    pixels UINT8 [1,49,1,16]  (host: patchify as Reshape/Transpose/Reshape)
    *MVAU embed (thresholds -> INT8)  *ElementwiseAdd pos (const, INT9)  *Thresholding -> x
    per block (layer i, segment shift s//2 on odd layers):
      *DuplicateStreams x -> skip, x'   *Thresholding norm1 (BN affine + quantizer)
      *MVAU qkv [64 -> 192] (per-channel tables: q, k, v quantizers)
      +SegmentPad [1,49,1,192] -> [1,4,14,192]   +SegmentAttention -> [1,4,14,64]
      +SegmentUnpad -> [1,49,1,64]   *MVAU o (-> the stream's INT8 grid)
      *ElementwiseAdd skip + branch (INT9)   *Thresholding -> INT8 stream
      *DuplicateStreams   *Thresholding norm2   *MVAU fc1 (UINT8)   *MVAU fc2
      *ElementwiseAdd   *Thresholding
    *Thresholding final norm   *GlobalAccPool (token sum, INT14)
    *MVAU head (no activation): integer logits [1,1,1,10]  (host: Reshape [1, 10])

Every requantizer is a threshold table computed from integer_forward's own float64 expression
(``thresholds.py``), so the graph's integers equal ``integer_forward``'s exactly, including the
~0.12% of values where Brevitas' float32 rounding differs by one LSB. The logit scale
``head.s_w * final.s / n`` (the mean's 1/n folded in) is metadata only (``output_scale``).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from .custom_ops import DOMAIN as NF_DOMAIN
from .custom_ops import HW_OPS as NF_OPS
from .errors import CompileError
from .frontend import SUPPORTED_HW_OPS, CompileConfig
from .transformer_export import export_transformer_qonnx
from .transformer_lowering import FINN_DOMAIN, TransformerLowering

__all__ = ["compile_transformer", "compile_transformer_cli", "export_transformer_qonnx",
           "is_transformer_checkpoint"]

# --------------------------------------------------------------------------- FINN passes


def finn_passes(model, cfg: CompileConfig):
    """FINN's back half on the generic graph: types, thresholds, specialization, folding."""
    from finn.transformation.fpgadataflow.minimize_accumulator_width import (
        MinimizeAccumulatorWidth,
    )
    from finn.transformation.fpgadataflow.set_folding import SetFolding
    from finn.transformation.fpgadataflow.specialize_layers import SpecializeLayers
    from finn.transformation.streamline.round_thresholds import RoundAndClipThresholds
    from qonnx.transformation.general import SortGraph
    from qonnx.transformation.infer_datatypes import InferDataTypes
    from qonnx.transformation.infer_shapes import InferShapes

    names = {n.output[0]: n.name for n in model.graph.node}
    model = model.transform(InferShapes()).transform(InferDataTypes())
    model = model.transform(RoundAndClipThresholds())
    # SpecializeLayers renames every node and, with foreign-domain nodes in between, can
    # reorder them: sort again and restore the readable names (keyed by first output).
    model = model.transform(SpecializeLayers(cfg.fpga_part)).transform(SortGraph())
    _restore_names(model, names)
    if cfg.folding_json:  # an explicit folding config (e.g. an edited folding.json)
        from finn.transformation.general import ApplyConfig

        path = Path(cfg.folding_json)
        try:
            json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise CompileError(f"folding config {path} is not readable JSON: {exc}") from exc
        model = model.transform(ApplyConfig(str(path)))
    elif cfg.target_fps:
        # FINN's second folding pass analyses the whole dataflow and only knows FINN's
        # domains, so one pass for FINN layers, and netfabric layers are folded here
        model = model.transform(SetFolding(cfg.target_cycles(), mvau_wwidth_max=cfg.mvau_wwidth_max,
                                           two_pass_relaxation=False))
        _restore_names(model, names)
        _fold_netfabric(model, cfg.target_cycles())
    return model.transform(MinimizeAccumulatorWidth())


def _restore_names(model, names: dict[str, str]) -> None:
    for node in model.graph.node:
        node.name = names[node.output[0]]


def _fold_netfabric(model, target_cycles: int) -> None:
    """Smallest PE (a divisor of every stream width of the node) meeting the cycle target."""
    from math import gcd

    from qonnx.custom_op.registry import getCustomOp

    for node in model.graph.node:
        if node.domain != NF_DOMAIN:
            continue
        inst = getCustomOp(node)
        widths = [inst.get_normal_input_shape(0)[-1], inst.get_normal_output_shape()[-1]]
        limit = gcd(*widths)
        for pe in (p for p in range(1, limit + 1) if limit % p == 0):
            inst.set_nodeattr("PE", pe)
            if inst.get_exp_cycles() <= target_cycles:
                break


def check_transformer_graph(model) -> None:
    """Only HW layers: FINN's (generic or specialized) or netfabric's."""
    allowed = SUPPORTED_HW_OPS | {"ElementwiseAdd", "DuplicateStreams", "GlobalAccPool"}
    for node in model.graph.node:
        base = node.op_type.removesuffix("_hls").removesuffix("_rtl")
        if node.domain.startswith(FINN_DOMAIN) and base in allowed:
            continue
        if node.domain == NF_DOMAIN and node.op_type in NF_OPS:
            continue
        raise CompileError(f"node {node.name} ({node.domain or 'onnx'}.{node.op_type}) is not a "
                           "netfabric hardware layer")


def estimate(model, cfg: CompileConfig) -> dict:
    """FINN's estimates for FINN layers plus netfabric layers' own cycle counts."""
    from qonnx.custom_op.registry import getCustomOp

    from .frontend import estimate as finn_estimate

    est = finn_estimate(model, cfg)
    for node in model.graph.node:
        if node.domain == NF_DOMAIN:
            inst = getCustomOp(node)
            est["layers"].append({"name": node.name, "op_type": node.op_type,
                                  "PE": inst.get_nodeattr("PE"),
                                  "cycles": int(inst.get_exp_cycles()), "resources": {}})
    order = {n.name: i for i, n in enumerate(model.graph.node)}
    est["layers"].sort(key=lambda layer: order.get(layer["name"], 0))
    bottleneck = max((layer["cycles"] for layer in est["layers"]), default=0)
    est["bottleneck_cycles"] = bottleneck
    est["est_fps"] = cfg.clock_mhz * 1e6 / bottleneck if bottleneck else None
    est["note"] = "netfabric layers report cycles only (no resource model yet)"
    return est


# --------------------------------------------------------------------------- entry points


def is_transformer_checkpoint(path: Path) -> bool:
    """True for a readable ``.pt`` whose ``kind`` is ``netfabric.transformer`` (CLI dispatch)."""
    import torch

    from netfabric.models.train_transformer import CHECKPOINT_KIND

    path = Path(path)
    if path.suffix != ".pt" or not path.is_file():
        return False
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception:  # not a torch file: not ours to judge here
        return False
    return isinstance(ckpt, dict) and ckpt.get("kind") == CHECKPOINT_KIND


def _load_model(checkpoint_or_model):
    from netfabric.models.train_transformer import CheckpointError, load_transformer

    if isinstance(checkpoint_or_model, (str, Path)):
        try:
            return load_transformer(Path(checkpoint_or_model), quant=True)
        except CheckpointError as exc:
            raise CompileError(str(exc)) from exc
    model = checkpoint_or_model
    if not getattr(getattr(model, "cfg", None), "quant", False):
        raise CompileError("compile needs the QAT transformer (a SegmentTransformer with "
                           "config quant=True)")
    return model.eval()


def build_transformer_graph(checkpoint_or_model, cfg: CompileConfig | None = None):
    """The specialized HW-layer graph (qonnx ModelWrapper) of a QAT transformer."""
    from .finn_env import ensure_finn

    ensure_finn()
    from netfabric.models.transformer_int import export_integer_params

    cfg = cfg or CompileConfig(label_select=False)
    model = _load_model(checkpoint_or_model)
    if model.cfg.in_chans != 1:
        raise CompileError("the transformer compile supports single-channel images only")
    params = export_integer_params(model)
    hw = TransformerLowering(params).build().to_model()
    kept = {p.key: p.value for p in hw.model.metadata_props}
    hw = finn_passes(hw, cfg)
    for key, value in kept.items():  # some FINN passes rebuild the model and drop metadata
        if hw.get_metadata_prop(key) is None:
            hw.set_metadata_prop(key, value)
    check_transformer_graph(hw)
    return hw


def compile_transformer(checkpoint_or_model, out_dir: Path,
                        cfg: CompileConfig | None = None) -> Path:
    """Write ``hw_graph.onnx``, ``estimates.json`` and ``folding.json`` to ``out_dir``."""
    from netfabric.flow import HW_GRAPH, atomic_write_text, folding_config

    cfg = cfg or CompileConfig(label_select=False)
    hw = build_transformer_graph(checkpoint_or_model, cfg)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    graph_path = out_dir / HW_GRAPH
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=".hw_graph.", suffix=".onnx")
    os.close(fd)
    try:
        hw.save(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, graph_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    atomic_write_text(out_dir / "estimates.json", json.dumps(estimate(hw, cfg), indent=2))
    atomic_write_text(out_dir / "folding.json", json.dumps(folding_config(hw), indent=2))
    return graph_path


def compile_transformer_cli(checkpoint: Path, out: Path, cfg: CompileConfig | None = None,
                            progress=None) -> Path:
    """``netfabric compile`` for a transformer checkpoint: ``model.qonnx.onnx`` plus the
    HW-layer graph, estimates and folding config in ``out``; returns the graph's path.

    ``cfg`` supplies the FPGA part, clock, ``target_fps`` or ``folding_json``; the graph always
    ends in integer logits (``cfg.label_select`` is ignored: the argmax is the prediction).
    ``progress(stage)`` is called before each stage."""
    model = _load_model(checkpoint)
    if progress:
        progress("export_qonnx")
    export_transformer_qonnx(model, Path(out) / "model.qonnx.onnx")
    if progress:
        progress("lower_to_hw")
    return compile_transformer(model, out, cfg)
