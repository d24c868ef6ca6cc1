"""Compile the QAT segmented-attention transformer to a HW-layer graph (FINN-ONNX).

The graph is built from the model's integer parameters (``export_integer_params``, the same
ones ``integer_forward`` runs on); from there the back half every front end shares runs on it
(``backhalf.py``: specialize, fold, check, estimate, save). FINN's streamliner is not run on the QONNX export: it rounds every requantizer in
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
(``thresholds.py``), so the graph's integers equal ``integer_forward``'s exactly, and those of
the QAT model's eval forward, which evaluates the same expressions (``exact_linear``). The logit scale
``head.s_w * final.s / n`` (the mean's 1/n folded in) is metadata only (``output_scale``).
"""

from __future__ import annotations

from pathlib import Path

from .backhalf import BACK_HALF, estimate, run_steps, save
from .errors import CompileError
from .frontend import CompileConfig
from .transformer_export import export_transformer_qonnx
from .transformer_lowering import TransformerLowering

__all__ = ["compile_transformer", "compile_transformer_cli", "export_transformer_qonnx",
           "is_transformer_checkpoint"]

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


def build_transformer_graph(checkpoint_or_model, cfg: CompileConfig | None = None,
                            progress=None):
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
    return run_steps(hw, BACK_HALF, cfg, progress)


def compile_transformer(checkpoint_or_model, out_dir: Path,
                        cfg: CompileConfig | None = None, progress=None) -> Path:
    """Write ``hw_graph.onnx``, ``estimates.json`` and ``folding.json`` to ``out_dir``."""
    cfg = cfg or CompileConfig(label_select=False)
    hw = build_transformer_graph(checkpoint_or_model, cfg, progress)
    return save(hw, estimate(hw, cfg), Path(out_dir))


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
    return compile_transformer(model, out, cfg, progress)
