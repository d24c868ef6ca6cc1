"""Sliding windows: FINN's ConvolutionInputGenerator (im2col) and Pool (adapters).

ConvolutionInputGenerator turns an NHWC feature map into one row per output pixel holding its
K x K window, ordered (ky, kx, c) with c fastest. Pool reduces such windows; netfabric runs the
``MaxPool`` function (the window generator before it is fused into one max-pool in RTL).
"""

from __future__ import annotations

import numpy as np

from netfabric.errors import UnsupportedOpError
from netfabric.ops.graphbuild import HWGraphBuilder
from netfabric.ops.registry import OpDef, define_op

from ._common import check_width, divisors, int_type, pick, random_type


def im2col_indices(h: int, w: int, c: int, k, s, d=(1, 1)) -> np.ndarray:
    """Flat input index of every (oy, ox, window element); window order (ky, kx, c)."""
    oh = (h - d[0] * (k[0] - 1) - 1) // s[0] + 1
    ow = (w - d[1] * (k[1] - 1) - 1) // s[1] + 1
    oy, ox, ky, kx, ch = np.meshgrid(np.arange(oh), np.arange(ow), np.arange(k[0]),
                                     np.arange(k[1]), np.arange(c), indexing="ij")
    flat = ((oy * s[0] + ky * d[0]) * w + (ox * s[1] + kx * d[1])) * c + ch
    return flat.reshape(oh, ow, k[0] * k[1] * c).astype(np.int64)


def _geometry(node):
    h, w = node.attr("IFMDim")
    return (int(h), int(w), int(node.attr("IFMChannels")), tuple(node.attr("ConvKernelDim")),
            tuple(node.attr("Stride")), tuple(node.attr("Dilation", [1, 1])))


def swg_semantics(node, streams, graph):
    h, w, c, k, s, d = _geometry(node)
    x = streams[0].reshape(streams[0].shape[0], h * w * c)
    return [x[:, im2col_indices(h, w, c, k, s, d)]]


def parallel_window(node) -> bool:
    """FINN's ``parallel_window`` (set by SetFolding on a window generator whose SIMD is
    maxed out and still too slow): a whole K x K x SIMD window per output beat."""
    return bool(int(node.attr("parallel_window", 0) or 0))


def swg_cycles(node, graph) -> int:
    """Cycles per frame. Default style: the RTL window generator emits SIMD channels a cycle
    and reads each input once, max(windows x window beats, input beats). With
    ``parallel_window`` a window a cycle, input-bound: FINN's own model of that style
    (``ConvolutionInputGenerator_rtl.get_exp_cycles``), input beats + 2; the RTL takes the
    input beats alone. (FINN's model of the default style differs: see bench/RESULTS.md.)"""
    h, w, c, k, s, d = _geometry(node)
    cf = check_width(node, "SIMD", c, int(node.attr("SIMD")))
    if parallel_window(node):
        return h * w * cf + 2
    oh, ow = (h - d[0] * (k[0] - 1) - 1) // s[0] + 1, (w - d[1] * (k[1] - 1) - 1) // s[1] + 1
    return max(oh * ow * k[0] * k[1] * cf, h * w * cf)


def swg_resources(node, graph) -> dict:
    h, w, c, k, s, d = _geometry(node)
    bits = int_type(node.attr("inputDataType")).bits
    if parallel_window(node):  # K-1 line buffers of W-K pixels + the K x K window registers
        return {"buffer_bits": (k[0] - 1) * (w - k[1]) * c * bits,
                "register_bits": k[0] * k[1] * c * bits}
    return {"buffer_bits": k[0] * w * c * bits}  # K rows of the input in the line buffer


def _swg_node(b, x, h, w, c, k, s, simd, dtype, depthwise, out, parallel=False):
    oh, ow = (h - k) // s + 1, (w - k) // s + 1
    extra = {"parallel_window": 1} if parallel else {}
    b.node("ConvolutionInputGenerator", [x], [(out, [1, oh, ow, k * k * c], dtype)],
           name=f"swg_{out}", ConvKernelDim=[k, k], IFMChannels=c, IFMDim=[h, w], OFMDim=[oh, ow],
           SIMD=simd, Stride=[s, s], Dilation=[1, 1], inputDataType=dtype, outputDataType=dtype,
           depthwise=int(depthwise), **extra)
    return oh, ow


def swg_sample(rng: np.random.Generator):
    """Two window generators in a chain, one of each style (random order), so every sample
    exercises both: SIMD channels a beat, and FINN's ``parallel_window`` (SIMD = channels,
    a whole window a beat). The second one slides a 1x1 or 2x2 kernel over the first's
    windows (K*K*C channels)."""
    c, k = pick(rng, [1, 2, 3, 4]), pick(rng, [1, 2, 3])
    s = pick(rng, [1, 2] if k > 1 else [1])
    k2 = pick(rng, [1, 2])
    lo = max(k + 1, k + (k2 - 1) * s)  # the first one's output is at least k2 x k2
    h, w = int(rng.integers(lo, lo + 4)), int(rng.integers(lo, lo + 4))
    dtype = random_type(rng)
    first_parallel = bool(pick(rng, [0, 1]))
    b = HWGraphBuilder("swg_sample")
    x = b.input("x", [1, h, w, c], dtype)
    simd = c if first_parallel else pick(rng, divisors(c))
    oh, ow = _swg_node(b, x, h, w, c, k, s, simd, dtype, False, "win", first_parallel)
    c2 = k * k * c  # default style: at most 4 beats a pixel (cocotb time)
    simd2 = pick(rng, [d for d in divisors(c2) if 4 * d >= c2]) if first_parallel else c2
    _swg_node(b, "win", oh, ow, c2, k2, 1, simd2, dtype, False, "y", not first_parallel)
    b.output("y")
    return b.build()


def pool_semantics(node, streams, graph):
    if node.attr("Function") != "MaxPool":
        raise UnsupportedOpError(f"node {node.name}: Pool function {node.attr('Function')} "
                                 "is not supported yet (MaxPool is)")
    k = node.attr("KernelSize")
    ch = int(node.attr("Channels"))
    oh, ow = node.attr("OutImgDims")
    x = streams[0].reshape(-1, oh, ow, int(np.prod(k)), ch)
    return [x.max(axis=3)]


def pool_cycles(node, graph) -> int:
    k = node.attr("KernelSize")
    oh, ow = node.attr("OutImgDims")
    ch = int(node.attr("Channels"))
    return oh * ow * int(np.prod(k)) * check_width(node, "PE", ch, int(node.attr("PE")))


def pool_resources(node, graph) -> dict:
    return {"compare": int(node.attr("PE"))}


def pool_sample(rng: np.random.Generator):
    """A depthwise window generator (kernel == stride) feeding a max pool: the pattern the
    front end produces for MaxPool2d, and the unit the RTL implements."""
    c, k = pick(rng, [1, 2, 4]), pick(rng, [2, 3])
    oh, ow = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    h, w = oh * k, ow * k
    dtype = random_type(rng)
    pe = pick(rng, divisors(c))
    b = HWGraphBuilder("pool_sample")
    x = b.input("x", [1, h, w, c], dtype)
    _swg_node(b, x, h, w, c, k, k, pe, dtype, True, "win")
    b.node("Pool", ["win"], [("y", [1, oh, ow, c], dtype)], name="pool", Channels=c, PE=pe,
           KernelSize=[k, k], Function="MaxPool", OutImgDims=[oh, ow], InputDataType=dtype,
           OutputDataType=dtype, BatchSize=1)
    b.output("y")
    return b.build()


define_op(OpDef(
    "ConvolutionInputGenerator", "finn", swg_semantics, swg_cycles, swg_resources, swg_sample,
    finn_class="finn.custom_op.fpgadataflow.convolutioninputgenerator.ConvolutionInputGenerator",
    doc="sliding-window generator (im2col), windows ordered (ky, kx, c)"))
define_op(OpDef(
    "Pool", "finn", pool_semantics, pool_cycles, pool_resources, pool_sample,
    finn_class="finn.custom_op.fpgadataflow.pool.Pool",
    doc="max over each window (Function=MaxPool)"))
