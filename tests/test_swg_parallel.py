"""FINN's ``parallel_window`` window generators in RTL (swg.v PARALLEL_WINDOW=1).

FINN's SetFolding sets ``parallel_window`` on a window generator whose SIMD is maxed out and
still too slow (the shipped CNN's first two: 1 and 16 channels): it then emits a whole window
per cycle and takes one input pixel per cycle. A reduced CNN folded that way (the shipped
CNN's first two conv layers on a 12x12 image) is stitched, simulated (Verilator compiled
harness), checked bit-exact against the CPU engine and its measured cycles per frame held
against FINN's own estimate for the same folding.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.sim

IMG = 12  # input image (1 channel, UINT8)


def reduced_cnn_graph(path: Path, parallel: bool = True) -> Path:
    """conv 3x3 1->8 (UINT4 activations) -> conv 3x3 8->16 (accumulators out), each a window
    generator + MVAU, folded like FINN folds the shipped CNN's first layers: window generators
    at SIMD = channels with parallel_window, MVAU 0 reading a whole window a beat (SIMD=9,
    PE=2: NF=4), MVAU 1 the bottleneck (SIMD=8 of 72, PE=16: 9 cycles a window), so a width
    converter (72 -> 8) follows the second window generator."""
    from netfabric.ops.defs._common import sorted_thresholds
    from netfabric.ops.graphbuild import HWGraphBuilder

    rng = np.random.default_rng(5)
    b = HWGraphBuilder("reduced_cnn")
    b.input("x", [1, IMG, IMG, 1], "UINT8")
    layers = [  # (channels in, channels out, MVAU SIMD, PE, activation)
        (1, 8, 9, 2, "UINT4"), (8, 16, 8, 16, None)]
    src, h, dtype = "x", IMG, "UINT8"
    for i, (cin, cout, simd, pe, act) in enumerate(layers):
        oh = h - 2
        win = f"win{i}"
        b.node("ConvolutionInputGenerator", [src], [(win, [1, oh, oh, 9 * cin], dtype)],
               name=f"ConvolutionInputGenerator_{i}", ConvKernelDim=[3, 3], IFMChannels=cin,
               IFMDim=[h, h], OFMDim=[oh, oh], SIMD=cin, Stride=[1, 1], Dilation=[1, 1],
               inputDataType=dtype, outputDataType=dtype, depthwise=0,
               parallel_window=int(parallel))
        mw = 9 * cin
        w = b.param(f"w{i}", rng.integers(-128, 128, size=(mw, cout)), "INT8")
        bound = mw * 255 * 128
        attrs = dict(MW=mw, MH=cout, SIMD=simd, PE=pe, inputDataType=dtype,
                     weightDataType="INT8", accDataType=f"INT{bound.bit_length() + 1}",
                     binaryXnorMode=0, numInputVectors=[1, oh, oh])
        inputs = [win, w]
        if act:
            inputs.append(b.param(f"t{i}", sorted_thresholds(rng, cout, 15, -bound // 64,
                                                             bound // 64)))
            attrs.update(outputDataType=act, ActVal=0, noActivation=0)
            otype = act
        else:
            otype = attrs["accDataType"]
            attrs.update(outputDataType=otype, ActVal=0, noActivation=1)
        out = f"y{i}"
        b.node("MVAU", inputs, [(out, [1, oh, oh, cout], otype)], name=f"MVAU_{i}", **attrs)
        src, h, dtype = out, oh, otype
    b.output(src)
    return b.save(path)


def finn_estimate(path: Path) -> dict[str, int]:
    """FINN's get_exp_cycles per node: its window generators' model lives in the RTL class
    (the generic one returns 0), as in the compile's estimates.json."""
    from onnx import helper
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.custom_op.registry import getCustomOp

    from netfabric.hls.finn_env import ensure_finn

    ensure_finn()
    out = {}
    for node in ModelWrapper(str(path)).graph.node:
        if node.op_type == "ConvolutionInputGenerator":
            rtl = helper.make_node("ConvolutionInputGenerator_rtl", list(node.input),
                                   list(node.output), name=node.name,
                                   domain="finn.custom_op.fpgadataflow.rtl")
            rtl.attribute.extend(node.attribute)
            node = rtl
        out[node.name] = int(getCustomOp(node).get_exp_cycles())
    return out


def registry_cycles(path: Path) -> dict[str, int]:
    from netfabric.host.hwgraph import load_hwgraph
    from netfabric.ops import registry

    graph = load_hwgraph(path)
    return {n.name: int(registry.get(n.op_type).cycles(n, graph)) for n in graph.nodes}


def test_cost_model_of_the_reduced_cnn(tmp_path):
    """The registry's window generators equal FINN's estimate in the parallel style; without
    it the first one (9 beats a window) would be the bottleneck."""
    par = registry_cycles(reduced_cnn_graph(tmp_path / "p.onnx"))
    finn = finn_estimate(tmp_path / "p.onnx")
    assert par == finn
    assert max(par.values()) == par["MVAU_1"] == 64 * 9
    seq = registry_cycles(reduced_cnn_graph(tmp_path / "s.onnx", parallel=False))
    assert seq["ConvolutionInputGenerator_0"] == 100 * 9 > max(finn.values())


def test_reduced_cnn_runs_at_finn_estimate_bit_exact(tmp_path):
    from netfabric.host.cpu_engine import CpuEngine
    from netfabric.host.sim_backend import SimBackend

    graph = reduced_cnn_graph(tmp_path / "cnn.onnx")
    finn = max(finn_estimate(graph).values())
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, size=(12, IMG, IMG, 1))
    want = CpuEngine(graph).run(x)
    sim = SimBackend(graph, project_dir=tmp_path / "rtl")
    got = sim.run(x)
    assert np.array_equal(got, np.asarray(want).reshape(got.shape))
    interval = sim.last_metrics["interval"]
    ideal = sim.manifest["ideal_cycles_per_frame"]
    print(f"reduced CNN: {interval:.0f} cycles/frame measured, ideal {ideal}, FINN estimate {finn}")
    assert ideal == finn
    assert interval <= finn
    # the same build under random source idles and sink backpressure
    stalled = SimBackend(graph, project_dir=tmp_path / "rtl", src_idle=0.3, sink_stall=0.4, seed=2)
    got = stalled.run(x[:3])
    assert np.array_equal(got, np.asarray(want[:3]).reshape(got.shape))
