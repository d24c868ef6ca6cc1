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
    # FINN's SetFolding stops raising an MVAU's SIMD where SIMD x weight bits passes this: a
    # limit of its HLS code. mvau.v has no such limit, but its adder tree over SIMD lanes is
    # one pipeline stage per level only up to a point: at 8191 the shipped MLP folds to a wide
    # SIMD whose tree closes at 84 MHz on ECP5 (116 MHz at 128, and fewer cycles per frame).
    # FINN's 128 stays the default until the tree is pipelined deeper.
    mvau_wwidth_max: int = 128
    board: str | None = None  # fold for this board: the fastest folding that fits (boardfold.py)
    label_select: bool = True  # end with LabelSelect (top-1 index); else integer logits
    # Input pre-processing folded into the graph (step "preprocess"): the accelerator takes raw
    # integers of input_type and the model sees (raw - input_mean) * input_scale; one value, or
    # one per channel (axis 1). None: the model's input must already be integer.
    input_scale: tuple[float, ...] | None = None
    input_mean: tuple[float, ...] | None = None
    input_type: str = "UINT8"
    steps: list[str] = field(default_factory=lambda: list(DEFAULT_STEPS))

    def target_cycles(self) -> int:
        if not self.target_fps:
            return 0
        return max(1, int(self.clock_mhz * 1e6 / self.target_fps))


def parse_input_values(text: str | None, option: str = "--input-scale") -> tuple[float, ...] | None:
    """``"1/255"``, ``"0.5"`` or per channel ``"0.017,0.0175,1/58"`` -> floats (None stays None)."""
    from fractions import Fraction

    if text is None:
        return None
    try:
        values = tuple(float(Fraction(item.strip())) for item in str(text).split(","))
    except (ValueError, ZeroDivisionError):
        raise CompileError(f"{option} {text!r}: expected a number or fraction (1/255), or one "
                           "per channel separated by commas") from None
    return values


def step_preprocess(model, cfg: CompileConfig):
    """FINN's pre-processing step as a graph edit: raw integers (input_type, UINT8 by default)
    enter the graph and an Add(-mean) / Mul(scale) in front of the model's own input turns them
    into what the model was trained on; streamlining folds both into the first thresholds, so
    the accelerator takes raw pixels. Without a scale or mean the input must be integer."""
    from onnx import TensorProto, helper
    from qonnx.core.datatype import DataType

    inp = model.graph.input[0]
    if cfg.input_scale is None and cfg.input_mean is None:
        _require_integer_input(model)
        return model
    try:
        in_type = DataType[cfg.input_type]
    except KeyError:
        raise CompileError(f"input type {cfg.input_type!r} is not a qonnx datatype") from None
    if not in_type.is_integer():
        raise CompileError(f"input type {cfg.input_type} must be an integer type (e.g. UINT8)")
    if cfg.input_scale is not None and 0.0 in cfg.input_scale:
        raise CompileError("--input-scale must not be 0")
    shape = model.get_tensor_shape(inp.name)
    edits = [("Add", "sub_mean", cfg.input_mean, -1.0), ("Mul", "scale", cfg.input_scale, 1.0)]
    nodes, src = [], inp.name
    for op, tag, values, sign in edits:
        if values is None:
            continue
        param = _per_channel(values, shape, tag) * sign
        pname, out = f"{inp.name}_pre_{tag}", f"{inp.name}_pre_{tag}_out"
        model.set_initializer(pname, param)
        nodes.append(helper.make_node(op, [src, pname], [out], name=f"Preprocess_{tag}"))
        model.graph.value_info.append(helper.make_tensor_value_info(out, TensorProto.FLOAT, shape))
        src = out
    for node in model.graph.node:  # the model's consumers now read the pre-processed tensor
        for i, name in enumerate(node.input):
            if name == inp.name:
                node.input[i] = src
    for n, node in enumerate(nodes):
        model.graph.node.insert(n, node)
    model.set_tensor_datatype(inp.name, in_type)
    model.set_metadata_prop("input_preprocess", json.dumps(
        {"input_type": cfg.input_type, "scale": list(cfg.input_scale or [1.0]),
         "mean": list(cfg.input_mean or [0.0])}))
    return model


def _per_channel(values: tuple[float, ...], shape: list[int], what: str) -> np.ndarray:
    if len(values) == 1:
        return np.asarray([values[0]], dtype=np.float32)
    if len(shape) < 2 or shape[1] != len(values):
        raise CompileError(f"input {what}: {len(values)} values given, but the model's input "
                           f"{shape} has {shape[1] if len(shape) > 1 else 1} channels (axis 1)")
    return np.asarray(values, dtype=np.float32).reshape([1, len(values)] + [1] * (len(shape) - 2))


def _require_integer_input(model) -> None:
    inp = model.graph.input[0].name
    dt = model.get_tensor_datatype(inp)
    if not dt.is_integer():
        raise CompileError(
            f"the model's input {inp!r} is {dt.name}, but the accelerator takes integers: pass "
            "--input-scale (e.g. 1/255 for a model trained on pixels/255; add --input-mean M if "
            "it subtracts a mean) to fold the pre-processing into the graph and take raw UINT8 "
            "pixels, or --input-scale 1 if it already takes raw 0..255 values")


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
    from qonnx.transformation.bipolar_to_xnor import ConvertBipolarMatMulToXnorPopcount
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
    # 1-bit (bipolar) weights times bipolar activations: FINN's XNOR-popcount form, in which
    # the activations become BINARY (0/1) and the MVAU runs with binaryXnorMode=1
    model = model.transform(ConvertBipolarMatMulToXnorPopcount())
    model = model.transform(Streamline())
    model = model.transform(absorb.AbsorbScalarMulAddIntoTopK())
    model = _strip_output_scale(model, cfg)
    model = model.transform(InferDataLayouts())
    model = model.transform(RemoveUnusedTensors())
    return step_tidy_up(model, cfg)


def step_convert_to_hw(model, cfg: CompileConfig):
    from finn.transformation.fpgadataflow.convert_to_hw.binary_matrix_vector_activation import (
        InferBinaryMatrixVectorActivation,
    )
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

    _check_bipolar_activations(model)
    # MVAUs first so each absorbs the MultiThreshold that follows it (fused activation).
    model = model.transform(InferBinaryMatrixVectorActivation())  # XnorPopcountMatMul
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
    _require_integer_input(model)
    check_supported(model)
    return model


# The front half is FINN's streamliner; the back half (specialize, fold, check) is shared
# with the transformer's front end (backhalf.py).
DEFAULT_STEPS = ["preprocess", "tidy_up", "qonnx_to_finn", "output_head", "streamline", "convert_to_hw",
                 "specialize", "fold", "check"]
STEPS: dict[str, Callable] = {
    "preprocess": step_preprocess,
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


def _check_bipolar_activations(model) -> None:
    """Bipolar (+-1) activations map to hardware only as XNOR-popcount layers (FINN's BNN flow:
    streamlining turns bipolar x bipolar MatMuls into XnorPopcountMatMul on 0/1 values). One
    left over (out_scale 2) would stop in FINN's conversion: say why and what to change."""
    from qonnx.custom_op.registry import getCustomOp

    for node in model.get_nodes_by_op_type("MultiThreshold"):
        if getCustomOp(node).get_nodeattr("out_scale") != 1.0:
            consumers = [c.op_type for c in model.find_consumers(node.output[0]) or []]
            raise CompileError(
                f"node {node.name} (MultiThreshold) quantizes to bipolar (+-1, 1-bit) activations "
                f"that no XNOR-popcount layer consumes (next: {', '.join(consumers) or 'none'}); "
                "like FINN, netfabric computes 1-bit activations only with 1-bit weights in the "
                "layer after them (1w1a): use 1-bit weights there, or 2-bit activations")


def _strip_output_scale(model, cfg: CompileConfig):
    """Without LabelSelect the graph ends in MatMul -> Mul(positive scalar) [-> Add(scalar), a
    TensorNorm head]: keep the integer accumulator as the output and record the scale (and
    bias: float logits = output * output_scale + output_bias), so the hardware stays
    integer-only."""
    if cfg.label_select:
        return model
    stripped: dict[str, float] = {}
    for op, key in (("Add", "output_bias"), ("Mul", "output_scale")):
        out = model.graph.output[0].name
        producer = model.find_producer(out)
        if producer is None or producer.op_type != op:
            continue
        value = model.get_initializer(producer.input[1])
        if value is None or value.size != 1 or (op == "Mul" and float(value.reshape(-1)[0]) <= 0):
            break
        new_out = model.get_tensor_valueinfo(producer.input[0])
        model.graph.node.remove(producer)
        model.graph.value_info.remove(new_out)
        model.graph.output.remove(model.graph.output[0])
        model.graph.output.insert(0, new_out)
        stripped[key] = float(value.reshape(-1)[0])
    if "output_bias" in stripped and "output_scale" not in stripped:
        stripped["output_scale"] = 1.0
    for key, value in stripped.items():
        model.set_metadata_prop(key, repr(value))
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
