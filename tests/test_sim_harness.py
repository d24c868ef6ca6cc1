"""The compiled simulation harness (sim/harness: Verilator + a C++ testbench, the sim backend's
default engine) against the cocotb testbench on the same stitched MLP and frames: the same
output bits, the same cycle measurements, random idles and backpressure from two seeds, and a
deadlock reported as a stall. The harness build is cached by content, so it is shared by
every test (and by other test files simulating the same RTL)."""

from __future__ import annotations

import numpy as np
import pytest

from netfabric.errors import SimulationError
from netfabric.host.cpu_engine import CpuEngine
from netfabric.host.sim_backend import SimBackend
from netfabric.sim import golden

pytestmark = pytest.mark.sim
FRAMES = 40
MEASURED = ("interval", "first_frame_latency", "latency_total", "cycles")


@pytest.mark.parametrize(("per_beat", "bits", "signed", "words"),
                         [(16, 8, False, 4), (1, 4, False, 1), (5, 7, True, 2), (3, 32, True, 3),
                          (2, 40, True, 3), (10, 3, False, 1)])
def test_word_packing_is_pack_beats(per_beat, bits, signed, words):
    """pack_words (the harness's beat files) is pack_beats (the cocotb testbench's beats) as
    little-endian 32-bit words, and unpack_words inverts it."""
    lo, hi = golden.int_range(bits, signed)
    elems = np.random.default_rng(bits).integers(lo, hi + 1, size=per_beat * 9, dtype=np.int64)
    packed = golden.pack_words(elems, per_beat, bits, words)
    beats = [sum(int(w) << (32 * k) for k, w in enumerate(row)) for row in packed]
    assert packed.dtype == np.dtype("<u4") and packed.shape == (9, words)
    assert beats == golden.pack_beats(elems, per_beat, bits)
    assert np.array_equal(golden.unpack_words(packed, per_beat, bits, signed), elems)


@pytest.fixture(scope="module")
def mlp(mlp_graph, mnist_test, tmp_path_factory):
    """The shipped MLP (label select), its first frames, the CPU engine's answer and the cocotb
    Verilator run (no stalls) everything else is compared with."""
    project = tmp_path_factory.mktemp("harness") / "rtl"
    x = mnist_test[0][:FRAMES, None]
    cocotb = SimBackend(mlp_graph, project_dir=project, engine="cocotb")
    out = cocotb.run(x)
    return mlp_graph, project, x, CpuEngine(mlp_graph).run(x), out, cocotb.last_metrics


def test_compiled_equals_cocotb_without_stalls(mlp):
    graph, project, x, cpu, cocotb_out, cocotb_metrics = mlp
    sim = SimBackend(graph, project_dir=project)
    assert sim.engine == "compiled"
    out = sim.run(x)
    assert np.array_equal(out, cocotb_out) and np.array_equal(out, cpu)
    m = sim.last_metrics
    assert {k: m[k] for k in MEASURED} == {k: cocotb_metrics[k] for k in MEASURED}
    assert m["interval"] == sim.manifest["ideal_cycles_per_frame"]


@pytest.mark.parametrize("seed", [3, 11])
def test_compiled_equals_cocotb_under_idles_and_backpressure(mlp, seed, tmp_path):
    """Random source idles and sink backpressure change the timing, never the bits; the
    harness build is shared with a second project folder of the same RTL."""
    graph, project, x, cpu, cocotb_out, cocotb_metrics = mlp
    sim = SimBackend(graph, project_dir=tmp_path / "rtl", src_idle=0.3, sink_stall=0.5,
                     seed=seed)
    out = sim.run(x)
    assert np.array_equal(out, cocotb_out) and np.array_equal(out, cpu)
    assert sim.last_metrics["interval"] > cocotb_metrics["interval"]  # the stalls did happen


def test_cocotb_under_backpressure_agrees(mlp):
    graph, project, x, _, cocotb_out, _ = mlp
    sim = SimBackend(graph, project_dir=project, src_idle=0.3, sink_stall=0.5, seed=3,
                     engine="cocotb")
    assert np.array_equal(sim.run(x[:12]), cocotb_out[:12])


def test_shallow_fork_fifo_deadlock_is_a_stall_error(tmp_path):
    """The residual block with its skip FIFO forced to 8 beats deadlocks (see
    test_accelerator_sim): the harness's watchdog reports it, with the cycle it gave up."""
    from test_stitch import residual_block_graph

    graph = residual_block_graph(tmp_path / "res.onnx")
    x = np.random.default_rng(1).integers(0, 16, size=(2, 7, 32))
    sim = SimBackend(graph, project_dir=tmp_path / "rtl", fifo_depths={"a1": 8},
                     stall_cycles=3000)
    assert sim.engine == "compiled"
    with pytest.raises(SimulationError, match=r"stalled: no output beat for 3000 cycles after 0 "
                                              r"of \d+ .*deadlock.*at cycle 3000"):
        sim.run(x)


def test_engine_choice(mlp):
    graph, project = mlp[0], mlp[1]
    assert SimBackend(graph, simulator="icarus", project_dir=project).engine == "cocotb"
    with pytest.raises(ValueError, match="compiled sim engine needs Verilator"):
        SimBackend(graph, simulator="icarus", project_dir=project, engine="compiled")
    with pytest.raises(ValueError, match="sim engine must be one of"):
        SimBackend(graph, project_dir=project, engine="vcs")


def test_a_harness_evicted_before_its_run_is_built_again(mlp, monkeypatch):
    """Between build_harness returning and run_harness taking the build folder's lock another
    process's eviction may remove the executable: the run sees it missing under the lock and
    the backend builds again (here the first build hands back a path with no executable)."""
    from netfabric.sim import harness

    graph, project, x, cpu, *_ = mlp
    real, built = harness.build_harness, []

    def build(*args, **kwargs):
        exe = real(*args, **kwargs)
        built.append(exe)
        return exe.with_name("evicted") if len(built) == 1 else exe
    with pytest.raises(harness.HarnessEvicted, match="removed from the build cache"):
        harness.run_harness(real(project).with_name("evicted"), project, np.zeros((1, 784)))
    monkeypatch.setattr(harness, "build_harness", build)
    sim = SimBackend(graph, project_dir=project)
    assert np.array_equal(sim.run(x[:5]), cpu[:5])
    assert len(built) == 2
