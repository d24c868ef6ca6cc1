"""The FINN front end as a library: QONNX -> streamlined FINN-ONNX -> folded HW-layer graph.

The flow is a list of named steps, each ``fn(model, cfg) -> model`` (FINN's builder style). FINN's
own builder module cannot be imported without Vivado (a module-level simulator import), so the
steps call FINN's transformations directly; they follow FINN's `step_*` functions.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .backhalf import BACK_HALF, estimate, run_steps
from .errors import CompileError
from .finn_env import ensure_finn

log = logging.getLogger(__name__)

# Plain ONNX layout ops at the graph edges become host-side steps (see _move_edge_ops_to_host).
EDGE_OPS = {"Transpose", "Reshape"}
MAX_BITS = 8


@dataclass
class CompileConfig:
    """What the front end needs besides the model."""

    fpga_part: str = "xc7z020clg400-1"  # only used to pick FINN's HLS/RTL variants
    clock_mhz: float = 100.0
    target_fps: float | None = None  # folding from a throughput target at clock_mhz
    folding_json: Path | None = None  # or an explicit FINN folding config
    mvau_wwidth_max: int = 128
    label_select: bool = True  # end with LabelSelect (top-1 index); else integer logits
    steps: list[str] = field(default_factory=lambda: list(DEFAULT_STEPS))

    def target_cycles(self) -> int:
        if not self.target_fps:
            return 0
        return max(1, int(self.clock_mhz * 1e6 / self.target_fps))


def step_tidy_up(model, cfg: CompileConfig):
    from qonnx.transformation.fold_constants import FoldConstants
    from qonnx.transformation.general import (
        GiveReadableTensorNames,
        GiveUniqueNodeNames,
        RemoveStaticGraphInputs,
    )
    from qonnx.transformation.infer_datatypes import InferDataTypes
    from qonnx.transformation.infer_shapes import InferShapes

    for t in (
        InferShapes(),
        FoldConstants(),
        GiveUniqueNodeNames(),
        GiveReadableTensorNames(),
        InferDataTypes(),
        RemoveStaticGraphInputs(),
    ):
        model = model.transform(t)
    return model


def step_qonnx_to_finn(model, cfg: CompileConfig):
    from finn.transformation.qonnx.convert_qonnx_to_finn import ConvertQONNXtoFINN
    from qonnx.util.cleanup import cleanup_model

    _check_quant_bit_widths(model)
    model = cleanup_model(model)
    model = model.transform(ConvertQONNXtoFINN())
    return step_tidy_up(model, cfg)


def step_output_head(model, cfg: CompileConfig):
    """Top-1 LabelSelect at the output, or drop the final positive scalar scale for int logits."""
    if cfg.label_select:
        from qonnx.transformation.insert_topk import InsertTopK

        return model.transform(InsertTopK(k=1))
    return model


def step_streamline(model, cfg: CompileConfig):
    import finn.transformation.streamline.absorb as absorb
    from finn.transformation.streamline import Streamline
    from finn.transformation.streamline.reorder import MakeMaxPoolNHWC
    from qonnx.transformation.general import RemoveUnusedTensors
    from qonnx.transformation.infer_data_layouts import InferDataLayouts
    from qonnx.transformation.lower_convs_to_matmul import LowerConvsToMatMul

    model = model.transform(absorb.AbsorbScalarBiasIntoMultiThreshold())
    model = model.transform(Streamline())
    if model.get_nodes_by_op_type("Conv"):
        model = model.transform(LowerConvsToMatMul())
        model = model.transform(MakeMaxPoolNHWC())
        model = model.transform(absorb.AbsorbTransposeIntoMultiThreshold())
        model = model.transform(MakeMaxPoolNHWC())
        model = model.transform(absorb.AbsorbConsecutiveTransposes())
    model = model.transform(Streamline())
    model = model.transform(absorb.AbsorbScalarMulAddIntoTopK())
    model = _strip_output_scale(model, cfg)
    model = model.transform(InferDataLayouts())
    model = model.transform(RemoveUnusedTensors())
    return step_tidy_up(model, cfg)


def step_convert_to_hw(model, cfg: CompileConfig):
    from finn.transformation.fpgadataflow.convert_to_hw.conv_inp_gen import InferConvInpGen
    from finn.transformation.fpgadataflow.convert_to_hw.label_select import InferLabelSelectLayer
    from finn.transformation.fpgadataflow.convert_to_hw.pool import InferPool
    from finn.transformation.fpgadataflow.convert_to_hw.quantized_matrix_vector_activation import (
        InferQuantizedMatrixVectorActivation,
    )
    from finn.transformation.fpgadataflow.convert_to_hw.thresholding import (
        InferThresholdingLayer,
    )
    from finn.transformation.move_reshape import RemoveCNVtoFCFlatten
    from finn.transformation.streamline.absorb import AbsorbConsecutiveTransposes
    from qonnx.transformation.infer_data_layouts import InferDataLayouts

    # MVAUs first so each absorbs the MultiThreshold that follows it (fused activation).
    model = model.transform(InferQuantizedMatrixVectorActivation())
    model = model.transform(InferLabelSelectLayer())
    model = model.transform(InferThresholdingLayer())
    model = model.transform(InferPool())
    model = model.transform(InferConvInpGen())
    model = model.transform(RemoveCNVtoFCFlatten())
    model = model.transform(AbsorbConsecutiveTransposes())
    model = model.transform(InferDataLayouts())
    model = step_tidy_up(model, cfg)
    model = _move_edge_ops_to_host(model)
    check_supported(model)
    return model


# The front half is FINN's streamliner; the back half (specialize, fold, check) is shared
# with the transformer's front end (backhalf.py).
DEFAULT_STEPS = ["tidy_up", "qonnx_to_finn", "output_head", "streamline", "convert_to_hw",
                 "specialize", "fold", "check"]
STEPS: dict[str, Callable] = {
    "tidy_up": step_tidy_up,
    "qonnx_to_finn": step_qonnx_to_finn,
    "output_head": step_output_head,
    "streamline": step_streamline,
    "convert_to_hw": step_convert_to_hw,
    **BACK_HALF,
}


def _check_quant_bit_widths(model) -> None:
    """Weights and activations above 8 bits have no hardware layer here: say which node."""
    for node in model.graph.node:
        if node.op_type != "Quant":
            continue
        bw = model.get_initializer(node.input[3])
        if bw is not None and float(np.max(bw)) > MAX_BITS:
            raise CompileError(
                f"node {node.name} ({node.op_type}) quantizes to {float(np.max(bw)):g} bits; "
                f"netfabric hardware layers support 2..{MAX_BITS}-bit weights and activations"
            )


def _strip_output_scale(model, cfg: CompileConfig):
    """Without LabelSelect the graph ends in MatMul -> Mul(positive scalar): keep the integer
    accumulator as the output and record the scale, so the hardware stays integer-only."""
    if cfg.label_select:
        return model
    out = model.graph.output[0].name
    producer = model.find_producer(out)
    if producer is None or producer.op_type != "Mul":
        return model
    scale = model.get_initializer(producer.input[1])
    if scale is None or scale.size != 1:
        return model
    new_out = model.get_tensor_valueinfo(producer.input[0])
    model.graph.node.remove(producer)
    model.graph.value_info.remove(new_out)
    model.graph.output.remove(model.graph.output[0])
    model.graph.output.insert(0, new_out)
    model.set_metadata_prop("output_scale", repr(float(scale.reshape(-1)[0])))
    return model


def _move_edge_ops_to_host(model):
    """Layout ops (Reshape/Transpose) at the graph input or output are not streaming hardware:
    remove them and record them in the metadata as ``host_pre`` / ``host_post`` steps that every
    backend applies in numpy, so the saved graph is pure HW layers with integer I/O."""
    from onnx import helper

    def describe(node) -> dict:
        if node.op_type == "Transpose":
            return {"op": "Transpose", "perm": list(helper.get_attribute_value(node.attribute[0]))}
        return {"op": "Reshape", "shape": [int(d) for d in model.get_tensor_shape(node.output[0])]}

    model.set_metadata_prop(
        "host_input_shape", json.dumps(model.get_tensor_shape(model.graph.input[0].name))
    )
    pre: list[dict] = []
    while True:
        inp = model.graph.input[0]
        consumers = model.find_consumers(inp.name) or []
        if len(consumers) != 1 or consumers[0].op_type not in EDGE_OPS:
            break
        node = consumers[0]
        pre.append(describe(node))
        dtype = model.get_tensor_datatype(inp.name)
        new_in = model.get_tensor_valueinfo(node.output[0])
        model.graph.node.remove(node)
        model.graph.input.remove(inp)
        model.graph.input.insert(0, new_in)
        model.graph.value_info.remove(new_in) if new_in in model.graph.value_info else None
        model.set_tensor_datatype(new_in.name, dtype)
    post: list[dict] = []
    while True:
        out = model.graph.output[0]
        node = model.find_producer(out.name)
        if node is None or node.op_type not in EDGE_OPS:
            break
        post.insert(0, describe(node))
        dtype = model.get_tensor_datatype(node.input[0])
        new_out = model.get_tensor_valueinfo(node.input[0])
        model.graph.node.remove(node)
        model.graph.output.remove(out)
        model.graph.output.insert(0, new_out)
        model.graph.value_info.remove(new_out) if new_out in model.graph.value_info else None
        model.set_tensor_datatype(new_out.name, dtype)
    model.set_metadata_prop("host_pre", json.dumps(pre))
    model.set_metadata_prop("host_post", json.dumps(post))
    return model


def check_supported(model) -> None:
    """Every node must be a registered HW op (edge layout ops were moved to the host): FINN
    layers netfabric has no semantics or CPU lowering for (StreamingMaxPool, FMPadding...)
    stop here, instead of failing at run time."""
    from netfabric.ops.registry import require

    for node in model.graph.node:
        if node.domain.startswith("finn.custom_op.fpgadataflow"):
            require(node.op_type, ("cpu",), node.name)
            continue
        raise CompileError(
            f"node {node.name} ({node.op_type}) could not be mapped to a hardware layer: "
            + _why_unsupported(model, node)
        )


def _why_unsupported(model, node) -> str:
    if node.op_type == "MultiThreshold":
        return "a quantized activation that was not absorbed into an MVAU (check the layer order)"
    if node.op_type in ("Mul", "Add"):
        return (
            "a floating-point scale/bias streamlining could not absorb; use bias=False layers "
            "followed by BatchNorm and a quantized activation"
        )
    if node.op_type in ("MatMul", "Gemm", "Conv"):
        dts = [str(model.get_tensor_datatype(t)) for t in node.input[:2]]
        return f"inputs must be integer-quantized (got {', '.join(dts)})"
    return f"op type {node.op_type} has no netfabric hardware layer"


@dataclass
class CompileResult:
    model: object  # qonnx ModelWrapper of the HW-layer graph
    estimates: dict


def compile_qonnx(qonnx_path: Path, cfg: CompileConfig, progress: Callable | None = None):
    """Run the named steps on a QONNX file; return the HW-layer graph and FINN's estimates."""
    ensure_finn()
    from qonnx.core.modelwrapper import ModelWrapper

    path = Path(qonnx_path)
    if not path.is_file():
        raise CompileError(f"QONNX model {path} does not exist")
    try:
        model = ModelWrapper(str(path))
    except Exception as exc:
        raise CompileError(f"{path} is not a readable ONNX model: {exc}") from exc
    unknown = [name for name in cfg.steps if name not in STEPS]
    if unknown:
        raise CompileError(f"unknown compile step {unknown[0]!r}; known: {', '.join(STEPS)}")
    model = run_steps(model, {name: STEPS[name] for name in cfg.steps}, cfg, progress)
    return CompileResult(model=model, estimates=estimate(model, cfg))
