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


def swg_cycles(node, graph) -> int:
    """The RTL window generator emits SIMD channels a cycle and reads each input once:
    max(windows x window beats, input beats). FINN's estimate differs where it sets
    ``parallel_window`` (a whole window a cycle): see bench/RESULTS.md."""
    h, w, c, k, s, d = _geometry(node)
    cf = check_width(node, "SIMD", c, int(node.attr("SIMD")))
    oh, ow = (h - d[0] * (k[0] - 1) - 1) // s[0] + 1, (w - d[1] * (k[1] - 1) - 1) // s[1] + 1
    return max(oh * ow * k[0] * k[1] * cf, h * w * cf)


def swg_resources(node, graph) -> dict:
    h, w, c, k, s, d = _geometry(node)
    bits = int_type(node.attr("inputDataType")).bits
    return {"buffer_bits": k[0] * w * c * bits}  # K rows of the input in the line buffer


def _swg_node(b, x, h, w, c, k, s, simd, dtype, depthwise, out):
    oh, ow = (h - k) // s + 1, (w - k) // s + 1
    b.node("ConvolutionInputGenerator", [x], [(out, [1, oh, ow, k * k * c], dtype)],
           name=f"swg_{out}", ConvKernelDim=[k, k], IFMChannels=c, IFMDim=[h, w], OFMDim=[oh, ow],
           SIMD=simd, Stride=[s, s], Dilation=[1, 1], inputDataType=dtype, outputDataType=dtype,
           depthwise=int(depthwise))
    return oh, ow


def swg_sample(rng: np.random.Generator):
    c, k = pick(rng, [1, 2, 3, 4]), pick(rng, [1, 2, 3])
    s = pick(rng, [1, 2] if k > 1 else [1])
    h, w = int(rng.integers(k + 1, k + 5)), int(rng.integers(k + 1, k + 5))
    dtype = random_type(rng)
    b = HWGraphBuilder("swg_sample")
    x = b.input("x", [1, h, w, c], dtype)
    _swg_node(b, x, h, w, c, k, s, pick(rng, divisors(c)), dtype, False, "y")
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
