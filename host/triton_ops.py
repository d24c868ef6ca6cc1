"""The ``triton`` backend's piece of every registered op (``netfabric ops`` lists them).

A piece is a *prepare* function ``fn(node, graph, device) -> run`` called once per node when a
``TritonBackend`` is built: it checks the node, uploads its weights / thresholds / index tables
to the device and returns ``run(streams) -> outputs``, which launches the op's kernel on the
node's stream inputs (torch tensors, batch first, graph layout). The kernels live in
``triton_kernels/``, one module per job; torch and triton are imported when a piece is
prepared, so listing the registry stays cheap. Without triton this module does not import and
the registry's triton column stays empty.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

import numpy as np

from netfabric.ops.registry import register_piece

from .hwgraph import GraphError, HWGraph, HWNode, IntType

if importlib.util.find_spec("triton") is None or importlib.util.find_spec("torch") is None:
    raise ImportError("the triton backend needs torch and triton: pip install 'netfabric[gpu]'")

Run = Callable[[list], list]


def __getattr__(name: str):
    """The kernels benchmarks call directly, imported on first use (they import torch)."""
    if name == "mvau_int8":
        from .triton_kernels.mvau import mvau_int8

        return mvau_int8
    if name in ("segment_attention", "prepare_segment_attention"):
        from .triton_kernels import attention

        return getattr(attention, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _ints(graph: HWGraph, name: str, what: str) -> np.ndarray:
    value = np.asarray(graph.params[name], dtype=np.float64)
    if not np.array_equal(value, np.round(value)):
        raise GraphError(f"node {what}: {name} holds non-integer values")
    return value.astype(np.int64)


def _out_dtype(graph: HWGraph, name: str):
    from .triton_kernels.common import type_dtype

    return type_dtype(graph.dtypes.get(name))


def _frame_shape(graph: HWGraph, name: str) -> list[int]:
    return list(graph.shapes[name][1:])


@register_piece("triton", "MVAU", kind="prepare")
def _mvau(node: HWNode, graph: HWGraph, device) -> Run:
    """Tiled int8 tl.dot + fused thresholds. XNOR (BINARY bits for -1/+1): popcount =
    x . (2w - 1) + MW - colsum(w); BIPOLAR x BIPOLAR: (x . w + MW) / 2, as FINN executes both."""
    from netfabric.ops.defs.mvau import bipolar_pair

    from .triton_kernels import mvau as k

    w = _ints(graph, node.inputs[1], node.name)  # [MW, MH]
    mw = w.shape[0]
    itype = IntType(node.attr("inputDataType"))
    bias, halve, x_range = None, False, (itype.min, itype.max)
    if node.attr("binaryXnorMode", 0):
        if (node.attr("inputDataType"), node.attr("weightDataType")) != ("BINARY", "BINARY"):
            raise GraphError(f"node {node.name}: binary XNOR MVAUs need BINARY inputs and weights")
        bias, w, x_range = mw - w.sum(axis=0), 2 * w - 1, (0, 1)
    elif bipolar_pair(node):
        bias, halve, x_range = np.full(w.shape[1], mw), True, (-1, 1)
    thr = None if node.attr("noActivation", 0) else graph.params[node.inputs[2]]
    plan = k.make_plan(w, x_range, device, bias=bias, thresholds=thr,
                       act_val=int(node.attr("ActVal", 0)), halve=halve, what=f"node {node.name}")
    frame = _frame_shape(graph, node.outputs[0])

    def run(streams):
        x = streams[0]
        return [k.run_plan(x.reshape(-1, mw), plan).reshape(x.shape[0], *frame)]

    return run


@register_piece("triton", "Thresholding", kind="prepare")
def _thresholding(node: HWNode, graph: HWGraph, device) -> Run:
    import torch

    from .triton_kernels.common import fit_requant, threshold_table
    from .triton_kernels.threshold import thresholding as kernel

    channels = int(graph.shapes[node.outputs[0]][-1])
    in_type = graph.dtypes.get(node.inputs[0])
    dtype = _out_dtype(graph, node.inputs[0]) if in_type else torch.int64
    table, log2p = threshold_table(graph.params[node.inputs[1]], channels, dtype,
                                   f"node {node.name}")
    thr = torch.as_tensor(table, dtype=dtype, device=device)
    # a proof needs the input's range: only typed inputs get the requantizer
    rq = fit_requant(graph.params[node.inputs[1]], channels, in_type.min, in_type.max,
                     device) if in_type else None
    act, out_dtype = int(node.attr("ActVal", 0)), _out_dtype(graph, node.outputs[0])
    return lambda streams: [kernel(streams[0], thr, log2p, act, out_dtype, rq)]


def _index_piece(idx: np.ndarray, out_shape: list[int], device) -> Run:
    import torch

    from .triton_kernels.gather import gather_frames

    table = torch.as_tensor(np.asarray(idx, np.int64).reshape(-1), device=device)
    return lambda streams: [gather_frames(streams[0], table, out_shape)]


@register_piece("triton", "ConvolutionInputGenerator", kind="prepare")
def _swg(node: HWNode, graph: HWGraph, device) -> Run:
    """im2col as one gather, window order (ky, kx, c) like the op's semantics."""
    from netfabric.ops.defs.window import im2col_indices

    h, w = node.attr("IFMDim")
    idx = im2col_indices(int(h), int(w), int(node.attr("IFMChannels")),
                         tuple(node.attr("ConvKernelDim")), tuple(node.attr("Stride")),
                         tuple(node.attr("Dilation", [1, 1])))
    return _index_piece(idx, graph.shapes[node.outputs[0]], device)


@register_piece("triton", "Pool", kind="prepare")
def _pool(node: HWNode, graph: HWGraph, device) -> Run:
    from .triton_kernels.reduce import window_reduce

    if node.attr("Function") != "MaxPool":
        raise GraphError(f"node {node.name}: only MaxPool is supported, not {node.attr('Function')}")
    window = int(np.prod(node.attr("KernelSize")))
    ch = int(node.attr("Channels"))
    frame = _frame_shape(graph, node.outputs[0])
    out_dtype = _out_dtype(graph, node.outputs[0])

    def run(streams):
        x = streams[0]
        rows = x.numel() // (window * ch)
        return [window_reduce(x, rows, window, ch, True, out_dtype).reshape(x.shape[0], *frame)]

    return run


@register_piece("triton", "LabelSelect", kind="prepare")
def _label_select(node: HWNode, graph: HWGraph, device) -> Run:
    from .triton_kernels.label_select import top_k

    k = int(node.attr("K"))
    frame = _frame_shape(graph, node.outputs[0])
    return lambda streams: [top_k(streams[0], k).reshape(streams[0].shape[0], *frame)]


@register_piece("triton", "StreamingFIFO", kind="prepare")
@register_piece("triton", "StreamingDataWidthConverter", kind="prepare")
@register_piece("triton", "DuplicateStreams", kind="prepare")
def _identity(node: HWNode, graph: HWGraph, device) -> Run:
    """FIFOs, width converters and forks pass values unchanged (a fork: one alias per output)."""
    count = len(node.outputs)
    return lambda streams: [streams[0]] * count


@register_piece("triton", "ElementwiseAdd", kind="prepare")
def _elementwise_add(node: HWNode, graph: HWGraph, device) -> Run:
    """lhs + rhs; a constant operand (e.g. a position table) is broadcast to one frame once."""
    import torch

    from .triton_kernels.elementwise import add_frames

    frame = _frame_shape(graph, node.outputs[0])
    size = int(np.prod(frame))
    consts: dict[int, torch.Tensor] = {}
    for i, name in enumerate(node.inputs[:2]):
        if name in graph.params:
            value = _ints(graph, name, node.name)
            try:
                value = np.broadcast_to(value, [1, *frame] if value.ndim > len(frame) else frame)
            except ValueError:
                raise GraphError(f"node {node.name}: constant {name} {list(value.shape)} does "
                                 f"not broadcast to the frame {frame}") from None
            consts[i] = torch.as_tensor(value.reshape(-1).copy(), device=device)
        elif _frame_shape(graph, name) != frame:
            raise GraphError(f"node {node.name}: stream {name} {graph.shapes[name]} differs from "
                             f"the output frame {frame} (only constants broadcast)")
    if len(consts) == 2:
        raise GraphError(f"node {node.name}: both operands are constants")
    out_dtype = _out_dtype(graph, node.outputs[0])

    def run(streams):
        it = iter(streams)
        a, b = (consts[i] if i in consts else next(it) for i in range(2))
        batch = (b if 0 in consts else a).shape[0]
        out = add_frames(a, b, 0 in consts, 1 in consts, batch, size, out_dtype)
        return [out.reshape(batch, *frame)]

    return run


@register_piece("triton", "GlobalAccPool", kind="prepare")
def _global_acc_pool(node: HWNode, graph: HWGraph, device) -> Run:
    from .triton_kernels.reduce import window_reduce

    out_dtype = _out_dtype(graph, node.outputs[0])

    def run(streams):
        x = streams[0]
        n, h, w, c = x.shape
        return [window_reduce(x, n, h * w, c, False, out_dtype).reshape(n, 1, 1, c)]

    return run


def _segment_geometry(node: HWNode) -> tuple[int, int, int, int]:
    from netfabric.ops.defs.segments import geometry

    return geometry(node)


@register_piece("triton", "SegmentPad", kind="prepare")
def _segment_pad(node: HWNode, graph: HWGraph, device) -> Run:
    """[N, n, 1, C] -> [N, m, s, C]: a gather whose index is -1 (zero) on padded slots."""
    n, s, shift, m = _segment_geometry(node)
    c = int(node.attr("NumChannels"))
    token = np.arange(m * s)[:, None] - shift
    idx = np.where((token >= 0) & (token < n), token * c + np.arange(c), -1)
    return _index_piece(idx, [1, m, s, c], device)


@register_piece("triton", "SegmentUnpad", kind="prepare")
def _segment_unpad(node: HWNode, graph: HWGraph, device) -> Run:
    """[N, m, s, C] -> [N, n, 1, C]: a gather of the real tokens' rows."""
    n, s, shift, m = _segment_geometry(node)
    c = int(node.attr("NumChannels"))
    idx = (np.arange(n)[:, None] + shift) * c + np.arange(c)
    return _index_piece(idx, [1, n, 1, c], device)


@register_piece("triton", "SegmentAttention", kind="prepare")
def _segment_attention(node: HWNode, graph: HWGraph, device) -> Run:
    """One fused kernel per (frame x segment, head): q.k^T, thresholds, the integer softmax,
    p.v, thresholds; q/k/v are read in place from the [N, m, s, 3d] stream."""
    import torch

    from .triton_kernels import attention as k

    n, s, shift, m = _segment_geometry(node)
    heads, dh = int(node.attr("Heads")), int(node.attr("HeadDim"))
    d = heads * dh
    in_type = IntType(node.attr("inputDataType"))
    score_type, prob_type = IntType(node.attr("scoreDataType")), IntType(node.attr("probDataType"))
    if in_type.min < -128 or in_type.max > 127 or prob_type.signed:
        raise GraphError(f"node {node.name}: needs <= 8-bit signed q/k/v and unsigned "
                         f"probabilities, got {in_type.name} / {prob_type.name}")
    score_thr, lut, ctx_thr = (_ints(graph, node.inputs[i], node.name) for i in (1, 2, 3))
    if lut.shape != (1 << score_type.bits,):
        raise GraphError(f"node {node.name}: exp LUT has shape {list(lut.shape)}, expected "
                         f"[{1 << score_type.bits}] for {score_type.name} scores")
    plan = k.make_plan(s, dh, score_thr, int(node.attr("ScoreActVal")), lut, ctx_thr,
                       int(node.attr("CtxActVal")), int(node.attr("RecipBits")),
                       int(node.attr("ProbFracBits")), prob_type.bits, score_type.min, device,
                       what=f"node {node.name}")
    out_dtype = _out_dtype(graph, node.outputs[0])

    def run(streams):
        x = streams[0]
        batch = x.shape[0]
        qkv = x.reshape(batch, m * s, 3, heads, dh)
        out = torch.empty((batch, m, s, d), dtype=out_dtype, device=x.device)
        k.launch(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2], out.view(batch, m * s, heads, dh),
                 plan, s, m * s, shift, n)
        return [out]

    return run
