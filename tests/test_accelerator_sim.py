"""Stitched accelerators simulated cycle by cycle: bit-exact against the integer reference
(FINN's python execution of the HW-layer graph), with backpressure, at the ideal rate."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from qonnx.core.modelwrapper import ModelWrapper

from netfabric.hls.reference import reference_run
from netfabric.host.cpu_engine import CpuEngine
from netfabric.host.sim_backend import SimBackend

pytestmark = pytest.mark.sim


def _reference(graph, backend: SimBackend, x: np.ndarray) -> np.ndarray:
    xs = backend._checker.check_input(x).astype(np.float32)
    return reference_run(ModelWrapper(str(graph)), xs)[0].astype(np.int64)


@pytest.fixture(scope="module")
def mlp_logits_sim(mlp_qonnx, compile_helper, tmp_path_factory):
    """The shipped MLP folded for 100k frames/s at 100 MHz, integer logits out."""
    folder = tmp_path_factory.mktemp("mlp_rtl")
    graph = compile_helper(mlp_qonnx, folder / "hw", target_fps=100_000, label_select=False)
    return graph, SimBackend(graph, project_dir=folder / "rtl")


def test_stitched_mlp_is_bit_exact_on_200_images_at_the_ideal_rate(mlp_logits_sim, mnist_test):
    graph, sim = mlp_logits_sim
    x = mnist_test[0][:200, None]
    out = sim.run(x)
    assert np.array_equal(out, _reference(graph, sim, x).reshape(out.shape))
    ideal = sim.manifest["ideal_cycles_per_frame"]
    assert sim.last_metrics["interval"] <= 1.05 * ideal
    est = json.loads((graph.parent / "estimates.json").read_text())
    print(f"MLP: {sim.last_metrics['interval']:.0f} cycles/frame measured, ideal {ideal}, "
          f"FINN estimate {est['bottleneck_cycles']}")


def test_stitched_mlp_under_backpressure(mlp_logits_sim, mnist_test):
    graph, _ = mlp_logits_sim
    sim = SimBackend(graph, project_dir=mlp_logits_sim[1].project, src_idle=0.3, sink_stall=0.5,
                     seed=7)
    x = mnist_test[0][200:240, None]
    out = sim.run(x)
    assert np.array_equal(out, _reference(graph, sim, x).reshape(out.shape))


def test_stitched_mlp_with_label_select(mlp_graph, mnist_test, tmp_path):
    sim = SimBackend(mlp_graph, project_dir=tmp_path / "rtl")
    x, y = mnist_test[0][:50, None], mnist_test[1][:50]
    labels = sim.run(x)
    assert np.array_equal(labels, _reference(mlp_graph, sim, x).reshape(labels.shape))
    assert (labels.reshape(-1) == y).mean() >= 0.94


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="Icarus Verilog not installed")
def test_stitched_mlp_on_icarus(mlp_logits_sim, mnist_test):
    graph, verilator_sim = mlp_logits_sim
    sim = SimBackend(graph, simulator="icarus", project_dir=verilator_sim.project)
    x = mnist_test[0][:4, None]
    out = sim.run(x)
    assert np.array_equal(out, _reference(graph, sim, x).reshape(out.shape))


@pytest.mark.slow
def test_stitched_cnn_is_bit_exact_on_50_images_within_finn_estimate(tmp_path, mnist_test, compile_helper):
    from netfabric import flow

    qonnx = flow.export_checkpoint(flow.PRETRAINED / "cnn_w8a8.pt", tmp_path / "cnn.onnx")
    graph = compile_helper(qonnx, tmp_path / "hw", target_fps=20_000, label_select=False)
    sim = SimBackend(graph, project_dir=tmp_path / "rtl")
    x = mnist_test[0][:50, None]
    out = sim.run(x)
    assert np.array_equal(out, _reference(graph, sim, x).reshape(out.shape))
    est = json.loads((graph.parent / "estimates.json").read_text())
    interval = sim.last_metrics["interval"]
    print(f"CNN: {interval:.0f} cycles/frame measured, ideal "
          f"{sim.manifest['ideal_cycles_per_frame']}, FINN estimate {est['finn_bottleneck_cycles']}")
    # FINN folds the first window generators with parallel_window (a window a cycle) and the
    # RTL follows; without it the first one (9 beats a window, 6084 cycles) was the bottleneck
    assert interval <= est["finn_bottleneck_cycles"]


# ---------------------------------------------------------------------------------------------
# hand-built graphs: a residual block (fork + join), UINT8 thresholds, a constant add; checked
# against the CPU engine (netfabric's onnxruntime lowering of the same graph)


@pytest.fixture(scope="module")
def residual(tmp_path_factory):
    from test_stitch import residual_block_graph

    folder = tmp_path_factory.mktemp("residual")
    graph = residual_block_graph(folder / "res.onnx")
    x = np.random.default_rng(1).integers(0, 16, size=(6, 7, 32))
    return graph, x, CpuEngine(graph).run(x)


@pytest.mark.parametrize("simulator", ["icarus", "verilator"])
def test_residual_block_bit_exact_under_stalls(residual, simulator, tmp_path):
    """MVAU -> fork -> (MVAU) + (skip) -> add -> thresholds, 6 frames of 7 tokens, random
    source idles and sink backpressure."""
    if simulator == "icarus" and shutil.which("iverilog") is None:
        pytest.skip("Icarus Verilog not installed")
    graph, x, expected = residual
    sim = SimBackend(graph, simulator=simulator, project_dir=tmp_path / "rtl", src_idle=0.3,
                     sink_stall=0.5, seed=3)
    assert np.array_equal(sim.run(x), expected)


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="Icarus Verilog not installed")
def test_residual_block_runs_at_the_bottleneck_rate(residual, tmp_path):
    """Without stalls the block runs at its slowest layer (each MVAU: 7 tokens x 8 x 8 =
    448 cycles per frame): the analysed skip FIFO covers what the branch holds."""
    from test_stitch import residual_bottleneck_cycles

    graph, x, expected = residual
    sim = SimBackend(graph, simulator="icarus", project_dir=tmp_path / "rtl")
    assert np.array_equal(sim.run(x), expected)
    bottleneck = residual_bottleneck_cycles(graph)
    print(f"residual block: {sim.last_metrics['interval']:.1f} cycles/frame, bottleneck {bottleneck}")
    assert bottleneck == 448
    assert bottleneck <= sim.last_metrics["interval"] <= 1.05 * bottleneck


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="Icarus Verilog not installed")
def test_residual_block_with_a_shallow_skip_fifo_deadlocks(residual, tmp_path):
    """The analysed skip depth (32 beats) is needed: at 8 beats (16 elements) the skip path
    cannot hold the 32-element vector the branch MVAU reads before its first output, the fork
    stops, the branch starves, and nothing comes out. (At 16 beats it runs, but at 609
    instead of 448 cycles/frame: the latency term of the rule.)"""
    from netfabric.errors import SimulationError

    graph, x, _ = residual
    sim = SimBackend(graph, simulator="icarus", project_dir=tmp_path / "rtl",
                     fifo_depths={"a1": 8}, stall_cycles=3000)
    with pytest.raises(SimulationError, match="stalled: no output beat for 3000 cycles after 0 of"):
        sim.run(x[:2])


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="Icarus Verilog not installed")
def test_uint8_thresholds_bit_exact(tmp_path):
    """UINT8 inputs up to 255 against thresholds 255, 256 and 300 (clipped to 256)."""
    from test_stitch import uint8_threshold_graph

    graph = uint8_threshold_graph(tmp_path / "t.onnx")
    x = np.random.default_rng(2).integers(0, 256, size=(5, 4, 8))
    x[0, 0, :] = 255
    x[1, 0, :] = 0
    sim = SimBackend(graph, simulator="icarus", project_dir=tmp_path / "rtl", src_idle=0.2,
                     sink_stall=0.3)
    out = sim.run(x)
    assert np.array_equal(out, CpuEngine(graph).run(x))
    assert out[0, 0, 0] == 0 and out[1, 0, 1] == 15  # 256 is never reached, 0 always is


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="Icarus Verilog not installed")
def test_constant_add_bit_exact(tmp_path):
    """A stream plus a constant table (position-embedding style): the ROM replays per frame."""
    from test_stitch import const_add_graph

    graph = const_add_graph(tmp_path / "c.onnx")
    x = np.random.default_rng(4).integers(0, 256, size=(4, 7, 8))
    sim = SimBackend(graph, simulator="icarus", project_dir=tmp_path / "rtl", src_idle=0.3,
                     sink_stall=0.4)
    assert np.array_equal(sim.run(x), CpuEngine(graph).run(x))


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="Icarus Verilog not installed")
def test_binary_xnor_layers_bit_exact(tmp_path):
    """Two XNOR-popcount MVAUs (FINN's binaryXnorMode) with full agreement (popcount = MW)
    against FINN's narrow accDataType: RTL under stalls == CPU engine == FINN's execution."""
    from test_stitch import bnn_full_agreement_graph, bnn_full_agreement_inputs

    graph = bnn_full_agreement_graph(tmp_path / "b.onnx")
    x = bnn_full_agreement_inputs(graph)
    sim = SimBackend(graph, simulator="icarus", project_dir=tmp_path / "rtl", src_idle=0.3,
                     sink_stall=0.3)
    out = sim.run(x)
    cpu = CpuEngine(graph).run(x)
    assert np.array_equal(out, cpu) and np.array_equal(cpu, _reference(graph, sim, x))
    assert cpu[0, 0] == 8 and cpu[1, 0] == 7


def test_deep_weight_rom_in_banks_bit_exact(tmp_path):
    """A 24576-word weight ROM read from six banks (mvau.v WBANK_AW), under stalls:
    compiled RTL == CPU engine == FINN's execution of the graph."""
    from test_stitch import deep_weight_graph

    graph = deep_weight_graph(tmp_path / "d.onnx")
    x = np.random.default_rng(9).integers(0, 16, size=(3, 2048))
    x[0] = 15  # the largest sums
    sim = SimBackend(graph, project_dir=tmp_path / "rtl", src_idle=0.2, sink_stall=0.3)
    out = sim.run(x)
    cpu = CpuEngine(graph).run(x)
    assert np.array_equal(out, cpu) and np.array_equal(cpu, _reference(graph, sim, x))
