"""The integer reference: run a HW-layer graph with each op's numpy semantics.

Slow and simple by design (int64 numpy, no fusion): it is what the CPU engine, the RTL and
every other backend are checked against, op by op and graph by graph.
"""

from __future__ import annotations

import numpy as np

from netfabric.errors import GraphError

from .registry import require


def run_graph(graph, x: np.ndarray, keep: bool = False) -> dict[str, np.ndarray]:
    """Execute ``graph`` (a ``host.hwgraph.HWGraph``) on ``x`` [N, ...] in the graph's input
    layout; returns the output tensor (``"output"``) or, with ``keep``, every tensor."""
    tensors: dict[str, np.ndarray] = {graph.input_name: np.asarray(x, dtype=np.int64)}
    for node in graph.nodes:
        op = require(node.op_type, (), node.name)
        streams = []
        for name in node.inputs:
            if not name or name in graph.params:
                continue
            if name not in tensors:
                raise GraphError(f"node {node.name}: input {name} is not produced earlier")
            streams.append(tensors[name])
        outs = op.semantics(node, streams, graph)
        tensors.update(zip(node.outputs, outs, strict=True))
    if graph.output_name not in tensors:
        raise GraphError(f"tensor {graph.output_name} is not produced by the graph")
    tensors["output"] = tensors[graph.output_name]
    return tensors if keep else {"output": tensors["output"]}
