"""The RTL backend's piece of every HW-layer op: node -> one module instance (a Stage).

Each function here is registered in the op registry (``@register_piece("rtl", op)``) and maps
one node of the HW-layer graph to a module of the ``hw/rtl`` library with its parameters,
memory files and stream ports. The stitcher (``stitch.py``) asks the registry for the piece
of each node; nothing else lists the ops. Piece options the stitcher reads:

``fuses_producer="Op"``
    the module also implements the node's stream producer, which must be an ``Op`` node
    feeding only this one (Pool: the depthwise window generator before it -> one maxpool.v).
``placed_by_stitcher=True``
    the stitcher places its own stream FIFOs and width converters, so such nodes of the graph
    are dropped (their output is their input).

A stage also carries what the stitcher's FIFO analysis needs: its latency and ``needs``, the
number of input elements it must consume before it has produced a given number of output
elements (an MVAU a whole input vector before its first output).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from netfabric.errors import StitchError
from netfabric.host.hwgraph import int_type, prod
from netfabric.hw.flow.fit import weight_bank_address_bits
from netfabric.ops.registry import register_piece


@dataclass(frozen=True)
class Port:
    """One stream port of a module: ``elems`` elements of ``bits`` bits per beat."""

    elems: int
    bits: int
    signed: bool

    @property
    def width(self) -> int:
        """tdata width: payload rounded up to whole bytes."""
        return axis_width(self.elems * self.bits)


@dataclass
class Stage:
    """One module instance of the accelerator.

    ``ins`` / ``outs`` are its stream ports, wired to the RTL port prefixes ``in_ports`` /
    ``out_ports``; with ``out_bus`` the outputs are lanes of one flattened ``m_axis`` bus
    (``m_axis_tdata`` = N x tdata, ``m_axis_tvalid`` / ``_tready`` N bits). ``in_tensors`` /
    ``out_tensors`` are the graph tensors on those ports (empty for stitcher-placed FIFOs).
    """

    name: str
    module: str
    params: dict
    ins: list[Port]
    outs: list[Port]
    ideal_cycles: int  # per frame, steady state
    nodes: list[str]
    mem: dict = field(default_factory=dict)  # param -> (file name(s), writer[, prefix])
    sources: tuple[str, ...] = ()
    latency: int = 1  # cycles from the input beat an output depends on to that output
    needs: Callable[[int], int] | None = None  # output elements -> input elements consumed
    in_tensors: list[str] = field(default_factory=list)
    out_tensors: list[str] = field(default_factory=list)
    in_ports: tuple[str, ...] = ("s_axis",)
    out_ports: tuple[str, ...] = ("m_axis",)
    out_bus: bool = False
    why: str = ""  # stitcher-placed FIFOs: how the depth was chosen

    # the single-stream view (port 0), used for the accelerator's own input and output
    @property
    def in_elems(self) -> int:
        return self.ins[0].elems

    @property
    def in_bits(self) -> int:
        return self.ins[0].bits

    @property
    def out_elems(self) -> int:
        return self.outs[0].elems

    @property
    def out_bits(self) -> int:
        return self.outs[0].bits

    @property
    def out_signed(self) -> bool:
        return self.outs[0].signed

    @property
    def in_width(self) -> int:
        return self.ins[0].width

    @property
    def out_width(self) -> int:
        return self.outs[0].width

    def input_elements(self, n_out: int) -> int:
        """Input elements (per input port) consumed before ``n_out`` output elements exist."""
        if self.needs is not None:
            return self.needs(n_out)
        return _ceil_to(n_out, self.outs[0].elems) * self.ins[0].elems // self.outs[0].elems


def axis_width(bits: int) -> int:
    return ((bits + 7) // 8) * 8


def _ceil_to(n: int, k: int) -> int:
    return -(-n // k) * k


def _clog2(n: int) -> int:
    return max(1, math.ceil(math.log2(n))) if n > 1 else 1


def _stream_inputs(node, graph) -> list[str]:
    return [t for t in node.inputs if t and t not in graph.params]


def _per_vector(in_len: int, out_len: int) -> Callable[[int], int]:
    """A stage that reads a whole vector of ``in_len`` elements before emitting its
    ``out_len`` outputs (MVAU, LabelSelect): n outputs need ceil(n / out_len) vectors."""
    return lambda n: -(-n // out_len) * in_len


def _windowed(h: int, w: int, c: int, k: int, s: int, out_per_window: int,
              in_frame: int, out_frame: int) -> Callable[[int], int]:
    """A K x K window op over an NHWC image (row-major windows): the window's output starts
    once its last pixel (row y*S+K-1, column x*S+K-1, all C channels) is in."""
    ow = (w - k) // s + 1

    def needs(n: int) -> int:
        if n <= 0:
            return 0
        frame, r = divmod(n - 1, out_frame)
        oy, ox = divmod(r // out_per_window, ow)
        return frame * in_frame + ((oy * s + k - 1) * w + ox * s + k) * c

    return needs


def _thresholds(node, graph, table: str, channels: int, dtype, obits: int) -> tuple[np.ndarray, int]:
    """The node's threshold table clipped to the compared values' range, and the signed
    width of the comparison.

    Thresholds beyond the range are clipped to [min, max + 1] (max + 1: never reached) and
    the table is padded with the largest signed value of the comparison width; both must be
    unreachable, so that width is one bit wider than the values' own signed range: bits + 1
    for signed values, bits + 2 for unsigned ones (UINT8: 256 and the pad 511 need 10 bits).
    """
    tbits = dtype.bits + (1 if dtype.signed else 2)
    thr = np.clip(np.ceil(graph.params[table]), dtype.min, dtype.max + 1).astype(np.int64)
    thr = np.broadcast_to(thr, (channels, thr.shape[1])) if thr.shape[0] == 1 else thr
    if thr.shape[1] > 2**obits - 1:
        raise StitchError(f"node {node.name}: {thr.shape[1]} thresholds for a {obits}-bit output")
    if np.any(np.diff(thr, axis=1) < 0):
        raise StitchError(f"node {node.name}: thresholds are not sorted per channel")
    return thr, tbits


# Leftover tables (channels the requantizer proof rejects) up to this many bits go to LUTs
# (thresh_search ROM_STYLE=1): a few sparse tables would otherwise each take block RAMs.
LUT_TABLE_BITS = 160_000


def _signed_bits(v: int) -> int:
    return (v if v >= 0 else -v - 1).bit_length() + 1


@dataclass
class Activation:
    """requant_act.v's parameters, memory files and latency for one threshold table."""

    params: dict
    mem: dict
    latency: int
    proven: int  # channels computed by the requantizer


def activation(node, graph, table: str, channels: int, pe: int, dtype, obits: int, prefix: str,
               rq_file: str) -> Activation:
    """Requantizer (multiply, add, shift, clip) for every channel host/requant.py proves
    equal to its table, the binary search over the stored tables for the rest (compacted:
    per lane only the unproven channels' tables, picked through ``<prefix>_idx.hex``)."""
    thr, tbits = _thresholds(node, graph, table, channels, dtype, obits)
    return plan_activation(thr, tbits, pe, dtype, obits, prefix, rq_file)


def plan_activation(thr: np.ndarray, tbits: int, pe: int, dtype, obits: int, prefix: str,
                    rq_file: str) -> Activation:
    """:func:`activation` for a table already clipped to ``dtype``'s range + 1
    (``_thresholds``), ``tbits`` its comparison width."""
    from netfabric.host.requant import fit_requantizer
    from netfabric.sim import golden

    n, nf = thr.shape[1], thr.shape[0] // pe

    def stage_files(tables: int) -> list[str]:
        return [p.name for p in golden.threshold_file_names(prefix, obits, tables)]

    fitted = fit_requantizer(thr, dtype.min, dtype.max) if n else None
    if fitted is None:  # tables only, as FINN
        return Activation({}, {"THRESH_FILE": (stage_files(nf), lambda d: golden.write_thresholds(
            d / prefix, thr, pe, obits, tbits), prefix)}, 4 * obits + 2, 0)
    rq, proven = fitted
    m = [int(v) for v in rq.mult[proven]]
    b = [int(v) for v in rq.add[proven]]
    mbits, bbits = max(v.bit_length() for v in m), max(_signed_bits(v) for v in b)
    rw = 1 + bbits + mbits
    words = []
    for f in range(nf):
        word = 0
        for p in range(pe):
            c = f * pe + p
            if proven[c]:
                k = (1 << (rw - 1)) | ((int(rq.add[c]) & ((1 << bbits) - 1)) << mbits) | int(rq.mult[c])
                word |= k << (p * rw)
        words.append(word)
    # unproven channels, per lane: lane p's t-th table
    lanes = [[f for f in range(nf) if not proven[f * pe + p]] for p in range(pe)]
    nt = max(len(ch) for ch in lanes)
    params = dict(RQ=1, NT=nt, RQ_LEVELS=n, RQ_MBITS=mbits, RQ_BBITS=bbits, RQ_SHIFT=rq.shift)
    mem: dict = {"RQ_FILE": ([rq_file], lambda d: golden.write_hex(d / rq_file, words, pe * rw))}
    if nt:
        tw = max(1, math.ceil(math.log2(nt)))
        never = np.full(n, dtype.max + 1, np.int64)  # unused slots: never reached
        comp = np.stack([thr[lanes[p][t] * pe + p] if t < len(lanes[p]) else never
                         for t in range(nt) for p in range(pe)])
        idx = [sum((lanes[p].index(f) if f in lanes[p] else 0) << (p * tw) for p in range(pe))
               for f in range(nf)]

        def write(d, comp=comp, idx=idx, tw=tw):
            golden.write_hex(d / f"{prefix}_idx.hex", idx, pe * tw)
            return golden.write_thresholds(d / prefix, comp, pe, obits, tbits)

        mem["THRESH_FILE"] = ([*stage_files(nt), f"{prefix}_idx.hex"], write, prefix)
        if nt * pe * (2**obits - 1) * tbits <= LUT_TABLE_BITS:
            params["ROM_STYLE"] = 1
    return Activation(params, mem, 4 * obits + 2 if nt else 6, int(proven.sum()))


# ---------------------------------------------------------------------------------------------
# compute layers


@register_piece("rtl", "MVAU")
def mvau_stage(node, graph) -> Stage:
    from netfabric.sim import golden

    mw, mh = int(node.attr("MW")), int(node.attr("MH"))
    pe, simd = int(node.attr("PE")), int(node.attr("SIMD"))
    xnor = bool(node.attr("binaryXnorMode", 0))
    wt, it = int_type(node.attr("weightDataType")), int_type(node.attr("inputDataType"))
    if xnor and (wt.name, it.name) != ("BINARY", "BINARY"):
        raise StitchError(f"node {node.name}: binary (XNOR) MVAUs need BINARY inputs and weights")
    if not xnor and (wt.name, it.name) == ("BIPOLAR", "BIPOLAR"):
        raise StitchError(f"node {node.name}: BIPOLAR x BIPOLAR MVAUs count agreements (FINN); "
                          "convert them to binaryXnorMode=1 on BINARY operands (qonnx's "
                          "ConvertBipolarMatMulToXnorPopcount) for the RTL")
    # inputs up to 16 bits (a pooled sum feeding a classifier head): the 17 x 9-bit signed
    # product still fits one 18x18 DSP multiplier
    for what, t, most in (("weights", wt, 8), ("inputs", it, 16)):
        if t.bits > most:
            raise StitchError(f"node {node.name}: {t.name} {what} are wider than the {most} bits supported")
    acc = int_type(node.attr("accDataType"))
    if xnor:  # the popcount is 0..MW whatever accDataType says (FINN sizes it for +-1 sums)
        acc = int_type(f"UINT{mw.bit_length()}")
    nvec = prod(node.attr("numInputVectors", [1]))
    w = graph.params[node.inputs[1]].astype(np.int64).T  # FINN stores (MW, MH); RTL wants [MH, MW]
    use_act = not node.attr("noActivation", 0)
    out_t = int_type(node.attr("outputDataType"))
    name = node.name.lower()
    wdepth = (mh // pe) * (mw // simd)
    # ROMs deeper than one block-RAM aspect's depth for their word width are split into
    # banks of that depth (mvau.v WBANK_AW): block RAMs side by side in each, the bank mux
    # after their output registers, where a cascade would put a multiplexer before them
    bank_aw = weight_bank_address_bits(pe * simd * wt.bits)
    banked = wdepth > 1 << bank_aw
    if banked:  # one file per bank, WEIGHT_FILE their prefix
        files = [p.name for p in golden.bank_file_names(f"{name}_w", -(-wdepth // (1 << bank_aw)))]
        mem = {"WEIGHT_FILE": (files, lambda d: golden.write_mvau_weight_banks(
            d / f"{name}_w", w, pe, simd, wt.bits, 1 << bank_aw), f"{name}_w")}
    else:
        mem = {"WEIGHT_FILE": ([f"{name}_w.hex"], lambda d: golden.write_mvau_weights(
            d / f"{name}_w.hex", w, pe, simd, wt.bits))}
    act = None
    if use_act:
        # the accumulator is compared at the thresholds' width: one spare bit above the
        # accumulator's range (see _thresholds)
        obits = out_t.bits
        accbits = acc.bits + (1 if acc.signed else 2)
        act = activation(node, graph, node.inputs[2], mh, pe, acc, obits, f"{name}_t", f"{name}_rq.hex")
        mem.update(act.mem)
    elif xnor:  # the popcount is the output, at the declared type (bit pattern mod 2^bits)
        if out_t.max < mw:
            raise StitchError(f"node {node.name}: the XNOR popcount reaches MW = {mw}, which its "
                              f"outputDataType {out_t.name} cannot hold (needs UINT"
                              f"{mw.bit_length()} or INT{mw.bit_length() + 1})")
        accbits = obits = out_t.bits
    else:  # the accumulator is the output: signed, wide enough for an unsigned range too
        accbits = acc.bits + (0 if acc.signed else 1)
        obits = accbits
    params = dict(MW=mw, MH=mh, PE=pe, SIMD=simd, WBITS=wt.bits, WSIGNED=int(wt.signed),
                  IBITS=it.bits, ISIGNED=int(it.signed), ACCBITS=accbits, NVEC=nvec,
                  USE_ACT=int(use_act), OBITS=obits if use_act else 1,
                  OSIGNED=int(out_t.signed) if use_act else 1, ACT_BIAS=int(node.attr("ActVal", 0)))
    if xnor:  # XNOR-popcount lanes: 0/1 weights in a 1-bit memory, no multipliers
        params["XNOR"] = 1
    if banked:
        params["WBANK_AW"] = bank_aw
    if act is not None:
        params.update(act.params)
    latency = 9 + _clog2(simd) + (act.latency if act else 0) + 2
    return Stage(name, "mvau", params, [Port(simd, it.bits, it.signed)],
                 [Port(pe, obits, bool(out_t.signed) if use_act or xnor else True)],
                 nvec * (mw // simd) * (mh // pe), [node.name], mem, ("mvau.v",), latency,
                 _per_vector(mw, mh), [node.inputs[0]], [node.outputs[0]])


def thresholding_latency(act) -> int:
    """The stage latency the stitcher sizes FIFOs with: an upper bound on thresholding.v's
    (measured: act.latency + 1, tests/test_rtl_requant.py), 2 cycles of margin kept."""
    return act.latency + 3


@register_piece("rtl", "Thresholding")
def thresholding_stage(node, graph) -> Stage:

    ch, pe = int(node.attr("NumChannels")), int(node.attr("PE"))
    it, ot = int_type(node.attr("inputDataType")), int_type(node.attr("outputDataType"))
    nvec = prod(node.attr("numInputVectors", [1]))
    tbits = it.bits + (1 if it.signed else 2)  # see _thresholds
    name = node.name.lower()
    act = activation(node, graph, node.inputs[1], ch, pe, it, ot.bits, f"{name}_t", f"{name}_rq.hex")
    params = dict(CHANNELS=ch, PE=pe, IBITS=it.bits, ISIGNED=int(it.signed), TBITS=tbits, OBITS=ot.bits,
                  ACT_BIAS=int(node.attr("ActVal", 0)), NVEC=nvec, **act.params)
    return Stage(name, "thresholding", params, [Port(pe, it.bits, it.signed)], [Port(pe, ot.bits, ot.signed)],
                 nvec * ch // pe, [node.name], act.mem, ("thresholding.v",), thresholding_latency(act),
                 in_tensors=[node.inputs[0]], out_tensors=[node.outputs[0]])


@register_piece("rtl", "ConvolutionInputGenerator")
def swg_stage(node, graph) -> Stage:
    """swg.v; FINN's ``parallel_window`` (SIMD = channels) -> PARALLEL_WINDOW=1, a whole
    K x K x C window a beat, one input pixel a cycle."""
    from netfabric.ops.defs.window import parallel_window, swg_cycles

    if node.attr("depthwise", 0):
        raise StitchError(f"node {node.name}: a depthwise window generator is only supported "
                          "directly before a max pool")
    k, s = node.attr("ConvKernelDim"), node.attr("Stride")
    if k[0] != k[1] or s[0] != s[1] or list(node.attr("Dilation", [1, 1])) != [1, 1]:
        raise StitchError(f"node {node.name}: only square kernels/strides without dilation are supported")
    h, w = node.attr("IFMDim")
    c, simd = int(node.attr("IFMChannels")), int(node.attr("SIMD"))
    bits = int_type(node.attr("inputDataType")).bits
    oh, ow = (h - k[0]) // s[0] + 1, (w - k[1]) // s[1] + 1
    params = dict(IFM_H=h, IFM_W=w, IFM_CH=c, SIMD=simd, K=k[0], S=s[0], BITS=bits)
    if int(node.attr("M", 1)) != 1:
        raise StitchError(f"node {node.name}: M={node.attr('M')} (several windows a beat) has no RTL")
    par = parallel_window(node)
    if par:
        if simd != c:
            raise StitchError(f"node {node.name}: parallel_window needs SIMD = IFMChannels "
                              f"({simd} != {c}), as FINN's window generator does")
        params["PARALLEL_WINDOW"] = 1
    signed = int_type(node.attr("outputDataType")).signed
    win = k[0] * k[0] * c
    # latency: a window is on m_axis 1 cycle (parallel) / 3 cycles after its last input beat
    return Stage(node.name.lower(), "swg", params, [Port(simd, bits, signed)],
                 [Port(win if par else simd, bits, signed)], swg_cycles(node, graph), [node.name],
                 sources=("swg.v",), latency=1 if par else 3,
                 needs=_windowed(h, w, c, k[0], s[0], win, h * w * c, oh * ow * win),
                 in_tensors=[node.inputs[0]], out_tensors=[node.outputs[0]])


def stream_producer(graph, tensor: str):
    """The node producing ``tensor``, looking through graph FIFOs / width converters."""
    node = graph.producer(tensor)
    while node is not None and node.op_type in ("StreamingFIFO", "StreamingDataWidthConverter"):
        node = graph.producer(node.inputs[0])
    return node


@register_piece("rtl", "Pool", fuses_producer="ConvolutionInputGenerator")
def maxpool_stage(node, graph) -> Stage:
    """ConvolutionInputGenerator (depthwise, kernel == stride) + Pool(MaxPool): one maxpool.v."""
    swg = stream_producer(graph, node.inputs[0])
    if swg is None or swg.op_type != "ConvolutionInputGenerator":
        raise StitchError(f"node {node.name}: a Pool needs the window generator that feeds it "
                          "(ConvolutionInputGenerator) to be fused with it in RTL")
    k, s = swg.attr("ConvKernelDim"), swg.attr("Stride")
    if node.attr("Function") != "MaxPool" or k != s or k[0] != k[1]:
        raise StitchError(f"node {node.name}: only non-overlapping square max pooling is supported")
    h, w = swg.attr("IFMDim")
    ch, pe = int(node.attr("Channels")), int(node.attr("PE"))
    dt = int_type(node.attr("InputDataType"))
    params = dict(CHANNELS=ch, PE=pe, BITS=dt.bits, SIGNED=int(dt.signed), IFM_H=h, IFM_W=w, K=k[0])
    oh, ow = h // k[0], w // k[0]
    return Stage(node.name.lower(), "maxpool", params, [Port(pe, dt.bits, dt.signed)],
                 [Port(pe, dt.bits, dt.signed)], h * w * ch // pe, [swg.name, node.name],
                 sources=("maxpool.v",), latency=4,
                 needs=_windowed(h, w, ch, k[0], k[0], ch, h * w * ch, oh * ow * ch),
                 in_tensors=[swg.inputs[0]], out_tensors=[node.outputs[0]])


@register_piece("rtl", "LabelSelect")
def label_select_stage(node, graph) -> Stage:
    if int(node.attr("K")) != 1:
        raise StitchError(f"node {node.name}: LabelSelect with K={node.attr('K')}; only top-1 has RTL")
    n, pe = int(node.attr("Labels")), int(node.attr("PE"))
    dt = int_type(node.attr("inputDataType"))
    nvec = prod(node.attr("numInputVectors", [1]))
    params = dict(NLABELS=n, PE=pe, BITS=dt.bits, SIGNED=int(dt.signed), NVEC=nvec)
    return Stage(node.name.lower(), "label_select", params, [Port(pe, dt.bits, dt.signed)],
                 [Port(1, _clog2(n), False)], nvec * n // pe, [node.name],
                 sources=("label_select.v",), latency=5 + _clog2(pe),
                 needs=_per_vector(n, 1), in_tensors=[node.inputs[0]],
                 out_tensors=[node.outputs[0]])


# ---------------------------------------------------------------------------------------------
# forks and joins


@register_piece("rtl", "DuplicateStreams")
def dup_streams_stage(node, graph) -> Stage:
    """1 stream in, NumOutputStreams copies out, each output with its own 2-beat buffer."""
    ch, pe = int(node.attr("NumChannels")), int(node.attr("PE"))
    nout = int(node.attr("NumOutputStreams", len(node.outputs)))
    if nout != len(node.outputs) or nout < 1:
        raise StitchError(f"node {node.name}: NumOutputStreams={nout} but {len(node.outputs)} outputs")
    if ch % pe:
        raise StitchError(f"node {node.name}: PE={pe} does not divide NumChannels={ch}")
    dt = int_type(node.attr("inputDataType"))
    nvec = prod(node.attr("numInputVectors", [1]))
    params = dict(NOUT=nout, PE=pe, BITS=dt.bits, CHANNELS=ch, NVEC=nvec)
    port = Port(pe, dt.bits, dt.signed)
    return Stage(node.name.lower(), "dup_streams", params, [port], [port] * nout, nvec * ch // pe,
                 [node.name], sources=("dup_streams.v",), latency=1,
                 in_tensors=[node.inputs[0]], out_tensors=list(node.outputs), out_bus=True)


def _add_operands(node, graph):
    """(stream operands, constant operand or None) of an ElementwiseAdd, as (tensor, type)."""
    ops = []
    for side in ("lhs", "rhs"):
        tensor = node.inputs[0 if side == "lhs" else 1]
        const = tensor in graph.params or node.attr(f"{side}_style", "input") == "const"
        ops.append((tensor, int_type(node.attr(f"{side}_dtype")), side, const))
    streams = [o for o in ops if not o[3]]
    consts = [o for o in ops if o[3]]
    if not streams:
        raise StitchError(f"node {node.name}: both operands of the add are constants")
    return streams, (consts[0] if consts else None)


@register_piece("rtl", "ElementwiseAdd")
def eltwise_add_stage(node, graph) -> Stage:
    """lhs + rhs per element, PE lanes; two streams, or one stream and a constant (a ROM of
    one period of the broadcast operand, e.g. the transformer's position table)."""
    from netfabric.sim import golden

    pe = int(node.attr("PE", 1))
    out_shape = list(node.attr("out_shape"))
    ch, nvec = int(out_shape[-1]), prod(out_shape[:-1])
    if ch % pe:
        raise StitchError(f"node {node.name}: PE={pe} does not divide the {ch} channels")
    ot = int_type(node.attr("out_dtype"))
    streams, const = _add_operands(node, graph)
    for tensor, _, side, _ in streams:
        if list(node.attr(f"{side}_shape")) != out_shape:
            raise StitchError(f"node {node.name}: stream operand {tensor} has shape "
                              f"{list(node.attr(f'{side}_shape'))}, not the output's {out_shape} "
                              "(a broadcast stream has no RTL)")
    (a, at, _, _), b = streams[0], streams[1] if len(streams) > 1 else const
    bt = b[1]
    name = node.name.lower()
    params = dict(PE=pe, LBITS=at.bits, LSIGNED=int(at.signed), RBITS=bt.bits, RSIGNED=int(bt.signed),
                  OBITS=ot.bits, OSIGNED=int(ot.signed), CHANNELS=ch, NVEC=nvec)
    mem: dict = {}
    ins = [Port(pe, at.bits, at.signed)]
    in_tensors = [a]
    if const is None:
        ins.append(Port(pe, bt.bits, bt.signed))
        in_tensors.append(b[0])
        in_ports: tuple[str, ...] = ("s0_axis", "s1_axis")
    else:
        value = np.asarray(graph.params[const[0]], dtype=np.float64)
        if not np.array_equal(value, np.round(value)):
            raise StitchError(f"node {node.name}: constant operand {const[0]} is not integer")
        value = value.astype(np.int64)
        lo, hi = bt.min, bt.max
        if value.size and (value.min() < lo or value.max() > hi):
            raise StitchError(f"node {node.name}: constant {const[0]} exceeds its type {bt.name}")
        period = _rom_period(value, out_shape)
        if period % pe:
            raise StitchError(f"node {node.name}: constant {const[0]} repeats every {period} "
                              f"elements, not a multiple of PE={pe}")
        flat = np.broadcast_to(value.reshape([1] * (len(out_shape) - value.ndim) + list(value.shape)),
                               out_shape).reshape(-1)[:period]
        words = golden.pack_beats(flat, pe, bt.bits)
        fname = f"{name}_rhs.hex"
        params.update(CONST_RHS=1, RHS_WORDS=len(words))
        mem["RHS_FILE"] = ([fname], lambda d: golden.write_hex(d / fname, words, pe * bt.bits))
        in_ports = ("s0_axis",)
    return Stage(name, "eltwise_add", params, ins, [Port(pe, ot.bits, ot.signed)], nvec * ch // pe,
                 [node.name], mem, ("eltwise_add.v",), latency=1, in_tensors=in_tensors,
                 out_tensors=[node.outputs[0]], in_ports=in_ports)


def _rom_period(value: np.ndarray, out_shape: list[int]) -> int:
    """Elements after which the broadcast constant repeats along the flattened output: its
    own size when it spans the output's trailing dimensions, else the whole frame."""
    dims = list(value.shape)
    while dims and dims[0] == 1:
        dims.pop(0)
    if not dims or out_shape[len(out_shape) - len(dims):] != dims:
        return prod(out_shape)
    return prod(dims)


# ---------------------------------------------------------------------------------------------
# reductions and the segmented-attention ops


@register_piece("rtl", "GlobalAccPool")
def global_acc_pool_stage(node, graph) -> Stage:
    """Sum over a frame's vectors, one OBITS accumulator per channel; the sums leave while
    the last vector comes in."""
    ch, pe = int(node.attr("NumChannels")), int(node.attr("PE", 1))
    if ch % pe:
        raise StitchError(f"node {node.name}: PE={pe} does not divide NumChannels={ch}")
    it = int_type(node.attr("inputDataType"))
    ot = graph.dtypes[node.outputs[0]]
    nvec = prod(node.attr("numInputVectors", [1]))
    params = dict(CHANNELS=ch, PE=pe, IBITS=it.bits, ISIGNED=int(it.signed), OBITS=ot.bits,
                  OSIGNED=int(ot.signed), NVEC=nvec)
    frame_in = nvec * ch

    def needs(n: int) -> int:  # output k of a frame needs the frame up to the last vector's k
        if n <= 0:
            return 0
        frame, r = divmod(n - 1, ch)
        return frame * frame_in + (nvec - 1) * ch + r + 1

    # the registry's model is FINN's (nvec + 1) * NF; the module takes nvec * NF (its sums
    # leave during the last vector), so the model is an upper bound by NF cycles
    return Stage(node.name.lower(), "global_acc_pool", params, [Port(pe, it.bits, it.signed)],
                 [Port(pe, ot.bits, ot.signed)], (nvec + 1) * ch // pe, [node.name],
                 sources=("global_acc_pool.v",), latency=1, needs=needs,
                 in_tensors=[node.inputs[0]], out_tensors=[node.outputs[0]])


def _segment_geometry(node) -> tuple[int, int, int, int, int, int]:
    """(n tokens, segment length s, shift, segments m, channels, PE) of a segment op."""
    from netfabric.ops.defs.segments import geometry

    n, s, shift, m = geometry(node)
    ch, pe = int(node.attr("NumChannels")), int(node.attr("PE", 1))
    if ch % pe:
        raise StitchError(f"node {node.name}: PE={pe} does not divide NumChannels={ch}")
    return n, s, shift, m, ch, pe


def _segment_stage(node, graph, module: str, pad: bool) -> Stage:
    n, s, shift, m, ch, pe = _segment_geometry(node)
    dt = int_type(node.attr("inputDataType"))
    params = dict(CHANNELS=ch, PE=pe, BITS=dt.bits, NTOK=n, SEGLEN=s, SHIFT=shift,
                  SIGNED=int(dt.signed))
    tokens_in, tokens_out = (n, m * s) if pad else (m * s, n)

    def needs(k: int) -> int:  # elements read before the k-th output element is written
        if k <= 0:
            return 0
        frame, r = divmod(k - 1, tokens_out * ch)
        if pad:  # leading zeros need nothing, trailing zeros the whole frame
            got = min(max(r + 1 - shift * ch, 0), n * ch)
        else:  # the leading padded slots are read (and dropped) first
            got = shift * ch + r + 1
        return frame * tokens_in * ch + got

    port = Port(pe, dt.bits, dt.signed)
    return Stage(node.name.lower(), module, params, [port], [port], m * s * ch // pe, [node.name],
                 sources=(f"{module}.v",), latency=1, needs=needs,
                 in_tensors=[node.inputs[0]], out_tensors=[node.outputs[0]])


@register_piece("rtl", "SegmentPad")
def segment_pad_stage(node, graph) -> Stage:
    """Tokens -> segments: the padding slots are generated in the module (zeros)."""
    return _segment_stage(node, graph, "segment_pad", pad=True)


@register_piece("rtl", "SegmentUnpad")
def segment_unpad_stage(node, graph) -> Stage:
    """Segments -> tokens: the padding slots are read and dropped."""
    return _segment_stage(node, graph, "segment_unpad", pad=False)


@register_piece("rtl", "SegmentAttention")
def segment_attention_stage(node, graph) -> Stage:
    """One segment_attention.v: a segment buffer, q.k / p.v on gcd(PE, HeadDim) multipliers,
    the score and context thresholds (thresh_search.v), the exp LUT (a ROM), one divider."""
    from netfabric.ops.defs.segments import attention_cycles, attention_row_cycles
    from netfabric.sim import golden

    n, s, shift, m, ch, pe = _segment_geometry(node)
    heads, dh = int(node.attr("Heads")), int(node.attr("HeadDim"))
    d = heads * dh
    if ch != 3 * d:
        raise StitchError(f"node {node.name}: NumChannels={ch} is not 3 * Heads * HeadDim = {3 * d}")
    it, ot = int_type(node.attr("inputDataType")), int_type(node.attr("outputDataType"))
    st, pt = int_type(node.attr("scoreDataType")), int_type(node.attr("probDataType"))
    if not st.signed or pt.signed:
        raise StitchError(f"node {node.name}: needs signed scores and unsigned probabilities "
                          f"(got {st.name}, {pt.name})")
    ebits, rbits, pfrac = (int(node.attr(a)) for a in ("ExpBits", "RecipBits", "ProbFracBits"))
    # exact accumulator ranges (the declared acc types are not needed): q.k and p.v
    mag = max(-it.min, it.max)
    qk_t = int_type(f"INT{(dh * mag * mag).bit_length() + 1}")
    av_t = int_type(f"INT{(s * pt.max * mag).bit_length() + 1}")
    name = node.name.lower()
    mem: dict = {}
    tbits = {}
    for key, table, acc_t, obits in (("SCORE_FILE", node.inputs[1], qk_t, st.bits),
                                     ("CTX_FILE", node.inputs[3], av_t, ot.bits)):
        if np.asarray(graph.params[table]).shape[0] != 1:
            raise StitchError(f"node {node.name}: threshold table {table} has one row per channel; "
                              "the RTL takes one table for all (shape [1, K])")
        thr, tb = _thresholds(node, graph, table, 1, acc_t, obits)
        prefix = f"{name}_{'s' if key == 'SCORE_FILE' else 'c'}t"
        files = [p.name for p in golden.threshold_file_names(prefix, obits, len(thr))]
        mem[key] = (files, lambda dd, prefix=prefix, thr=thr, obits=obits, tb=tb:
                    golden.write_thresholds(dd / prefix, thr, 1, obits, tb), prefix)
        tbits[key] = tb
    lut = np.asarray(graph.params[node.inputs[2]], dtype=np.float64).reshape(-1)
    if not np.array_equal(lut, np.round(lut)) or lut.min() < 0 or lut.max() >= 2**ebits:
        raise StitchError(f"node {node.name}: the exp LUT must hold UINT{ebits} integers")
    lut_words = [int(v) for v in lut]
    fname = f"{name}_lut.hex"
    mem["LUT_FILE"] = ([fname], lambda dd: golden.write_hex(dd / fname, lut_words, ebits))
    ope = math.gcd(pe, d)
    params = dict(CHANNELS=ch, PE=pe, IBITS=it.bits, ISIGNED=int(it.signed), HEADS=heads,
                  HEADDIM=dh, NTOK=n, SEGLEN=s, SHIFT=shift, OPE=ope, QBITS=tbits["SCORE_FILE"],
                  SBITS=st.bits, SCORE_BIAS=int(node.attr("ScoreActVal")), EBITS=ebits,
                  LUTN=len(lut_words), RBITS=rbits, PFRAC=pfrac, PBITS=pt.bits,
                  ABITS=tbits["CTX_FILE"], OBITS=ot.bits, OSIGNED=int(ot.signed),
                  CTX_BIAS=int(node.attr("CtxActVal")))
    seg_in, seg_out = s * ch, s * d

    def needs(k: int) -> int:  # a segment's outputs need the whole segment
        if k <= 0:
            return 0
        frame, r = divmod(k - 1, m * seg_out)
        return frame * m * seg_in + (r // seg_out + 1) * seg_in

    lanes = math.gcd(pe, dh)  # segment_attention.v's lanes: a chunk lies in one beat
    row = attention_row_cycles(s, dh, lanes, rbits, st.bits)
    return Stage(name, "segment_attention", params, [Port(pe, it.bits, it.signed)],
                 [Port(ope, ot.bits, ot.signed)], attention_cycles(node, graph), [node.name], mem,
                 ("segment_attention.v",), latency=heads * row + 4 * ot.bits + 4, needs=needs,
                 in_tensors=[node.inputs[0]], out_tensors=[node.outputs[0]])


# ---------------------------------------------------------------------------------------------
# stream plumbing: placed by the stitcher itself


@register_piece("rtl", "StreamingFIFO", placed_by_stitcher=True)
def streaming_fifo_stage(node, graph) -> Stage:
    raise StitchError(f"node {node.name}: the stitcher places its own FIFOs (internal error)")


@register_piece("rtl", "StreamingDataWidthConverter", placed_by_stitcher=True)
def streaming_dwc_stage(node, graph) -> Stage:
    raise StitchError(f"node {node.name}: the stitcher places its own width converters (internal error)")


def fifo_stage(name: str, port: Port, depth: int, why: str = "") -> Stage:
    """A stream FIFO of ``depth`` beats (fifo.v: distributed below 64 beats, block RAM from
    64, where the latency grows from 1 to 4 cycles)."""
    return Stage(name, "fifo", dict(WIDTH=port.elems * port.bits, DEPTH=depth), [port], [port], 0, [],
                 sources=("fifo.v",), latency=4 if depth >= 64 else 1, why=why)


def dwc_stage(name: str, src: Port, dst_elems: int, where: str) -> Stage:
    a, b = src.elems, dst_elems
    if max(a, b) % min(a, b):
        raise StitchError(f"{where}: {a} and {b} elements per beat do not divide")
    return Stage(name, "dwc", dict(IN_WIDTH=a, OUT_WIDTH=b, BITS=src.bits), [src],
                 [Port(b, src.bits, src.signed)], 0, [], sources=("dwc.v",),
                 latency=0 if a == b else (1 if b > a else 2))
