"""Bring your own model: Brevitas networks netfabric did not train (BNN-PYNQ from the brevitas
wheel, random weights with calibrated BatchNorm/TensorNorm statistics) through the front end,
with the input pre-processing (pixels/255) folded into the graph.

Each network is checked three ways: the CPU engine's integers equal FINN's python execution of
the HW-layer graph (labels and the integer logits feeding LabelSelect), and its predictions are
an argmax of FINN's execution of the original QONNX (float logits) on the same images.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from qonnx.core.modelwrapper import ModelWrapper

from netfabric.errors import CompileError
from netfabric.hls.frontend import CompileConfig, compile_qonnx, parse_input_values
from netfabric.hls.reference import reference_run
from netfabric.host.hwgraph import load_hwgraph

pytest.importorskip("brevitas_examples.bnn_pynq")

PIXELS = (1 / 255,)


def bnn_pynq_qonnx(name: str, out, seed: int = 0):
    """Export BNN-PYNQ ``name`` (e.g. ``tfc_2w2a``) with random weights; a few forward passes in
    train mode give BatchNorm and TensorNorm non-trivial running statistics."""
    from brevitas.export import export_qonnx
    from brevitas_examples.bnn_pynq.models import model_with_cfg

    torch.manual_seed(seed)
    model, _ = model_with_cfg(name, pretrained=False)
    shape = (3, 32, 32) if name.startswith("cnv") else (1, 28, 28)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(16, *shape))
    model.eval()
    export_qonnx(model, input_t=torch.rand(1, *shape), export_path=str(out))
    return out


def qonnx_logits(path, x_raw: np.ndarray, scale=PIXELS, mean=None) -> np.ndarray:
    """FINN's execution of the exported QONNX on what the model was trained on:
    (raw - mean) * scale, pixels/255 by default."""
    from finn.core.onnx_exec import execute_onnx
    from qonnx.util.cleanup import cleanup_model

    model = cleanup_model(ModelWrapper(str(path)))
    iname, oname = model.graph.input[0].name, model.graph.output[0].name
    shape = [1, -1] + [1] * (x_raw.ndim - 2)
    m = np.asarray(mean or (0.0,), np.float64).reshape(shape)
    s = np.asarray(scale, np.float64).reshape(shape)
    x = ((x_raw - m) * s).astype(np.float32)
    return np.concatenate([execute_onnx(model, {iname: sample[None]})[oname] for sample in x])


def check_network(qonnx_path, hw_dir, x_raw, scale=PIXELS, mean=None, **cfg):
    """Compile with the pre-processing folded in, run on the CPU engine; integers against
    FINN's execution of the HW graph, predictions against FINN's execution of the QONNX."""
    from netfabric import flow
    from netfabric.host.cpu_engine import CpuEngine

    graph = flow.compile_model(qonnx_path, hw_dir,
                               CompileConfig(input_scale=scale, input_mean=mean, **cfg))
    g = load_hwgraph(graph)
    assert g.dtypes[g.input_name].name == "UINT8"
    logits_name = g.nodes[-1].inputs[0]
    engine = CpuEngine(graph, extra_outputs=[logits_name])
    labels, logits = engine.run_all(x_raw)
    ref_labels, ref_logits = reference_run(
        ModelWrapper(str(graph)), engine.check_input(x_raw).astype(np.float32), [logits_name])
    assert np.array_equal(labels.reshape(-1), ref_labels.reshape(-1).astype(np.int64))
    assert np.array_equal(logits, ref_logits.astype(np.int64))
    float_logits = qonnx_logits(qonnx_path, x_raw, scale, mean).reshape(len(x_raw), -1)
    pred = labels.reshape(-1)
    best = float_logits.max(axis=1)
    picked = float_logits[np.arange(len(pred)), pred]
    assert np.allclose(picked, best, rtol=1e-5, atol=1e-6), "prediction is not a QONNX argmax"
    # the integer logits are an increasing affine map of the QONNX logits (TensorNorm head)
    order = np.argsort(logits.reshape(-1), kind="stable")
    assert np.all(np.diff(float_logits.reshape(-1)[order]) >= -1e-5)
    return graph, labels.reshape(-1)


def mnist_images(mnist_test, n):
    return mnist_test[0][:n, None]


def cifar_like(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)


# --- input pre-processing -----------------------------------------------------------------


def test_parse_input_values():
    assert parse_input_values("1/255") == (1 / 255,)
    assert parse_input_values("0.5, 1/4") == (0.5, 0.25)
    assert parse_input_values(None) is None
    with pytest.raises(CompileError, match="--input-mean 'abc'"):
        parse_input_values("abc", "--input-mean")


@pytest.fixture(scope="module")
def tfc_2w2a(tmp_path_factory):
    return bnn_pynq_qonnx("tfc_2w2a", tmp_path_factory.mktemp("tfc") / "tfc_2w2a.onnx")


def test_float_input_without_scale_says_which_option(tfc_2w2a):
    with pytest.raises(CompileError, match=r"FLOAT32.*--input-scale"):
        compile_qonnx(tfc_2w2a, CompileConfig())


def test_cli_float_input_and_bad_scale_are_one_line_errors(tfc_2w2a, tmp_path):
    import subprocess
    import sys

    def netfabric(*args):
        return subprocess.run([sys.executable, "-m", "netfabric.cli", "compile", str(tfc_2w2a),
                               "--out", str(tmp_path / "hw"), *args], capture_output=True,
                              text=True, timeout=600)

    res = netfabric()
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "FLOAT32" in res.stderr and "pass --input-scale (e.g. 1/255" in res.stderr
    res = netfabric("--input-scale", "1/0")
    assert res.returncode == 2 and "--input-scale '1/0'" in res.stderr


def test_tfc_2w2a_is_bit_exact(tfc_2w2a, tmp_path, mnist_test):
    graph, _ = check_network(tfc_2w2a, tmp_path / "hw", mnist_images(mnist_test, 100))
    ops = [n.op_type for n in load_hwgraph(graph).nodes]
    # the input quantizer (2-bit, signed after 2x-1) becomes a Thresholding layer on raw pixels
    assert ops == ["Thresholding"] + ["MVAU"] * 4 + ["LabelSelect"]


def test_tfc_2w2a_integer_logits_are_the_qonnx_logits(tfc_2w2a, tmp_path, mnist_test):
    """Without LabelSelect the TensorNorm head (scalar Mul, Add) is stripped from the graph and
    recorded: QONNX logits = integer logits * output_scale + output_bias."""
    from netfabric import flow
    from netfabric.host.cpu_engine import CpuEngine

    graph = flow.compile_model(tfc_2w2a, tmp_path / "hw",
                               CompileConfig(input_scale=PIXELS, label_select=False))
    g = load_hwgraph(graph)
    scale, bias = float(g.metadata["output_scale"]), float(g.metadata["output_bias"])
    x = mnist_images(mnist_test, 20)
    logits = CpuEngine(graph).run(x)
    np.testing.assert_allclose(logits * scale + bias, qonnx_logits(tfc_2w2a, x).reshape(20, -1),
                               rtol=1e-4, atol=1e-4)


def test_preprocess_step_is_the_affine_map(tfc_2w2a):
    """raw -> Add(-mean) -> Mul(scale) -> the model: the same outputs as the model on
    (raw - mean) * scale; the input is declared UINT8."""
    from finn.core.onnx_exec import execute_onnx
    from qonnx.util.cleanup import cleanup_model

    from netfabric.hls.frontend import step_preprocess

    cfg = CompileConfig(input_scale=(1 / 200,), input_mean=(20.0,))
    pre = step_preprocess(cleanup_model(ModelWrapper(str(tfc_2w2a))), cfg)
    assert pre.get_tensor_datatype(pre.graph.input[0].name).name == "UINT8"
    x = np.random.default_rng(0).integers(0, 256, size=(3, 1, 28, 28))
    iname, oname = pre.graph.input[0].name, pre.graph.output[0].name
    got = [execute_onnx(pre, {iname: s[None].astype(np.float32)})[oname] for s in x]
    want = qonnx_logits(tfc_2w2a, x, scale=(1 / 200,), mean=(20.0,))
    np.testing.assert_allclose(np.concatenate(got), want, rtol=1e-5, atol=1e-5)
    with pytest.raises(CompileError, match="3 values given.*1 channels"):
        step_preprocess(ModelWrapper(str(tfc_2w2a)), CompileConfig(input_scale=(1.0, 2.0, 3.0)))


def test_model_with_external_data_loads(tfc_2w2a, tmp_path):
    """An ONNX model saved with its tensors in an external data file compiles."""
    import onnx

    proto = onnx.load(str(tfc_2w2a))
    path = tmp_path / "ext.onnx"
    onnx.save_model(proto, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="ext.onnx.data", size_threshold=0)
    assert (tmp_path / "ext.onnx.data").stat().st_size > 10_000
    result = compile_qonnx(path, CompileConfig(input_scale=PIXELS))
    assert [n.op_type.split("_")[0] for n in result.model.graph.node][-1] == "LabelSelect"


def test_cnv_2w2a_is_bit_exact(tmp_path):
    """CNV (Q1.7 input quantizer as a Thresholding layer on raw pixels, six 3x3 convolutions,
    two max-pools, TensorNorm head) on 32x32x3 inputs."""
    path = bnn_pynq_qonnx("cnv_2w2a", tmp_path / "cnv_2w2a.onnx")
    graph, _ = check_network(path, tmp_path / "hw", cifar_like(3))
    ops = [n.op_type for n in load_hwgraph(graph).nodes]
    assert ops[0] == "Thresholding" and ops.count("MVAU") == 9 and ops.count("Pool") == 2


def test_tfc_1w1a_xnor_mvaus_are_bit_exact(tmp_path, mnist_test):
    """FINN's BNN flow: bipolar x bipolar MatMuls become XNOR-popcount MVAUs on BINARY
    activations (binaryXnorMode=1); the input quantizer and the head stay integer."""
    path = bnn_pynq_qonnx("tfc_1w1a", tmp_path / "tfc_1w1a.onnx")
    graph = compile_qonnx(path, CompileConfig(input_scale=PIXELS)).model
    from netfabric.host.hwgraph import hwgraph_from_proto

    g = hwgraph_from_proto(graph.model)
    mvaus = [n for n in g.nodes if n.op_type == "MVAU"]
    assert len(mvaus) == 4 and all(n.attr("binaryXnorMode") == 1 for n in mvaus)
    assert {n.attr("weightDataType") for n in mvaus} == {"BINARY"}
    check_network(path, tmp_path / "hw", mnist_images(mnist_test, 50))


def test_bipolar_activations_without_1bit_weights_say_why(tmp_path):
    """2-bit weights after 1-bit (bipolar) activations: no XNOR-popcount layer can take them
    (FINN would stop with "MultiThreshold out_scale must be 1"); the error says what to change."""
    from brevitas.export import export_qonnx
    from brevitas_examples.bnn_pynq.models.FC import FC

    torch.manual_seed(0)
    model = FC(num_classes=10, weight_bit_width=2, act_bit_width=1, in_bit_width=1,
               in_channels=1, out_features=[16]).eval()
    path = tmp_path / "w2a1.onnx"
    export_qonnx(model, input_t=torch.rand(1, 1, 28, 28), export_path=str(path))
    with pytest.raises(CompileError, match=r"MultiThreshold_0.*bipolar.*1-bit weights"):
        compile_qonnx(path, CompileConfig(input_scale=PIXELS))


BNN_PYNQ_SLOW = ["tfc_1w2a", "sfc_2w2a", "sfc_1w2a", "sfc_1w1a", "lfc_1w2a",
                 "lfc_1w1a", "cnv_1w2a", "cnv_1w1a"]


@pytest.mark.slow
@pytest.mark.parametrize("name", BNN_PYNQ_SLOW)
def test_bnn_pynq_zoo_is_bit_exact(name, tmp_path, mnist_test):
    path = bnn_pynq_qonnx(name, tmp_path / f"{name}.onnx")
    x = cifar_like(2) if name.startswith("cnv") else mnist_images(mnist_test, 50)
    check_network(path, tmp_path / "hw", x)


@pytest.mark.slow
def test_input_mean_and_per_channel_scale_are_folded(tmp_path):
    """CNV with a per-channel mean and scale (raw units) folded into its first thresholds."""
    path = bnn_pynq_qonnx("cnv_2w2a", tmp_path / "cnv_2w2a.onnx")
    check_network(path, tmp_path / "hw", cifar_like(2, seed=1),
                  scale=(1 / 255, 1 / 250, 1 / 240), mean=(10.0, 5.0, 0.0))


@pytest.mark.slow
@pytest.mark.sim
@pytest.mark.parametrize("name", ["tfc_2w2a", "tfc_1w1a"])
def test_tfc_rtl_simulation_is_bit_exact(name, tmp_path, mnist_test):
    """The stitched TFC (standalone input Thresholding on raw pixels, signed 2-bit or XNOR
    1-bit layers, TensorNorm head) under Icarus: integer logits equal the CPU engine's."""
    from netfabric import flow
    from netfabric.host.cpu_engine import CpuEngine
    from netfabric.host.sim_backend import SimBackend

    path = bnn_pynq_qonnx(name, tmp_path / f"{name}.onnx")
    graph = flow.compile_model(path, tmp_path / "hw", CompileConfig(
        input_scale=PIXELS, target_fps=100_000, label_select=False))
    x = mnist_images(mnist_test, 8)
    want = CpuEngine(graph).run(x)
    sim = SimBackend(graph, simulator="icarus", project_dir=tmp_path / "rtl")
    out = sim.run(x)
    assert np.array_equal(out, want.reshape(out.shape))
    assert sim.last_metrics["interval"] <= 1.05 * sim.manifest["ideal_cycles_per_frame"]


# name: (simulator, target frames/s at 100 MHz, images); the rest of the zoo beside TFC above
BNN_PYNQ_RTL = {
    "tfc_1w2a": ("icarus", 100_000, 8),
    "sfc_1w1a": ("icarus", 50_000, 4),
    "sfc_1w2a": ("icarus", 50_000, 4),
    "sfc_2w2a": ("icarus", 50_000, 4),
    "lfc_1w1a": ("icarus", 20_000, 3),
    "lfc_1w2a": ("verilator", 20_000, 3),  # Icarus: over 14 min (2-bit activations, 1024 wide)
    "cnv_1w1a": ("verilator", 5_000, 3),  # 3 frames: the testbench's interval needs >= 3
    "cnv_1w2a": ("verilator", 5_000, 3),
    "cnv_2w2a": ("verilator", 5_000, 3),
}


@pytest.mark.slow
@pytest.mark.sim
@pytest.mark.parametrize("name", list(BNN_PYNQ_RTL))
def test_bnn_pynq_rtl_simulation_is_bit_exact(name, tmp_path, mnist_test):
    """Every other BNN-PYNQ variant, stitched and simulated (Icarus for the FC networks,
    Verilator for CNV), folded for a throughput target so that a few frames simulate quickly:
    integer logits equal the CPU engine's, and the measured interval is the folding's ideal."""
    from netfabric import flow
    from netfabric.host.cpu_engine import CpuEngine
    from netfabric.host.sim_backend import SimBackend

    simulator, fps, frames = BNN_PYNQ_RTL[name]
    path = bnn_pynq_qonnx(name, tmp_path / f"{name}.onnx")
    graph = flow.compile_model(path, tmp_path / "hw", CompileConfig(
        input_scale=PIXELS, target_fps=fps, label_select=False))
    x = cifar_like(frames) if name.startswith("cnv") else mnist_images(mnist_test, frames)
    want = CpuEngine(graph).run(x)
    sim = SimBackend(graph, simulator=simulator, project_dir=tmp_path / "rtl")
    out = sim.run(x)
    assert np.array_equal(out, want.reshape(out.shape))
    assert sim.last_metrics["interval"] <= 1.05 * sim.manifest["ideal_cycles_per_frame"]


# name: (simulator, target frames/s at 100 MHz, images)
BNN_PYNQ_FINN_FORM = {"tfc_1w1a": ("icarus", 100_000, 4), "cnv_1w1a": ("verilator", 5_000, 3)}


@pytest.mark.sim
@pytest.mark.parametrize("name", [
    "tfc_1w1a",  # about 15 s
    pytest.param("cnv_1w1a", marks=pytest.mark.slow),  # about 5 min: a Verilator build of CNV
])
def test_xnor_network_with_labelselect_is_bit_exact_in_rtl(name, tmp_path, mnist_test):
    """FINN's BNN-PYNQ builds end in LabelSelect after an XNOR layer without activation, whose
    popcount (0..MW) FINN types as INT7 for MW = 64: compiled as FINN compiles it, the graph
    stitches, and the RTL's labels equal the CPU engine's and FINN's own execution's."""
    from netfabric import flow
    from netfabric.host.cpu_engine import CpuEngine
    from netfabric.host.sim_backend import SimBackend

    simulator, fps, frames = BNN_PYNQ_FINN_FORM[name]
    path = bnn_pynq_qonnx(name, tmp_path / f"{name}.onnx")
    graph = flow.compile_model(path, tmp_path / "hw", CompileConfig(input_scale=PIXELS,
                                                                     target_fps=fps))
    head = [n for n in load_hwgraph(graph).nodes if n.op_type == "MVAU"][-1]
    assert head.attr("outputDataType") == f"UINT{int(head.attr('MW')).bit_length()}"
    x = cifar_like(frames) if name.startswith("cnv") else mnist_images(mnist_test, frames)
    want = CpuEngine(graph).run(x).reshape(-1)
    sim = SimBackend(graph, simulator=simulator, project_dir=tmp_path / "rtl")
    assert np.array_equal(sim.run(x).reshape(-1), want)
    finn_labels = np.argmax(qonnx_logits(path, x), axis=-1).reshape(-1)
    assert np.array_equal(want, finn_labels)
