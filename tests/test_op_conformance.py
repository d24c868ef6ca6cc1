"""One conformance test for every registered op: random shapes, foldings, bit widths and
signedness from the op's own sample generator, then

    semantics (numpy, the reference) == CPU engine lowering
                                     == FINN's python execution (ops that adapt FINN's classes)
                                     == RTL under cocotb, random idles and backpressure (Icarus)
                                     == Triton kernel (interpreted on CPU tensors without a GPU)

The op list comes from the registry, so a new op is tested the moment it is registered; a
backend piece an op lacks shows as a skip naming it (``netfabric ops`` prints the same matrix).
"""

from __future__ import annotations

import shutil

import numpy as np
import onnx
import pytest

from netfabric.host.hwgraph import load_hwgraph
from netfabric.ops import registry
from netfabric.ops.execute import run_graph
from netfabric.sim.golden import random_ints

OPS = sorted(registry.ops())
# FINN's generic classes of these return 0 cycles (the model is in the specialized classes)
FINN_HAS_NO_GENERIC_ESTIMATE = {"ConvolutionInputGenerator", "StreamingFIFO",
                                "StreamingDataWidthConverter"}
SEEDS = (0, 1, 2)
FRAMES = 3


def _case(tmp_path, op_name: str, seed: int):
    """A random sample graph of the op, saved, plus random input frames and the reference."""
    rng = np.random.default_rng(1000 * seed + sum(map(ord, op_name)))
    op = registry.get(op_name)
    path = tmp_path / f"{op_name}_{seed}.onnx"
    onnx.save(op.sample(rng), str(path))
    graph = load_hwgraph(path)
    assert op_name in {n.op_type for n in graph.nodes}, "the sample must contain the op"
    t = graph.dtypes[graph.input_name]
    x = random_ints(rng, [FRAMES, *graph.input_shape[1:]], t.bits, t.signed)
    return path, graph, x, run_graph(graph, x)["output"]


def _equal(got: np.ndarray, want: np.ndarray) -> None:
    got = np.asarray(got).reshape(want.shape)
    bad = np.flatnonzero(got.reshape(-1) != want.reshape(-1))
    assert bad.size == 0, (f"{bad.size} of {want.size} values differ; first at {bad[0]}: "
                           f"{got.reshape(-1)[bad[0]]} != {want.reshape(-1)[bad[0]]}")


def test_every_op_has_semantics_cost_model_and_sample():
    for name, op in registry.ops().items():
        assert op.semantics and op.cycles and op.resources and op.sample, name
        assert op.has("cpu"), f"{name}: every op the compile accepts needs a CPU lowering"


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("op_name", OPS)
def test_cpu_lowering_equals_semantics(tmp_path, op_name, seed):
    from netfabric.host.cpu_engine import CpuEngine

    path, graph, x, want = _case(tmp_path, op_name, seed)
    _equal(CpuEngine(path).run(x), want)


@pytest.mark.parametrize("seed", SEEDS[:2])
@pytest.mark.parametrize("op_name", [o for o in OPS if registry.get(o).origin == "finn"])
def test_finn_execution_equals_semantics(tmp_path, op_name, seed):
    """FINN's own python execution of its op is the independent peer for FINN's ops (for
    netfabric's ops the python execution *is* the semantics, so it is not a peer)."""
    from qonnx.core.modelwrapper import ModelWrapper

    from netfabric.hls.reference import reference_run

    path, graph, x, want = _case(tmp_path, op_name, seed)
    got = reference_run(ModelWrapper(str(path)), x.astype(np.float32))[0]
    _equal(np.round(got).astype(np.int64), want)


@pytest.mark.parametrize("op_name", OPS)
def test_op_adapts_the_class_qonnx_resolves(tmp_path, op_name):
    """Each op names the qonnx/FINN class that reads its nodes (FINN's for FINN's ops, ours in
    hls/custom_ops for netfabric's), and that is the class qonnx resolves for the sample."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.custom_op.registry import getCustomOp

    from netfabric.hls.finn_env import ensure_finn

    ensure_finn()
    path, *_ = _case(tmp_path, op_name, 0)
    node = next(n for n in ModelWrapper(str(path)).graph.node if n.op_type == op_name)
    cls = type(getCustomOp(node))
    assert f"{cls.__module__}.{cls.__qualname__}" == registry.get(op_name).finn_class


@pytest.mark.parametrize("op_name", OPS)
def test_sample_nodes_match_the_adapted_class(tmp_path, op_name):
    """Attributes and stream shapes come from the op's qonnx/FINN class: every attribute a
    sample node carries is one the class declares, and the class's normal input and output
    shapes are the graph's."""
    from qonnx.core.modelwrapper import ModelWrapper

    op = registry.get(op_name)
    for seed in SEEDS:
        path, graph, _, _ = _case(tmp_path, op_name, seed)
        for node in ModelWrapper(str(path)).graph.node:
            if node.op_type != op_name:
                continue
            inst = op.adapter(node)
            declared = inst.get_nodeattr_types()
            assert {a.name for a in node.attribute} <= set(declared), node.name
            assert list(inst.get_normal_input_shape(0)) == graph.shapes[node.input[0]]
            assert list(inst.get_normal_output_shape(0)) == graph.shapes[node.output[0]]


@pytest.mark.parametrize("op_name", [o for o in OPS if registry.get(o).origin == "finn"])
def test_cost_model_equals_finn_estimate(tmp_path, op_name):
    """The registry's cycles per frame against FINN's own ``get_exp_cycles`` of the same node,
    where FINN's generic class has a model (its window generator, FIFO and width converter
    return 0: their estimate lives in the specialized classes). A window generator in FINN's
    ``parallel_window`` style is compared with FINN's RTL class, whose model that is."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.custom_op.registry import getCustomOp

    from netfabric.hls.finn_env import ensure_finn

    ensure_finn()
    op = registry.get(op_name)
    for seed in SEEDS:
        path, graph, _, _ = _case(tmp_path, op_name, seed)
        for node, view in zip(ModelWrapper(str(path)).graph.node, graph.nodes, strict=True):
            if view.op_type != op_name:
                continue
            ours, finn = op.cycles(view, graph), int(getCustomOp(node).get_exp_cycles())
            assert ours > 0
            want = 0 if op_name in FINN_HAS_NO_GENERIC_ESTIMATE else ours
            if op_name == "ConvolutionInputGenerator" and view.attr("parallel_window", 0):
                finn, want = int(_finn_rtl_swg(node).get_exp_cycles()), ours
            assert finn == want, f"{node.name}: registry {ours} cycles, FINN {finn}"


def _finn_rtl_swg(node):
    """FINN's ConvolutionInputGenerator_rtl instance of a generic window generator node."""
    from onnx import helper
    from qonnx.custom_op.registry import getCustomOp

    rtl = helper.make_node("ConvolutionInputGenerator_rtl", list(node.input), list(node.output),
                           name=node.name, domain="finn.custom_op.fpgadataflow.rtl")
    rtl.attribute.extend(node.attribute)
    return getCustomOp(rtl)


@pytest.mark.sim
@pytest.mark.parametrize("seed", SEEDS[:2])
@pytest.mark.parametrize("op_name", OPS)
def test_rtl_equals_semantics(tmp_path, op_name, seed):
    op = registry.get(op_name, ("rtl",))
    if not op.has("rtl"):
        pytest.skip(f"{op_name} has no RTL yet")
    if shutil.which("iverilog") is None:
        pytest.skip("Icarus Verilog not installed")
    from netfabric.host.sim_backend import SimBackend

    path, graph, x, want = _case(tmp_path, op_name, seed)
    sim = SimBackend(path, simulator="icarus", project_dir=tmp_path / "rtl", src_idle=0.3,
                     sink_stall=0.3, seed=seed + 1)
    _equal(sim.run(x), want)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("op_name", OPS)
def test_triton_equals_semantics(tmp_path, op_name, seed):
    """The op's Triton kernel on CPU tensors under Triton's interpreter (conftest sets
    TRITON_INTERPRET=1 at session start; compiled on a GPU when one is present)."""
    op = registry.get(op_name, ("triton",))
    if not op.has("triton"):
        pytest.skip(f"{op_name} has no Triton kernel (or triton is not installed)")
    from netfabric.host.triton_backend import TritonBackend, triton_availability

    if reason := triton_availability():
        pytest.skip(reason)
    path, graph, x, want = _case(tmp_path, op_name, seed)
    _equal(TritonBackend(path).run(x), want)


def test_registry_refuses_unknown_and_incomplete_ops():
    from netfabric.errors import UnsupportedOpError

    with pytest.raises(UnsupportedOpError, match="StreamingMaxPool"):
        registry.require("StreamingMaxPool", ("cpu",), "maxpool_0")
    missing = [name for name, op in registry.ops().items() if not op.has("rtl")]
    if missing:
        with pytest.raises(UnsupportedOpError, match="no rtl implementation"):
            registry.require(missing[0], ("rtl",), "n0")


def test_netfabric_ops_prints_every_registered_op():
    from click.testing import CliRunner

    from netfabric.cli import main

    result = CliRunner().invoke(main, ["-v", "ops"])
    assert result.exit_code == 0, result.output
    for name in registry.ops():
        assert name in result.output
