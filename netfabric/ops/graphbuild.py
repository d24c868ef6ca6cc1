"""Build small HW-layer graphs (FINN-ONNX) by hand: conformance samples and test fixtures.

The result is the same file format the front ends save: nodes in FINN's (or netfabric's)
custom-op domain with their attributes, parameters as initializers, every tensor's shape in
value_info and its FINN datatype in the quantization annotations. So it loads with
``host.hwgraph.load_hwgraph`` (every backend) and with qonnx/FINN (their execution).
Needs ``onnx`` only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

FINN_DOMAIN = "finn.custom_op.fpgadataflow"
NETFABRIC_DOMAIN = "netfabric.hls.custom_ops"


class HWGraphBuilder:
    """Accumulate tensors and nodes; ``build()`` returns the ``onnx.ModelProto``."""

    def __init__(self, name: str = "hw_graph") -> None:
        self.name = name
        self.inputs: list[str] = []
        self.outputs: list[str] = []
        self.shapes: dict[str, list[int]] = {}
        self.dtypes: dict[str, str] = {}
        self.params: dict[str, np.ndarray] = {}
        self.nodes: list = []
        self.metadata: dict[str, str] = {}

    def input(self, name: str, shape: list[int], dtype: str) -> str:
        self.inputs.append(name)
        self.shapes[name], self.dtypes[name] = list(shape), dtype
        return name

    def param(self, name: str, value: np.ndarray, dtype: str | None = None) -> str:
        """A constant operand (weights, thresholds, a LUT), stored as float32 like FINN's."""
        self.params[name] = np.asarray(value, dtype=np.float32)
        self.shapes[name] = list(np.shape(value))
        if dtype:
            self.dtypes[name] = dtype
        return name

    def node(self, op_type: str, inputs: list[str], outputs: list[tuple[str, list[int], str]],
             domain: str = FINN_DOMAIN, name: str | None = None, **attrs) -> list[str]:
        """Add a node; ``outputs`` are (name, shape, FINN datatype name)."""
        from onnx import helper

        for out, shape, dtype in outputs:
            self.shapes[out], self.dtypes[out] = list(shape), dtype
        backend = {"backend": "fpgadataflow"} if domain == FINN_DOMAIN else {}
        self.nodes.append(helper.make_node(
            op_type, inputs, [o[0] for o in outputs], domain=domain,
            name=name or f"{op_type}_{len(self.nodes)}", **backend, **attrs))
        return [o[0] for o in outputs]

    def output(self, name: str) -> str:
        self.outputs.append(name)
        return name

    def build(self):
        from onnx import TensorProto, helper, numpy_helper

        def info(name: str):
            return helper.make_tensor_value_info(name, TensorProto.FLOAT, self.shapes[name])

        produced = {o for n in self.nodes for o in n.output}
        inner = [info(t) for t in produced if t not in self.outputs]
        graph = helper.make_graph(
            self.nodes, self.name, [info(t) for t in self.inputs], [info(t) for t in self.outputs],
            [numpy_helper.from_array(v, k) for k, v in self.params.items()], value_info=inner)
        for tensor, dtype in self.dtypes.items():
            ann = graph.quantization_annotation.add()
            ann.tensor_name = tensor
            kv = ann.quant_parameter_tensor_names.add()
            kv.key, kv.value = "finn_datatype", dtype
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)],
                                  producer_name="netfabric")
        for key, value in self.metadata.items():
            prop = model.metadata_props.add()
            prop.key, prop.value = key, value
        return model

    def save(self, path: str | Path) -> Path:
        from onnx import save

        from netfabric.files import atomic_path

        path = Path(path)
        with atomic_path(path) as tmp:
            save(self.build(), str(tmp))
        return path
