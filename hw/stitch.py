"""Stitcher: HW-layer graph -> a project folder with a top-level AXI-Stream accelerator.

Each HW layer becomes one module of the ``hw/rtl`` library (an MVAU, a sliding-window generator,
a max-pool, a label select...), with its weights and thresholds as memory files. Between two
layers the stitcher puts a stream FIFO, and a data-width converter where the producer's
elements per beat differ from the consumer's. The folder holds:

    <top>.v, the library modules it uses, *.hex memory files, manifest.json

``manifest.json`` records the I/O packing, folding, ideal and FINN-estimated cycles, and the
target clock: it is what the simulator backend, the bitstream flow and the host read.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import templates
from .errors import StitchError

RTL_DIR = Path(__file__).resolve().parent / "rtl"
MANIFEST = "manifest.json"


@dataclass
class Stage:
    """One module instance of the accelerator."""

    name: str
    module: str
    params: dict
    in_elems: int
    in_bits: int
    out_elems: int
    out_bits: int
    out_signed: bool
    ideal_cycles: int  # per frame, steady state
    nodes: list[str]
    mem: dict = field(default_factory=dict)  # param name -> (file name(s), writer)
    sources: tuple[str, ...] = ()

    @property
    def in_width(self) -> int:
        return _axis_width(self.in_elems * self.in_bits)

    @property
    def out_width(self) -> int:
        return _axis_width(self.out_elems * self.out_bits)


def _axis_width(bits: int) -> int:
    return ((bits + 7) // 8) * 8


def _prod(xs) -> int:
    return int(np.prod(list(xs))) if xs else 1


def _clog2(n: int) -> int:
    return max(1, math.ceil(math.log2(n))) if n > 1 else 1


def _int_type(name: str):
    from netfabric.host.hwgraph import IntType

    t = IntType(name)
    t.bits  # noqa: B018 -- raises for non-integer types
    return t


# ---------------------------------------------------------------------------------------------
# per-layer mapping


def _mvau_stage(node, graph) -> Stage:
    from netfabric.sim import golden

    mw, mh = int(node.attr("MW")), int(node.attr("MH"))
    pe, simd = int(node.attr("PE")), int(node.attr("SIMD"))
    if node.attr("binaryXnorMode", 0):
        raise StitchError(f"node {node.name}: binary (XNOR) MVAUs have no RTL module yet")
    wt, it = _int_type(node.attr("weightDataType")), _int_type(node.attr("inputDataType"))
    for what, t in (("weights", wt), ("inputs", it)):
        if t.bits > 8:
            raise StitchError(f"node {node.name}: {t.name} {what} are wider than the 8 bits supported")
    acc = _int_type(node.attr("accDataType"))
    nvec = _prod(node.attr("numInputVectors", [1]))
    w = graph.params[node.inputs[1]].astype(np.int64).T  # FINN stores (MW, MH); RTL wants [MH, MW]
    use_act = not node.attr("noActivation", 0)
    # one spare accumulator bit: thresholds are clipped to [acc.min, acc.max + 1] and padded
    # with the largest value, neither of which an accumulator in range can reach
    accbits = acc.bits + 1 if use_act else acc.bits
    out_t = _int_type(node.attr("outputDataType"))
    obits = out_t.bits if use_act else accbits
    params = dict(MW=mw, MH=mh, PE=pe, SIMD=simd, WBITS=wt.bits, WSIGNED=int(wt.signed),
                  IBITS=it.bits, ISIGNED=int(it.signed), ACCBITS=accbits, NVEC=nvec,
                  USE_ACT=int(use_act), OBITS=obits if use_act else 1,
                  OSIGNED=int(out_t.signed) if use_act else 1, ACT_BIAS=int(node.attr("ActVal", 0)))
    name = node.name.lower()
    mem = {"WEIGHT_FILE": ([f"{name}_w.hex"],
                           lambda d: golden.write_mvau_weights(d / f"{name}_w.hex", w, pe, simd, wt.bits))}
    if use_act:
        thr = graph.params[node.inputs[2]]
        thr = np.clip(np.ceil(thr), acc.min, acc.max + 1).astype(np.int64)
        thr = np.broadcast_to(thr, (mh, thr.shape[1])) if thr.shape[0] == 1 else thr
        if thr.shape[1] > 2**obits - 1:
            raise StitchError(f"node {node.name}: {thr.shape[1]} thresholds for a {obits}-bit output")
        if np.any(np.diff(thr, axis=1) < 0):
            raise StitchError(f"node {node.name}: thresholds are not sorted per channel")
        prefix = f"{name}_t"
        files = [p.name for p in golden.threshold_file_names(prefix, obits)]
        mem["THRESH_FILE"] = (files, lambda d: golden.write_thresholds(d / prefix, thr, pe, obits, accbits),
                              prefix)
    return Stage(name, "mvau", params, simd, it.bits, pe, obits, bool(out_t.signed) if use_act else True,
                 nvec * (mw // simd) * (mh // pe), [node.name], mem,
                 ("mvau.v", "thresh_search.v", "fifo.v"))


def _swg_stage(node, graph) -> Stage:
    k, s = node.attr("ConvKernelDim"), node.attr("Stride")
    if k[0] != k[1] or s[0] != s[1] or list(node.attr("Dilation", [1, 1])) != [1, 1]:
        raise StitchError(f"node {node.name}: only square kernels/strides without dilation are supported")
    h, w = node.attr("IFMDim")
    c, simd = int(node.attr("IFMChannels")), int(node.attr("SIMD"))
    bits = _int_type(node.attr("inputDataType")).bits
    oh, ow = (h - k[0]) // s[0] + 1, (w - k[1]) // s[1] + 1
    cf = c // simd
    params = dict(IFM_H=h, IFM_W=w, IFM_CH=c, SIMD=simd, K=k[0], S=s[0], BITS=bits)
    ideal = max(oh * ow * k[0] * k[0] * cf, h * w * cf)
    signed = _int_type(node.attr("outputDataType")).signed
    return Stage(node.name.lower(), "swg", params, simd, bits, simd, bits, signed, ideal,
                 [node.name], sources=("swg.v",))


def _maxpool_stage(swg, pool, graph) -> Stage:
    """ConvolutionInputGenerator (depthwise, kernel == stride) + Pool(MaxPool): one maxpool.v."""
    k, s = swg.attr("ConvKernelDim"), swg.attr("Stride")
    if pool.attr("Function") != "MaxPool" or k != s or k[0] != k[1]:
        raise StitchError(f"node {pool.name}: only non-overlapping square max pooling is supported")
    h, w = swg.attr("IFMDim")
    ch, pe = int(pool.attr("Channels")), int(pool.attr("PE"))
    dt = _int_type(pool.attr("InputDataType"))
    params = dict(CHANNELS=ch, PE=pe, BITS=dt.bits, SIGNED=int(dt.signed), IFM_H=h, IFM_W=w, K=k[0])
    return Stage(pool.name.lower(), "maxpool", params, pe, dt.bits, pe, dt.bits, dt.signed,
                 h * w * ch // pe, [swg.name, pool.name], sources=("maxpool.v",))


def _label_select_stage(node, graph) -> Stage:
    if int(node.attr("K")) != 1:
        raise StitchError(f"node {node.name}: LabelSelect with K={node.attr('K')}; only top-1 has RTL")
    n, pe = int(node.attr("Labels")), int(node.attr("PE"))
    dt = _int_type(node.attr("inputDataType"))
    nvec = _prod(node.attr("numInputVectors", [1]))
    params = dict(NLABELS=n, PE=pe, BITS=dt.bits, SIGNED=int(dt.signed), NVEC=nvec)
    return Stage(node.name.lower(), "label_select", params, pe, dt.bits, 1, _clog2(n), False,
                 nvec * n // pe, [node.name], sources=("label_select.v",))


def _thresholding_stage(node, graph) -> Stage:
    from netfabric.sim import golden

    ch, pe = int(node.attr("NumChannels")), int(node.attr("PE"))
    it, ot = _int_type(node.attr("inputDataType")), _int_type(node.attr("outputDataType"))
    nvec = _prod(node.attr("numInputVectors", [1]))
    dbits = it.bits + 1
    thr = np.clip(np.ceil(graph.params[node.inputs[1]]), it.min, it.max + 1).astype(np.int64)
    thr = np.broadcast_to(thr, (ch, thr.shape[1])) if thr.shape[0] == 1 else thr
    name = node.name.lower()
    prefix = f"{name}_t"
    files = [p.name for p in golden.threshold_file_names(prefix, ot.bits)]
    params = dict(CHANNELS=ch, PE=pe, IBITS=it.bits, ISIGNED=int(it.signed), TBITS=dbits, OBITS=ot.bits,
                  ACT_BIAS=int(node.attr("ActVal", 0)), NVEC=nvec)
    mem = {"THRESH_FILE": (files, lambda d: golden.write_thresholds(d / prefix, thr, pe, ot.bits, dbits),
                           prefix)}
    return Stage(name, "thresholding", params, pe, it.bits, pe, ot.bits, ot.signed,
                 nvec * ch // pe, [node.name], mem, ("thresholding.v", "thresh_search.v"))


def plan_stages(graph) -> list[Stage]:
    """Map the chain of HW nodes to library modules (fusing SWG + Pool into maxpool)."""
    stages: list[Stage] = []
    nodes = list(graph.nodes)
    i = 0
    while i < len(nodes):
        node = nodes[i]
        nxt = nodes[i + 1] if i + 1 < len(nodes) else None
        op = node.op_type
        if op == "ConvolutionInputGenerator" and nxt is not None and nxt.op_type == "Pool":
            stages.append(_maxpool_stage(node, nxt, graph))
            i += 2
            continue
        if op == "ConvolutionInputGenerator" and node.attr("depthwise", 0):
            raise StitchError(f"node {node.name}: a depthwise window generator is only supported "
                              "directly before a max pool")
        mapping = {"MVAU": _mvau_stage, "ConvolutionInputGenerator": _swg_stage,
                   "LabelSelect": _label_select_stage, "Thresholding": _thresholding_stage}
        if op in ("StreamingFIFO", "StreamingDataWidthConverter"):
            i += 1  # the stitcher places its own FIFOs and converters
            continue
        if op not in mapping:
            raise StitchError(f"node {node.name} ({op}) has no RTL module; supported: "
                              f"{', '.join(sorted([*mapping, 'Pool (after a window generator)']))}")
        stages.append(mapping[op](node, graph))
        i += 1
    if not stages:
        raise StitchError("the graph has no hardware layers")
    return stages


def _dwc(name: str, src: Stage, dst: Stage) -> Stage:
    a, b = src.out_elems, dst.in_elems
    if src.out_bits != dst.in_bits:
        raise StitchError(f"{src.name} -> {dst.name}: element widths differ ({src.out_bits} vs "
                          f"{dst.in_bits} bits)")
    if max(a, b) % min(a, b):
        raise StitchError(f"{src.name} -> {dst.name}: {a} and {b} elements per beat do not divide")
    return Stage(name, "dwc", dict(IN_WIDTH=a, OUT_WIDTH=b, BITS=src.out_bits), a, src.out_bits,
                 b, src.out_bits, src.out_signed, 0, [], sources=("dwc.v",))


def _fifo(name: str, src: Stage, depth: int) -> Stage:
    width = src.out_elems * src.out_bits
    return Stage(name, "fifo", dict(WIDTH=width, DEPTH=depth), src.out_elems, src.out_bits,
                 src.out_elems, src.out_bits, src.out_signed, 0, [], sources=("fifo.v",))


def fifo_depth(consumer: Stage) -> int:
    """FIFO depth by analysis: an MVAU reads one vector (SF beats) then replays it NF-1 times
    without reading, so its producer must be able to park a vector; other layers consume
    steadily. Power of two, 16..1024."""
    beats = 16
    if consumer.module == "mvau":
        beats = 2 * consumer.params["MW"] // consumer.params["SIMD"]
    return int(min(1024, max(16, 2 ** math.ceil(math.log2(beats)))))


def chain(stages: list[Stage], fifo_depths: dict[str, int] | None = None) -> list[Stage]:
    """Insert FIFOs (and width converters) between consecutive layers.

    The FIFO sits on the *wide* side of a width converter: an MVAU reads its input in bursts
    (one beat per cycle during its first fold, nothing while it replays the buffered vector),
    and an up-converter in front of it can deliver only one wide beat per N cycles. With the
    FIFO after the up-converter, the wide beats pile up during the replay and arrive one per
    cycle in the burst; before it, the MVAU would be starved (measured: 1.27x the ideal cycles).
    """
    out = [stages[0]]
    for k, dst in enumerate(stages[1:], start=1):
        src = out[-1]
        depth = (fifo_depths or {}).get(dst.name, fifo_depth(dst))
        if src.out_elems < dst.in_elems:  # up-conversion: converter, then FIFO of wide beats
            out.append(_dwc(f"dwc_{k}", src, dst))
            out.append(_fifo(f"fifo_{k}", out[-1], depth))
        else:
            out.append(_fifo(f"fifo_{k}", src, depth))
            if src.out_elems != dst.in_elems:
                out.append(_dwc(f"dwc_{k}", out[-1], dst))
        out.append(dst)
    return out


# ---------------------------------------------------------------------------------------------
# emission


def _param_lines(params: dict, mem_params: dict[str, str]) -> str:
    lines = [f"        .{k}({v})" for k, v in params.items()]
    lines += [f"        .{k}({v})" for k, v in mem_params.items()]
    return ",\n".join(lines)


def render_top(top: str, graph_name: str, stages: list[Stage], in_beats: int, out_beats: int) -> tuple[str, dict]:
    wires, instances, top_params = [], [], {}
    nets = [f"n{i}" for i in range(len(stages) + 1)]
    widths = [stages[0].in_width] + [s.out_width for s in stages]
    for net, width in zip(nets, widths, strict=True):
        wires.append(templates.WIRE.format(name=net, width=width))
    for i, st in enumerate(stages):
        mem_params = {}
        for pname, spec in st.mem.items():
            value = spec[2] if len(spec) > 2 else spec[0][0]  # a prefix or one file
            tp = f"{st.name.upper()}_{pname}"
            top_params[tp] = value
            mem_params[pname] = tp
        comment = f"{st.module} for {', '.join(st.nodes)}" if st.nodes else st.module
        instances.append(templates.INSTANCE.format(
            comment=comment, module=st.module, params=_param_lines(st.params, mem_params),
            inst=f"u_{st.name}", src=nets[i], dst=nets[i + 1]))
    mem_lines = ",\n".join(f'    parameter {k} = "{v}"' for k, v in top_params.items()) or \
        '    parameter UNUSED = 0'
    first, last = stages[0], stages[-1]
    text = templates.TOP.format(
        top=top, graph=graph_name, mem_params=mem_lines, in_width=first.in_width,
        out_width=last.out_width, wires="\n".join(wires), instances="\n".join(instances),
        first=nets[0], last=nets[-1], in_elems=first.in_elems, in_bits=first.in_bits,
        in_signed="signed" if _input_signed(first) else "unsigned", in_beats=in_beats,
        out_elems=last.out_elems, out_bits=last.out_bits,
        out_signed="signed" if last.out_signed else "unsigned", out_beats=out_beats)
    return text, top_params


def _input_signed(stage: Stage) -> bool:
    return bool(stage.params.get("ISIGNED", stage.params.get("SIGNED", 0)))


@dataclass
class Project:
    folder: Path
    manifest: dict


def stitch(graph_path: str | Path, out_dir: str | Path, top: str = "nf_accel",
           clock_mhz: float = 100.0, fifo_depths: dict[str, int] | None = None) -> Project:
    """Generate the project folder for a HW-layer graph (written atomically: a temp folder
    renamed into place, so a failed run never leaves half a project)."""
    from netfabric.host.hwgraph import load_hwgraph

    graph = load_hwgraph(graph_path)
    layers = plan_stages(graph)
    stages = chain(layers, fifo_depths)
    first, last = layers[0], layers[-1]
    in_shape, out_shape = graph.input_shape, graph.output_shape
    in_elems_frame = _prod(in_shape[1:])
    out_elems_frame = _prod(out_shape[1:]) if last.module != "label_select" else \
        _prod(out_shape[1:])
    in_beats = in_elems_frame // first.in_elems
    out_beats = out_elems_frame // last.out_elems
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}."))
    try:
        text, top_params = render_top(top, Path(graph_path).name, stages, in_beats, out_beats)
        (tmp / f"{top}.v").write_text(text)
        sources = sorted({s for st in stages for s in st.sources})
        for src in sources:
            shutil.copy(RTL_DIR / src, tmp / src)
        mem_files: list[str] = []
        for st in stages:
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
            "in_width_bits": first.in_width,
            "out_width_bits": last.out_width,
            "ports": {"clk": "clk", "rst_n": "rst_n", "s_axis": "s_axis", "m_axis": "m_axis"},
            "input": {"elems_per_beat": first.in_elems, "bits": first.in_bits,
                      "signed": bool(in_dtype.signed) if in_dtype else False,
                      "beats_per_frame": in_beats, "shape": in_shape},
            "output": {"elems_per_beat": last.out_elems, "bits": last.out_bits,
                       "signed": last.out_signed, "beats_per_frame": out_beats, "shape": out_shape},
            "clock_mhz": clock_mhz,
            "ideal_cycles_per_frame": max(s.ideal_cycles for s in layers),
            "layers": [{"name": s.name, "module": s.module, "nodes": s.nodes, "params": s.params,
                        "ideal_cycles": s.ideal_cycles} for s in stages],
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
        for p in tmp.iterdir():
            os.chmod(p, 0o644)
        os.chmod(tmp, 0o755)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Project(out_dir, manifest)


def load_manifest(folder: str | Path) -> dict:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise StitchError(f"{folder} is not a stitched project (no {MANIFEST}); run the stitcher first")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise StitchError(f"{path} is corrupt: {exc}") from exc
