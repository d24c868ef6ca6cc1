"""Split a HW-layer graph into consecutive sub-graphs that different backends run.

The graph is a DAG whose nodes are stored in topological order. A *cut* before node ``i`` is
valid when exactly one tensor crosses it (produced by the graph input or nodes ``< i``, read by
nodes ``>= i`` or the graph output): the part after it is then a standalone graph with one
stream input. Nodes between two consecutive valid cuts (e.g. a fork ... join region) always
stay together.

:func:`extract` writes nodes ``start..stop-1`` as a HW-layer ONNX model of its own: the
initializers it reads, every tensor's shape, the FINN datatype annotations and the graph's
metadata, except the host-side layout steps of the ends it does not include (an inner part
takes and returns plain integer tensors in graph layout). Needs ``onnx`` only.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from netfabric.errors import GraphError
from netfabric.files import atomic_write

# metadata that belongs to the graph's input end / output end (host pre/post-processing)
INPUT_KEYS = ("host_pre", "host_input_shape", "input_preprocess")
OUTPUT_KEYS = ("host_post", "output_scale", "output_bias")


@dataclass(frozen=True)
class Block:
    """Nodes ``start..stop-1``: a piece between two consecutive valid cuts."""

    start: int
    stop: int


def _crossing(model, i: int) -> list[str]:
    """Tensors produced before node ``i`` (or the graph input) and read from node ``i`` on."""
    g = model.graph
    inits = {t.name for t in g.initializer}
    produced = {g.input[0].name} | {o for n in g.node[:i] for o in n.output}
    read = {t for n in g.node[i:] for t in n.input if t and t not in inits}
    read |= {o.name for o in g.output}
    return sorted(produced & read)


def valid_cuts(model) -> list[int]:
    """Node indices ``i`` (0 < i < len(nodes)) where the graph can be cut before node ``i``."""
    return [i for i in range(1, len(model.graph.node)) if len(_crossing(model, i)) == 1]


def blocks(model) -> list[Block]:
    """The graph as consecutive blocks between valid cuts (each block never splits)."""
    edges = [0, *valid_cuts(model), len(model.graph.node)]
    return [Block(a, b) for a, b in zip(edges, edges[1:], strict=False)]


def boundary_tensor(model, i: int) -> str:
    """The one tensor crossing the cut before node ``i`` (graph input at 0, output at the end)."""
    g = model.graph
    if i == 0:
        return g.input[0].name
    if i == len(g.node):
        return g.output[0].name
    crossing = _crossing(model, i)
    if len(crossing) != 1:
        raise GraphError(f"the graph cannot be cut before node {g.node[i].name}: "
                         f"{len(crossing)} tensors cross there ({', '.join(crossing)})")
    return crossing[0]


def extract(model, start: int, stop: int):
    """Nodes ``start..stop-1`` of ``model`` (an ``onnx.ModelProto``) as a standalone model."""
    from onnx import helper

    g = model.graph
    if not 0 <= start < stop <= len(g.node):
        raise GraphError(f"no nodes {start}..{stop - 1} in a graph of {len(g.node)} nodes")
    inp, out = boundary_tensor(model, start), boundary_tensor(model, stop)
    nodes = list(g.node[start:stop])
    used = {t for n in nodes for t in (*n.input, *n.output) if t}
    infos = {vi.name: vi for vi in (*g.input, *g.output, *g.value_info)}
    for name in (inp, out):
        if name not in infos:
            raise GraphError(f"tensor {name} has no recorded shape, so the graph cannot be cut there")
    produced = [o for n in nodes for o in n.output]
    inner = [infos[t] for t in produced if t != out and t in infos]
    graph = helper.make_graph(nodes, f"{g.name}_nodes_{start}_{stop - 1}", [infos[inp]],
                              [infos[out]], [t for t in g.initializer if t.name in used],
                              value_info=inner)
    graph.quantization_annotation.extend(
        a for a in g.quantization_annotation if a.tensor_name in used)
    drop = (INPUT_KEYS if start > 0 else ()) + (OUTPUT_KEYS if stop < len(g.node) else ())
    for prop in g.metadata_props:
        if prop.key not in drop:
            graph.metadata_props.add().CopyFrom(prop)
    sub = helper.make_model(graph, opset_imports=list(model.opset_import),
                            producer_name=model.producer_name or "netfabric")
    sub.ir_version = model.ir_version
    for prop in model.metadata_props:
        if prop.key not in drop:
            sub.metadata_props.add().CopyFrom(prop)
    return sub


def save_part(model, start: int, stop: int, folder: str | Path) -> Path:
    """Write nodes ``start..stop-1`` to ``folder`` (atomically); the file name carries the
    node range and a hash of the content, so an unchanged part keeps its name (and the sim
    backend's cached project)."""
    data = extract(model, start, stop).SerializeToString()
    digest = hashlib.sha256(data).hexdigest()[:12]
    return atomic_write(Path(folder) / f"nodes_{start}-{stop - 1}_{digest}.onnx", data)
