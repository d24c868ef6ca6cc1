"""Stitcher: HW-layer graph -> a project folder with a top-level AXI-Stream accelerator.

Each HW layer becomes one module of the ``hw/rtl`` library (an MVAU, a sliding-window
generator, a max-pool, a fork, an adder...), with its weights and thresholds as memory files.
Which module, with which parameters, is the op's ``rtl`` piece in the op registry
(``hw/rtl_ops.py``); a node without one is refused with the registry's one-line error.

The graph may be any DAG of such layers with one stream input and one output: a fork
(DuplicateStreams) drives several consumers, a join (ElementwiseAdd) reads two streams. Every
graph edge (tensor) between two layers gets a stream FIFO, and a data-width converter where the
producer's elements per beat differ from the consumer's (the FIFO on the wide side of it, see
:func:`connect`). The accelerator's input and output are wired straight to the first and last
layers. The folder holds:

    <top>.v, the library modules it uses, *.hex memory files, manifest.json

The library files are those the stages name plus, recursively, every ``hw/rtl/<name>.v``
module they instantiate, so a shared module added to the library needs no list edit here.

FIFO depths, by analysis (in beats of the FIFO, rounded up to a power of two):

* consumer rule: an MVAU reads one input vector (MW/SIMD beats) and then replays it NF - 1
  times without reading, so its producer must be able to park a vector: 2*MW elements
  (at most 1024 beats from this rule); a segment attention reads a segment only between
  computing two, so its producer parks one segment (SegLen x 3d elements); otherwise 16 beats.
* fork/join rule: on a fork, the join downstream consumes element k from all its inputs at
  once, but a path through stages that hold data (an MVAU needs its whole input vector before
  its first output) delivers element k only after the fork sent it ``need(k)`` elements. The
  fork sends the same elements down every path, so a shorter path must buffer the difference
  ``max over paths need(k) - its own need(k)``, maximised over k, plus the join's beat, plus
  what the fork emits (at the steady-state rate) during the longer path's extra pipeline
  latency. That many elements go on the FIFO of the short path's first edge, right after the
  fork. Fewer than the difference deadlocks the accelerator (the fork waits for room on the
  full short path, the long path waits for input); fewer than the latency term costs
  throughput. ``need`` comes from each stage (``Stage.input_elements``) and the latency from
  the stages' documented pipeline depths (+1 per FIFO).

``manifest.json`` records the I/O packing, folding, ideal cycles, every edge with its FIFO
depth and why, and the target clock: it is what the simulator backend, the bitstream flow
and the host read.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from netfabric.files import atomic_dir
from netfabric.host.hwgraph import prod

from . import templates
from .errors import StitchError
from .rtl_ops import Port, Stage, dwc_stage, fifo_stage, stream_producer

__all__ = ["Edge", "Port", "Project", "Stage", "StitchError", "connect", "fifo_depth",
           "load_manifest", "plan_stages", "rtl_dependencies", "stitch"]

RTL_DIR = Path(__file__).resolve().parent / "rtl"
MANIFEST = "manifest.json"
GRAPH_IN = "<input>"


def _pow2(n: int) -> int:
    return 1 << max(0, math.ceil(math.log2(max(1, n))))


# ---------------------------------------------------------------------------------------------
# planning: one stage per node, asked of the registry


def plan_stages(graph) -> list[Stage]:
    """The graph's layers as library module instances, in the graph's (topological) order.

    Nodes whose rtl piece has ``fuses_producer`` absorb that producer (Pool + its window
    generator: one maxpool.v); ``placed_by_stitcher`` nodes (FIFOs, width converters) are
    dropped, the stitcher placing its own. Stage input tensors are resolved through them.
    """
    from netfabric.ops import registry

    pieces = {}
    for node in graph.nodes:
        op = registry.require(node.op_type, ("rtl",), node.name)
        pieces[node.name] = op.piece("rtl")
    consumers: dict[str, list] = {}
    for node in graph.nodes:
        for t in node.inputs:
            consumers.setdefault(t, []).append(node)
    fused: set[str] = set()
    for node in graph.nodes:
        want = pieces[node.name].options.get("fuses_producer")
        if not want:
            continue
        prod = stream_producer(graph, node.inputs[0])
        if prod is None or prod.op_type != want:
            raise StitchError(f"node {node.name} ({node.op_type}) must follow a {want} in RTL "
                              f"(they are one module); its input comes from "
                              f"{prod.name + ' (' + prod.op_type + ')' if prod else 'the graph input'}")
        if len(consumers.get(prod.outputs[0], [])) != 1:
            raise StitchError(f"node {prod.name} ({want}) feeds several layers, so it cannot be "
                              f"fused into {node.name}")
        fused.add(prod.name)
    alias: dict[str, str] = {}
    stages: list[Stage] = []
    for node in graph.nodes:
        piece = pieces[node.name]
        if node.name in fused:
            continue
        if piece.options.get("placed_by_stitcher"):
            alias[node.outputs[0]] = node.inputs[0]
            continue
        stages.append(piece.fn(node, graph))
    for st in stages:
        st.in_tensors = [_resolve(alias, t) for t in st.in_tensors]
    if not stages:
        raise StitchError("the graph has no hardware layers")
    names = [st.name for st in stages]
    if len(set(names)) != len(names):
        raise StitchError(f"layer names collide once lower-cased: {sorted(names)}")
    return stages


def _resolve(alias: dict[str, str], tensor: str) -> str:
    while tensor in alias:
        tensor = alias[tensor]
    return tensor


# ---------------------------------------------------------------------------------------------
# connection: edges, FIFOs, width converters


@dataclass
class Edge:
    """One graph tensor between two layers (or the accelerator's input / output)."""

    tensor: str
    src: Stage | None  # None: the accelerator input
    src_port: int
    dst: Stage | None  # None: the accelerator output
    dst_port: int
    fifo: Stage | None = None
    dwc: Stage | None = None

    def describe(self) -> dict:
        d = {"tensor": self.tensor, "from": self.src.name if self.src else GRAPH_IN,
             "to": self.dst.name if self.dst else "<output>"}
        if self.fifo is not None:
            d.update(fifo=self.fifo.name, depth=self.fifo.params["DEPTH"], why=self.fifo.why)
        if self.dwc is not None:
            d["dwc"] = self.dwc.name
        return d


def fifo_depth(consumer: Stage, fifo_elems: int | None = None) -> tuple[int, str]:
    """Consumer rule (see the module docstring): depth in beats of ``fifo_elems`` elements
    (default: the consumer's input beat), and why."""
    fifo_elems = fifo_elems or consumer.ins[0].elems
    if consumer.module == "mvau":
        beats = -(-2 * consumer.params["MW"] // fifo_elems)
        depth = int(min(1024, max(16, _pow2(beats))))
        return depth, (f"parks an input vector of {consumer.name} (2 x MW={consumer.params['MW']} "
                       f"elements = {beats} beats)")
    if consumer.module == "segment_attention":
        # the module reads a segment only between computing two: the next one waits here,
        # so the producer keeps running while a segment is computed
        elems = consumer.params["SEGLEN"] * consumer.params["CHANNELS"]
        beats = -(-elems // fifo_elems)
        return _pow2(beats), (f"parks the next segment of {consumer.name} ({elems} elements = "
                              f"{beats} beats)")
    return 16, "default"


def _fork_join_elements(layers: list[Stage], producer: dict, graph, bottleneck: int
                        ) -> dict[str, tuple[int, str]]:
    """Fork/join rule (module docstring): tensor right after a fork -> (elements, why)."""
    out: dict[str, tuple[int, str]] = {}
    for join in layers:
        if len(join.in_tensors) < 2:
            continue
        paths = []  # (fork, first tensor after the fork, stages from the fork to the join)
        for t in join.in_tensors:
            path: list[Stage] = []
            src = producer[t][0]
            while src is not None and len(src.ins) == 1 and len(src.outs) == 1:
                path.insert(0, src)
                t = src.in_tensors[0]
                src = producer[t][0]
            if src is None or len(src.outs) < 2:
                raise StitchError(f"join {join.name}: input {join.in_tensors[len(paths)]} does not come "
                                  "from a fork (DuplicateStreams) through single-stream layers; "
                                  "the stitcher's FIFO analysis handles only such fork/join pairs")
            paths.append((src, t, path))
        forks = {p[0].name for p in paths}
        if len(forks) != 1:
            raise StitchError(f"join {join.name}: its inputs come from different forks "
                              f"({', '.join(sorted(forks))}); nested forks have no FIFO analysis yet")
        fork = paths[0][0]
        n = prod(graph.shapes[join.in_tensors[0]][1:])  # join input elements per frame
        needs = []
        for _, _, path in paths:
            seq = np.arange(1, n + 1)
            for st in reversed(path):
                seq = np.array([st.input_elements(int(k)) for k in seq])
            needs.append(seq)
        most = np.max(needs, axis=0)
        # cycles from an element leaving the fork to the join: stages + one FIFO per edge
        lats = [sum(st.latency for st in path) + len(path) + 1 for _, _, path in paths]
        fork_frame = prod(graph.shapes[paths[0][1]][1:])
        rate = fork_frame / max(1, bottleneck)  # fork output elements per cycle
        for (_, t, _path), need, lat in zip(paths, needs, lats, strict=True):
            hold = int(np.max(most - need))
            if hold == 0 and lat == max(lats):
                continue
            extra = math.ceil((max(lats) - lat) * rate)
            elems = hold + join.ins[0].elems + extra
            longest = max(range(len(paths)), key=lambda i: (int(needs[i].sum()), lats[i]))
            via = " -> ".join(st.name for st in paths[longest][2]) or "(direct)"
            out[t] = (elems, f"fork {fork.name} -> join {join.name}: the path via {via} holds "
                             f"{hold} elements more before the join can take one, + 1 join beat "
                             f"({join.ins[0].elems}) + {max(lats) - lat} cycles more latency at "
                             f"{rate:.2f} elements/cycle ({extra}) = {elems} elements")
    return out


def connect(graph, layers: list[Stage], fifo_depths: dict[str, int] | None = None
            ) -> tuple[list[Stage], list[Edge], Port, Port]:
    """Wire the layers: one edge per graph tensor, each with a FIFO (and width converter).

    Returns (instances in emission order, edges, accelerator input port, output port).
    ``fifo_depths`` overrides the analysed depth of an edge's FIFO, keyed by tensor name.

    The FIFO sits on the *wide* side of a width converter: an MVAU reads its input in bursts
    (one beat per cycle during its first fold, nothing while it replays the buffered vector),
    and an up-converter in front of it can deliver only one wide beat per N cycles. With the
    FIFO after the up-converter, the wide beats pile up during the replay and arrive one per
    cycle in the burst; before it, the MVAU would be starved (measured: 1.27x the ideal cycles).
    """
    producer: dict[str, tuple[Stage | None, int]] = {graph.input_name: (None, 0)}
    for st in layers:
        for i, t in enumerate(st.out_tensors):
            if t in producer:
                raise StitchError(f"tensor {t} is produced twice ({st.name})")
            producer[t] = (st, i)
    edges: list[Edge] = []
    used: dict[str, str] = {}
    for st in layers:
        if len(st.in_tensors) != len(st.ins):
            raise StitchError(f"layer {st.name}: {len(st.in_tensors)} stream inputs for "
                              f"{len(st.ins)} ports (internal error)")
        for j, t in enumerate(st.in_tensors):
            if t not in producer:
                raise StitchError(f"layer {st.name}: its input {t} is neither the graph input nor "
                                  "produced by a hardware layer")
            if t in used:
                raise StitchError(f"tensor {t} feeds both {used[t]} and {st.name}: a stream has one "
                                  "consumer; a fork needs a DuplicateStreams node")
            used[t] = st.name
            edges.append(Edge(t, producer[t][0], producer[t][1], st, j))
    out_t = graph.output_name
    if out_t not in producer or producer[out_t][0] is None:
        raise StitchError(f"the graph output {out_t} is not produced by a hardware layer")
    if out_t in used:
        raise StitchError(f"the graph output {out_t} also feeds {used[out_t]}")
    edges.append(Edge(out_t, producer[out_t][0], producer[out_t][1], None, 0))
    if graph.input_name not in used:
        raise StitchError(f"the graph input {graph.input_name} feeds no hardware layer")
    dangling = [t for t, (st, _) in producer.items() if st is not None and t not in used and t != out_t]
    if dangling:
        raise StitchError(f"layer outputs {', '.join(dangling)} go nowhere (one graph output only)")

    bottleneck = max(st.ideal_cycles for st in layers)
    analysed = _fork_join_elements(layers, producer, graph, bottleneck)
    overrides = dict(fifo_depths or {})
    for k, e in enumerate(edges, start=1):
        if e.src is None or e.dst is None:
            continue
        src, dst = e.src.outs[e.src_port], e.dst.ins[e.dst_port]
        where = f"{e.src.name} -> {e.dst.name} ({e.tensor})"
        if src.bits != dst.bits:
            raise StitchError(f"{where}: element widths differ ({src.bits} vs {dst.bits} bits)")
        wide = max(src.elems, dst.elems)
        depth, why = fifo_depth(e.dst, wide)
        if e.tensor in analysed:
            elems, reason = analysed[e.tensor]
            need = _pow2(-(-elems // wide))
            if need > depth:
                depth, why = need, reason
        if e.tensor in overrides:
            depth, why = int(overrides.pop(e.tensor)), "set by the caller"
        fifo_port = Port(wide, src.bits, src.signed)
        e.fifo = fifo_stage(f"fifo_{k}", fifo_port, depth, why)
        if src.elems != dst.elems:
            e.dwc = dwc_stage(f"dwc_{k}", src, dst.elems, where)
    if overrides:
        raise StitchError(f"fifo_depths names no FIFO edge: {', '.join(sorted(overrides))}")
    instances = []  # dataflow order: each layer, then the FIFOs / converters after it
    for st in layers:
        instances.append(st)
        for e in edges:
            if e.src is st and e.dst is not None:
                instances += _plumbing(e)
    in_edge = next(e for e in edges if e.src is None)
    out_edge = edges[-1]
    return instances, edges, in_edge.dst.ins[in_edge.dst_port], out_edge.src.outs[out_edge.src_port]


def _plumbing(e: Edge) -> list[Stage]:
    """The edge's FIFO and converter in stream order (the FIFO on the wide side)."""
    if e.dwc is None:
        return [e.fifo]
    return [e.dwc, e.fifo] if e.dwc.out_elems > e.dwc.in_elems else [e.fifo, e.dwc]


# ---------------------------------------------------------------------------------------------
# library dependencies


_INSTANCE = re.compile(r"\b([A-Za-z_]\w*)\s*(?:#\s*\(|[A-Za-z_]\w*\s*\()")
_COMMENTS = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)


def rtl_dependencies(files, rtl_dir: Path = RTL_DIR) -> list[str]:
    """``files`` plus every library module they instantiate, recursively (sorted names).

    A module instance is ``name #(`` or ``name inst (`` for which ``rtl_dir/<name>.v``
    exists (comments are ignored)."""
    seen: list[str] = []
    todo = list(files)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        path = rtl_dir / name
        if not path.is_file():
            raise StitchError(f"RTL library module {name} is missing from {rtl_dir}")
        seen.append(name)
        text = _COMMENTS.sub(" ", path.read_text())
        for m in _INSTANCE.finditer(text):
            dep = f"{m.group(1)}.v"
            if dep != name and dep not in seen and (rtl_dir / dep).is_file():
                todo.append(dep)
    return sorted(seen)


# ---------------------------------------------------------------------------------------------
# emission


def _param_lines(params: dict, mem_params: dict[str, str]) -> str:
    lines = [f"        .{k}({v})" for k, v in params.items()]
    lines += [f"        .{k}({v})" for k, v in mem_params.items()]
    return ",\n".join(lines)


def _port_lines(st: Stage, in_nets: list[str], out_nets: list[str]) -> str:
    lines = []
    for prefix, net in zip(st.in_ports, in_nets, strict=True):
        lines.append(templates.PORT.format(p=prefix, tdata=f"{net}_tdata", tvalid=f"{net}_tvalid",
                                           tready=f"{net}_tready"))
    if st.out_bus:  # lanes of one flattened bus, lane 0 in the low bits
        def cat(sig: str) -> str:
            return "{" + ", ".join(f"{n}_{sig}" for n in reversed(out_nets)) + "}"
        lines.append(templates.PORT.format(p=st.out_ports[0], tdata=cat("tdata"),
                                           tvalid=cat("tvalid"), tready=cat("tready")))
    else:
        for prefix, net in zip(st.out_ports, out_nets, strict=True):
            lines.append(templates.PORT.format(p=prefix, tdata=f"{net}_tdata",
                                               tvalid=f"{net}_tvalid", tready=f"{net}_tready"))
    return ",\n".join(lines)


def render_top(top: str, graph_name: str, instances: list[Stage], edges: list[Edge],
               in_port: Port, out_port: Port, in_beats: int, out_beats: int) -> tuple[str, dict]:
    """The top module's text and its memory-file parameters (name -> default file)."""
    wires: list[str] = []
    in_nets: dict[str, list[str | None]] = {st.name: [None] * len(st.ins) for st in instances}
    out_nets: dict[str, list[str | None]] = {st.name: [None] * len(st.outs) for st in instances}
    count = iter(range(1 << 30))

    def net(width: int) -> str:
        name = f"n{next(count)}"
        wires.append(templates.WIRE.format(name=name, width=width))
        return name

    first = last = ""
    for e in edges:
        if e.src is None:
            first = net(in_port.width)
            in_nets[e.dst.name][e.dst_port] = first
            continue
        if e.dst is None:
            last = net(out_port.width)
            out_nets[e.src.name][e.src_port] = last
            continue
        chain = [e.src, *_plumbing(e), e.dst]
        for a, b in zip(chain, chain[1:], strict=False):
            port = a.outs[e.src_port] if a is e.src else a.outs[0]
            n = net(port.width)
            out_nets[a.name][e.src_port if a is e.src else 0] = n
            in_nets[b.name][e.dst_port if b is e.dst else 0] = n
    instances_text, top_params = [], {}
    for st in instances:
        mem_params = {}
        for pname, spec in st.mem.items():
            value = spec[2] if len(spec) > 2 else spec[0][0]  # a prefix or one file
            tp = f"{st.name.upper()}_{pname}"
            top_params[tp] = value
            mem_params[pname] = tp
        if st.nodes:
            comment = f"{st.module} for {', '.join(st.nodes)}"
        else:
            comment = f"{st.module}" + (f": depth {st.params['DEPTH']}, {st.why}" if st.why else "")
        instances_text.append(templates.INSTANCE.format(
            comment=comment, module=st.module, params=_param_lines(st.params, mem_params),
            inst=f"u_{st.name}", ports=_port_lines(st, in_nets[st.name], out_nets[st.name])))
    mem_lines = ",\n".join(f'    parameter {k} = "{v}"' for k, v in top_params.items()) or \
        '    parameter UNUSED = 0'
    text = templates.TOP.format(
        top=top, graph=graph_name, mem_params=mem_lines, in_width=in_port.width,
        out_width=out_port.width, wires="\n".join(wires), instances="\n".join(instances_text),
        first=first, last=last, in_elems=in_port.elems, in_bits=in_port.bits,
        in_signed="signed" if in_port.signed else "unsigned", in_beats=in_beats,
        out_elems=out_port.elems, out_bits=out_port.bits,
        out_signed="signed" if out_port.signed else "unsigned", out_beats=out_beats,
        layers=sum(1 for st in instances if st.nodes))
    return text, top_params


@dataclass
class Project:
    folder: Path
    manifest: dict
    edges: list[Edge] = field(default_factory=list)


def stitch(graph_path: str | Path, out_dir: str | Path, top: str = "nf_accel",
           clock_mhz: float = 100.0, fifo_depths: dict[str, int] | None = None) -> Project:
    """Generate the project folder for a HW-layer graph (written atomically: a temp folder
    renamed into place, so a failed run never leaves half a project). ``fifo_depths``
    overrides the analysed FIFO depth of graph edges, keyed by tensor name."""
    from netfabric.host.hwgraph import load_hwgraph

    graph = load_hwgraph(graph_path)
    layers = plan_stages(graph)
    instances, edges, in_port, out_port = connect(graph, layers, fifo_depths)
    in_shape, out_shape = graph.input_shape, graph.output_shape
    in_beats = prod(in_shape[1:]) // in_port.elems
    out_beats = prod(out_shape[1:]) // out_port.elems
    sources = rtl_dependencies({s for st in instances for s in st.sources})
    with atomic_dir(out_dir) as tmp:
        text, top_params = render_top(top, Path(graph_path).name, instances, edges, in_port,
                                      out_port, in_beats, out_beats)
        (tmp / f"{top}.v").write_text(text)
        for src in sources:
            shutil.copy(RTL_DIR / src, tmp / src)
        mem_files: list[str] = []
        for st in instances:
            for spec in st.mem.values():
                spec[1](tmp)
                mem_files += spec[0]
        in_dtype = graph.dtypes.get(graph.input_name)
        manifest = {
            "top": top,
            "graph": str(Path(graph_path).resolve()),
            "sources": [f"{top}.v", *sources],
            "mem_files": mem_files,
            "mem_params": top_params,
            "in_width_bits": in_port.width,
            "out_width_bits": out_port.width,
            "ports": {"clk": "clk", "rst_n": "rst_n", "s_axis": "s_axis", "m_axis": "m_axis"},
            "input": {"elems_per_beat": in_port.elems, "bits": in_port.bits,
                      "signed": bool(in_dtype.signed) if in_dtype else in_port.signed,
                      "beats_per_frame": in_beats, "shape": in_shape},
            "output": {"elems_per_beat": out_port.elems, "bits": out_port.bits,
                       "signed": out_port.signed, "beats_per_frame": out_beats, "shape": out_shape},
            "clock_mhz": clock_mhz,
            "ideal_cycles_per_frame": max(s.ideal_cycles for s in layers),
            "layers": [{"name": s.name, "module": s.module, "nodes": s.nodes, "params": s.params,
                        "ideal_cycles": s.ideal_cycles} for s in instances],
            "edges": [e.describe() for e in edges],
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return Project(Path(out_dir), manifest, edges)


def load_manifest(folder: str | Path) -> dict:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise StitchError(f"{folder} is not a stitched project (no {MANIFEST}); run the stitcher first")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise StitchError(f"{path} is corrupt: {exc}") from exc
