"""Read a HW-layer graph (FINN-ONNX) with plain `onnx`: nodes, attributes, weights, datatypes.

The host side must run on a board with numpy (and onnx), without qonnx or FINN, so this module
reads FINN's conventions directly: datatypes live in the graph's quantization annotations under
``finn_datatype``, node attributes are ordinary ONNX attributes, parameters are initializers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from netfabric.errors import GraphError  # the host's graph errors share the netfabric root

from .pynq_stream import apply_host_steps as _apply_host_steps


@dataclass(frozen=True)
class IntType:
    """An integer datatype such as INT8, UINT4, INT19 (FINN's names). BIPOLAR (the values -1
    and +1, e.g. 1-bit Brevitas weights) is held as a signed 2-bit integer."""

    name: str

    @property
    def signed(self) -> bool:
        return self.name.startswith("INT") or self.name == "BIPOLAR"

    @property
    def bits(self) -> int:
        digits = self.name.removeprefix("U").removeprefix("INT")
        if self.name == "BINARY":
            return 1
        if self.name == "BIPOLAR":
            return 2
        if not digits.isdigit():
            raise GraphError(f"datatype {self.name} is not an integer type")
        return int(digits)

    @property
    def min(self) -> int:
        if self.name == "BIPOLAR":
            return -1
        return -(2 ** (self.bits - 1)) if self.signed else 0

    @property
    def max(self) -> int:
        return 2 ** (self.bits - 1) - 1 if self.signed else 2**self.bits - 1


def int_type(name: str) -> IntType:
    """FINN datatype name -> IntType; GraphError now if it is not an integer type."""
    t = IntType(name)
    t.bits  # noqa: B018 -- raises for non-integer types
    return t


def prod(xs) -> int:
    """Product of a shape's dimensions (1 for an empty shape)."""
    xs = list(xs)
    return int(np.prod(xs)) if xs else 1


@dataclass
class HWNode:
    name: str
    op_type: str  # generic name, e.g. MVAU (the _hls/_rtl suffix stripped)
    impl: str  # hls | rtl | "" (FINN's specialization, informative only)
    inputs: list[str]
    outputs: list[str]
    attrs: dict

    def attr(self, key: str, default=None):
        return self.attrs.get(key, default)


@dataclass
class HWGraph:
    nodes: list[HWNode]
    input_name: str
    output_name: str
    shapes: dict[str, list[int]]
    dtypes: dict[str, IntType]
    params: dict[str, np.ndarray]
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def input_shape(self) -> list[int]:
        return self.shapes[self.input_name]

    @property
    def output_shape(self) -> list[int]:
        return self.shapes[self.output_name]

    def host_steps(self, key: str) -> list[dict]:
        return json.loads(self.metadata.get(key, "[]") or "[]")

    @property
    def output_scale(self) -> float | None:
        value = self.metadata.get("output_scale")
        return float(value) if value else None

    def producer(self, tensor: str) -> HWNode | None:
        return next((n for n in self.nodes if tensor in n.outputs), None)


def load_hwgraph(path: str | Path) -> HWGraph:
    """Parse a HW-layer ONNX file; clear errors for a missing or corrupt file."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise GraphError(f"HW-layer graph {path} does not exist (run `netfabric compile` first)")
    try:
        model = onnx.load(str(path))
    except Exception as exc:
        raise GraphError(f"{path} is not a readable ONNX file: {exc}") from exc
    return hwgraph_from_proto(model, str(path))


def hwgraph_from_proto(model, what: str = "the HW-layer graph") -> HWGraph:
    """The same view of an in-memory ``onnx.ModelProto`` (e.g. a qonnx ModelWrapper's
    ``.model`` during compilation)."""
    from onnx import helper, numpy_helper

    g = model.graph
    if not g.input or not g.output:
        raise GraphError(f"{what} has no graph input or output")
    shapes: dict[str, list[int]] = {}
    for vi in list(g.input) + list(g.output) + list(g.value_info):
        dims = [d.dim_value for d in vi.type.tensor_type.shape.dim]
        shapes[vi.name] = dims
    params = {init.name: numpy_helper.to_array(init) for init in g.initializer}
    for name, arr in params.items():
        shapes[name] = list(arr.shape)
    dtypes: dict[str, IntType] = {}
    for ann in g.quantization_annotation:
        for kv in ann.quant_parameter_tensor_names:
            if kv.key == "finn_datatype":
                dtypes[ann.tensor_name] = IntType(kv.value)
    nodes = []
    for n in g.node:
        base, impl = n.op_type, ""
        for suffix in ("_hls", "_rtl"):
            if base.endswith(suffix):
                base, impl = base.removesuffix(suffix), suffix[1:]
        attrs = {a.name: _attr_value(helper.get_attribute_value(a)) for a in n.attribute}
        nodes.append(HWNode(n.name, base, impl, list(n.input), list(n.output), attrs))
    # qonnx keeps metadata on the graph; plain ONNX tools on the model: read both.
    metadata = {p.key: p.value for p in list(model.metadata_props) + list(g.metadata_props)}
    return HWGraph(nodes, g.input[0].name, g.output[0].name, shapes, dtypes, params, metadata)


def _attr_value(value):
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, list):
        return [v.decode() if isinstance(v, bytes) else v for v in value]
    return value


def apply_host_steps(x: np.ndarray, steps: list[dict]) -> np.ndarray:
    """Apply the layout steps recorded at compile time, for a batch (first dim is the batch).
    The board's own copy of this (``pynq_stream.py``, numpy only) is the one implementation."""
    try:
        return _apply_host_steps(x, steps)
    except ValueError as exc:
        raise GraphError(str(exc)) from None
