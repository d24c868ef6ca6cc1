"""Stitched accelerators simulated cycle by cycle: bit-exact against the integer reference
(FINN's python execution of the HW-layer graph), with backpressure, at the ideal rate."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from qonnx.core.modelwrapper import ModelWrapper

from netfabric.hls.reference import reference_run
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
def test_stitched_cnn_is_bit_exact_on_50_images(tmp_path, mnist_test, compile_helper):
    from netfabric import flow

    qonnx = flow.export_checkpoint(flow.PRETRAINED / "cnn_w8a8.pt", tmp_path / "cnn.onnx")
    graph = compile_helper(qonnx, tmp_path / "hw", target_fps=20_000, label_select=False)
    sim = SimBackend(graph, project_dir=tmp_path / "rtl")
    x = mnist_test[0][:50, None]
    out = sim.run(x)
    assert np.array_equal(out, _reference(graph, sim, x).reshape(out.shape))
    print(f"CNN: {sim.last_metrics['interval']:.0f} cycles/frame measured, "
          f"ideal {sim.manifest['ideal_cycles_per_frame']}")
