"""The segmented-attention transformer in RTL: the shipped INT8 model's HW-layer graph (a DAG
with four residual fork/join pairs, SegmentPad / SegmentAttention / SegmentUnpad between them)
stitched into one accelerator and simulated cycle by cycle (Verilator), bit-exact with the CPU
engine on MNIST test images under random source idles and sink backpressure.

The graph is compiled with a throughput target (``target_fps``) so that every layer, the
attention included, is folded with PE > 1 and a frame takes ~50K cycles instead of ~600K at
PE = SIMD = 1; the measured cycles per frame are checked against the registry's cost model.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from netfabric import flow
from netfabric.hls.frontend import CompileConfig
from netfabric.hls.transformer import compile_transformer
from netfabric.host.cpu_engine import CpuEngine
from netfabric.host.hwgraph import load_hwgraph
from netfabric.hw.stitch import connect, plan_stages
from netfabric.ops import registry

TRANSFORMER = flow.PRETRAINED / "transformer_int8.pt"
TARGET_FPS = 2000  # at 100 MHz: <= 50_000 cycles per frame

pytestmark = pytest.mark.sim


def _verilator_or_skip():
    from netfabric.sim.runner import SimulatorNotFound, verilator_env

    try:
        verilator_env()
    except SimulatorNotFound as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def tf_folded(tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    return compile_transformer(TRANSFORMER, tmp_path_factory.mktemp("tf_rtl"),
                               CompileConfig(target_fps=TARGET_FPS, label_select=False))


@pytest.fixture(scope="module")
def tf_sim(tf_folded, tmp_path_factory):
    _verilator_or_skip()
    from netfabric.host.sim_backend import SimBackend

    return SimBackend(tf_folded, simulator="verilator",
                      project_dir=tmp_path_factory.mktemp("tf_rtl_proj"), src_idle=0.3,
                      sink_stall=0.3, seed=7)


def test_transformer_stitches_as_a_dag(tf_folded):
    """Every layer has its RTL; each residual join's skip path gets a FIFO deep enough to
    hold the tokens the attention (a whole segment) or the MLP holds back."""
    graph = load_hwgraph(tf_folded)
    stages = plan_stages(graph)
    assert {st.module for st in stages} >= {"segment_pad", "segment_attention", "segment_unpad",
                                            "dup_streams", "eltwise_add", "global_acc_pool"}
    for st, node in zip(stages, graph.nodes, strict=True):
        assert st.ideal_cycles == registry.get(node.op_type).cycles(node, graph), node.name
    _, edges, _, _ = connect(graph, stages)
    attn = [n for n in graph.nodes if n.op_type == "SegmentAttention"]
    assert all(n.attr("PE") > 1 for n in attn)
    s, d = attn[0].attr("SegLen"), graph.shapes[attn[0].outputs[0]][-1]
    skips = {e.tensor: e.fifo.params["DEPTH"] * e.fifo.ins[0].elems
             for e in edges if e.fifo is not None and e.fifo.why.startswith("fork")}
    assert len(skips) == 4
    # shift 0: the first output token needs the first segment (s tokens); shift s/2: the
    # second segment's first real token needs s + s/2 tokens, of which s/2 are out already
    assert sorted(skips.values())[-1] >= s * d


def test_transformer_rtl_bit_exact_with_idles_and_backpressure(tf_folded, tf_sim, mnist_test):
    """50 MNIST test images through the simulated accelerator == the CPU engine."""
    x = mnist_test[0][:50, None]
    got = tf_sim.run(x)
    want = CpuEngine(tf_folded).run(x)
    assert np.array_equal(np.asarray(got).reshape(want.shape), want)
    m = tf_sim.last_metrics
    assert m["frames"] == 50
    # the attention (PE=4) is the bottleneck and the registry's model of it is exact: even
    # with 30% source idles and sink stalls a frame takes its modelled cycles (measured within
    # 0.1 cycle of the model; tests/test_attention_cycles.py checks the model exactly)
    assert m["ideal"] == tf_sim.manifest["ideal_cycles_per_frame"]
    assert m["interval"] <= 1.02 * m["ideal"], m


@pytest.mark.slow
def test_transformer_rtl_bit_exact_on_1000_images(tf_folded, tf_sim, mnist_test):
    """1000 MNIST test images through the compiled harness (about 50M simulated cycles)."""
    x = mnist_test[0][:1000, None]
    want = CpuEngine(tf_folded).run(x)
    got = tf_sim.run(x)
    assert np.array_equal(np.asarray(got).reshape(want.shape), want)
    assert tf_sim.last_metrics["interval"] <= 1.02 * tf_sim.manifest["ideal_cycles_per_frame"]


@pytest.mark.slow
def test_transformer_rtl_under_cocotb(tf_folded, mnist_test, tmp_path):
    """The same accelerator under the cocotb testbench (Verilator), 2 images."""
    _verilator_or_skip()
    from netfabric.host.sim_backend import SimBackend

    sim = SimBackend(tf_folded, simulator="verilator", engine="cocotb", project_dir=tmp_path,
                     src_idle=0.3, sink_stall=0.3, seed=11)
    x = mnist_test[0][100:102, None]
    want = CpuEngine(tf_folded).run(x)
    assert np.array_equal(np.asarray(sim.run(x)).reshape(want.shape), want)


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="Icarus Verilog not installed")
def test_segment_ops_conformance_is_registered():
    for op in ("SegmentPad", "SegmentAttention", "SegmentUnpad", "GlobalAccPool",
               "ElementwiseAdd", "DuplicateStreams"):
        assert registry.get(op, ("rtl",)).has("rtl"), op
