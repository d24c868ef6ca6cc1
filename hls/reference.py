"""The reference integers: FINN's own python execution of the HW-layer graph.

Specialized nodes (``MVAU_hls``, ``MVAU_rtl``...) only execute through C++ or RTL simulation
with vendor tools; their generic parents (``MVAU``...) carry FINN's python semantics. The
reference therefore runs a copy of the graph with generic op types, one sample at a time (the
graph's shapes are for batch 1), through FINN's ``execute_onnx``.
"""

from __future__ import annotations

import copy

import numpy as np

from .finn_env import ensure_finn


def generic_copy(model):
    """The same graph with each HW node's _hls/_rtl specialization removed."""
    from qonnx.core.modelwrapper import ModelWrapper

    clone = ModelWrapper(copy.deepcopy(model.model))
    for node in clone.graph.node:
        for suffix in ("_hls", "_rtl"):
            if node.op_type.endswith(suffix):
                node.op_type = node.op_type.removesuffix(suffix)
                node.domain = "finn.custom_op.fpgadataflow"
    return clone


def reference_run(model, x_graph_layout: np.ndarray, tensors: list[str] | None = None) -> list[np.ndarray]:
    """Execute per sample; ``x`` already in the graph's input layout (batch first).

    Returns the graph output (and any extra named ``tensors``) stacked over the batch.
    """
    ensure_finn()
    from finn.core.onnx_exec import execute_onnx

    generic = generic_copy(model)
    in_name = generic.graph.input[0].name
    out_name = generic.graph.output[0].name
    names = [out_name, *(tensors or [])]
    results: list[list[np.ndarray]] = [[] for _ in names]
    for sample in x_graph_layout:
        ctx = execute_onnx(generic, {in_name: sample[None].astype(np.float32)},
                           return_full_exec_context=bool(tensors))
        for i, name in enumerate(names):
            results[i].append(ctx[name][0])
    return [np.stack(r) for r in results]
