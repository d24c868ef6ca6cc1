"""The runtime over a chain of backends: run-time fallback (each input answered exactly once,
in order, equal to the CPU engine), partitioning by op support (RTL simulation + CPU engine in
one call), probing for ``auto``, and what ``netfabric run`` reports.

The backends doing the work are real (the CPU engine, the RTL simulation under Icarus); only
the failures are injected, by a wrapper that raises after answering k inputs.
"""

from __future__ import annotations

import functools
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from netfabric.errors import BackendFailure, BackendUnavailable, UnsupportedOpError
from netfabric.host import partition, runtime
from netfabric.host.cpu_engine import CpuEngine
from netfabric.host.fallback import FallbackRuntime
from netfabric.ops.graphbuild import HWGraphBuilder

N = 20  # inputs per test batch
ALL_OPS = frozenset({"MVAU", "GlobalAccPool", "Thresholding"})


def pool_graph(path: Path, seed: int = 0) -> Path:
    """MVAU -> GlobalAccPool -> Thresholding -> MVAU, host steps at both ends.

    Raw input [N, 32] (reshaped by the host to [N, 2, 2, 8] UINT4), output [N, 3] UINT4. The
    RTL library has no GlobalAccPool, so the sim backend cannot run the pool."""
    rng = np.random.default_rng(seed)
    b = HWGraphBuilder("mvau_pool_mvau")
    x = b.input("x", [1, 2, 2, 8], "UINT4")

    def mvau(name: str, inp: str, out: str, mw: int, mh: int, vec: list[int], simd: int, pe: int):
        w = rng.integers(-8, 8, size=(mw, mh))
        acc = rng.integers(0, 16, size=(256, mw)) @ w
        t = np.sort(rng.integers(int(acc.min()), int(acc.max()) + 1, size=(mh, 15)), axis=1)
        b.node("MVAU", [inp, b.param(f"{name}_w", w, "INT4"), b.param(f"{name}_t", t)],
               [(out, [*vec, mh], "UINT4")], name=name, MW=mw, MH=mh, SIMD=simd, PE=pe,
               inputDataType="UINT4", weightDataType="INT4", outputDataType="UINT4",
               accDataType="INT16", ActVal=0, noActivation=0, binaryXnorMode=0,
               numInputVectors=vec)

    mvau("MVAU_0", x, "a", 8, 4, [1, 2, 2], 4, 2)
    b.node("GlobalAccPool", ["a"], [("p", [1, 1, 1, 4], "UINT6")], name="pool", NumChannels=4,
           PE=2, inputDataType="UINT4", numInputVectors=[1, 2, 2])
    t = np.sort(rng.integers(0, 64, size=(4, 15)), axis=1)
    b.node("Thresholding", ["p", b.param("requant_t", t)], [("q", [1, 1, 1, 4], "UINT4")],
           name="requant", NumChannels=4, PE=2, numSteps=15, inputDataType="UINT6",
           weightDataType="UINT6", outputDataType="UINT4", ActVal=0, numInputVectors=[1, 1, 1])
    mvau("MVAU_1", "q", "y", 4, 3, [1, 1, 1], 2, 3)
    b.output("y")
    b.metadata.update(host_input_shape=json.dumps([1, 32]),
                      host_pre=json.dumps([{"op": "Reshape", "shape": [1, 2, 2, 8]}]),
                      host_post=json.dumps([{"op": "Reshape", "shape": [1, 3]}]))
    return b.save(path)


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    """Partitions, RTL projects and log files go to a per-session folder."""
    root = tmp_path_factory.getbasetemp() / "nf_cache"
    monkeypatch.setenv("NETFABRIC_CACHE", str(root))
    monkeypatch.setenv("XDG_CACHE_HOME", str(root / "xdg"))


@pytest.fixture(scope="module")
def graph(tmp_path_factory) -> Path:
    return pool_graph(tmp_path_factory.mktemp("pool") / "hw_graph.onnx")


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return np.random.default_rng(1).integers(0, 16, size=(N, 32))


@pytest.fixture(scope="module")
def expected(graph, x) -> np.ndarray:
    return CpuEngine(graph).run(x)


class Recorder:
    """A real backend (the CPU engine on the graph it is opened on) that records the inputs it
    answered and, like a lost board, raises ``exc`` once answering the next call would take it
    past ``k`` inputs."""

    def __init__(self, graph_path: Path, name: str = "rec", k: int | None = None,
                 exc: Exception | None = None, threads: int = 1, log: list | None = None,
                 design_ops: set[str] | None = None) -> None:
        self.inner, self.threads = CpuEngine(graph_path, threads=threads), threads
        self.name, self.k, self.exc = name, k, exc or TimeoutError("no answer within 2 s")
        self.seen: list[np.ndarray] = []
        self.log = log if log is not None else []
        if design_ops is not None:
            self.ops = frozenset(design_ops)

    def run(self, x: np.ndarray) -> np.ndarray:
        answered = sum(len(s) for s in self.seen)
        if self.k is not None and answered + len(x) > self.k:
            raise self.exc
        out = self.inner.run(x)
        self.seen.append(np.asarray(x))
        self.log.append((self.name, np.asarray(x)))
        return out


def factory(name: str, registry: dict, **kw):
    """A constructor for FallbackRuntime's ``factories`` that keeps every instance it opens."""

    def make(graph_path: Path, threads: int = 1) -> Recorder:
        rec = Recorder(graph_path, name=name, threads=threads, **kw)
        registry.setdefault(name, []).append(rec)
        return rec

    return make


# --- run-time fallback ----------------------------------------------------------------------


@pytest.mark.parametrize("exc", [TimeoutError("no answer within 2 s"),
                                 OSError(5, "Input/output error: /dev/ttyUSB0"),
                                 RuntimeError("CUDA error: an illegal memory access"),
                                 BackendFailure("frame checksum mismatch")],
                         ids=["timeout", "lost-port", "cuda", "device"])
@pytest.mark.parametrize(("k", "chunk"), [(7, 3), (0, 4), (N, 5)])
def test_a_failure_after_k_inputs_moves_the_rest_once_in_order(graph, x, expected, exc, k, chunk):
    opened: dict = {}
    log: list = []
    rt = FallbackRuntime(graph, ["flaky", "cpu2"], chunk=chunk, options={"threads": 2},
                         factories={"flaky": factory("flaky", opened, k=k, exc=exc, log=log),
                                    "cpu2": factory("cpu2", opened, log=log)})
    out = rt.run(x)
    assert np.array_equal(out, expected)
    before = (k // chunk) * chunk  # whole chunks the flaky backend answered
    # every input answered exactly once, in order: the answered chunks concatenate to x
    assert np.array_equal(np.concatenate([c for _, c in log]), x)
    assert [name for name, _ in log] == sorted([name for name, _ in log], key=["flaky", "cpu2"].index)
    assert rt.answered_by == {k2: v for k2, v in {"flaky": before, "cpu2": N - before}.items() if v}
    if before < N:
        [f] = rt.failovers
        assert (f.backend, f.answered, f.moved, f.to) == ("flaky", before, N - before, "cpu2")
        assert type(exc).__name__ in f.reason and "flaky" in rt.failed
        assert rt.name == "cpu2"
    else:
        assert rt.failovers == [] and rt.name == "flaky"
    assert all(r.threads == 2 for r in opened.get("cpu2", []))  # options reach the backends


def test_input_errors_are_the_callers_not_a_failover(graph):
    rt = FallbackRuntime(graph, ["flaky", "cpu"], factories={"flaky": factory("flaky", {})})
    with pytest.raises(ValueError, match="shape"):
        rt.run(np.zeros((2, 31), np.uint8))
    with pytest.raises(ValueError, match="UINT4"):
        rt.run(np.full((2, 32), 16))
    assert rt.failovers == [] and rt.failed == {}


def test_when_every_backend_fails_the_error_names_each_reason(graph, x):
    rt = FallbackRuntime(graph, ["a", "b"], chunk=4,
                         factories={"a": factory("a", {}, k=4), "b": factory("b", {}, k=8,
                                    exc=OSError("board unplugged"))})
    with pytest.raises(BackendFailure, match="a: TimeoutError.*b: OSError: board unplugged"):
        rt.run(x)


def test_without_fallback_a_failure_stops_the_run(graph, x):
    rt = FallbackRuntime(graph, ["a", "cpu"], chunk=4, fallback=False,
                         factories={"a": factory("a", {}, k=4)})
    with pytest.raises(BackendFailure, match="the a backend failed after 4 of 20 inputs: "
                                             "TimeoutError") as info:
        rt.run(x)
    assert isinstance(info.value.__cause__, TimeoutError)
    assert rt.answered_by == {"a": 4} and rt.failovers == []


# --- partitioning ---------------------------------------------------------------------------


def test_single_tensor_cuts(graph, tmp_path):
    import onnx
    from test_stitch import residual_block_graph

    model = onnx.load(str(graph))
    assert partition.valid_cuts(model) == [1, 2, 3]
    # the residual block's fork ... join region never splits: MVAU_0 | fork..add | requant
    res = onnx.load(str(residual_block_graph(tmp_path / "res.onnx")))
    assert partition.valid_cuts(res) == [1, 4]
    assert partition.boundary_tensor(res, 4) == "s"
    with pytest.raises(Exception, match="2 tensors cross"):
        partition.boundary_tensor(res, 3)


def test_parts_are_standalone_graphs_that_chain_to_the_whole(graph, x, expected, tmp_path):
    import onnx

    from netfabric.host.hwgraph import load_hwgraph

    model = onnx.load(str(graph))
    paths = [partition.save_part(model, a, b, tmp_path) for a, b in [(0, 1), (1, 2), (2, 4)]]
    first, inner, last = (load_hwgraph(p) for p in paths)
    assert "host_pre" in first.metadata and "host_post" not in first.metadata
    assert not {"host_pre", "host_post", "host_input_shape"} & set(inner.metadata)
    assert "host_post" in last.metadata and "host_pre" not in last.metadata
    assert inner.input_name == "a" and inner.output_name == "p"
    assert str(inner.dtypes["a"].name) == "UINT4" and inner.dtypes["p"].name == "UINT6"
    assert set(last.params) == {"requant_t", "MVAU_1_w", "MVAU_1_t"}
    y = x
    for p in paths:
        y = CpuEngine(p).run(y)
    assert np.array_equal(y, expected)


def test_chain_with_no_backend_for_an_op_says_which_node(graph):
    board = factory("board", {})
    board.ops = frozenset({"MVAU", "Thresholding"})
    with pytest.raises(UnsupportedOpError, match=r"node pool \(GlobalAccPool\).*board"):
        FallbackRuntime(graph, ["board"], factories={"board": board})


@pytest.mark.parametrize("where", ["class", "instance"])
def test_ops_a_board_design_lacks_run_on_the_next_backend(graph, x, expected, where):
    """A board whose design has MVAU and Thresholding but no GlobalAccPool (declared on its
    class, or only by the opened instance): the pool runs on the CPU engine in the same call."""
    opened: dict = {}
    make = factory("board", opened, design_ops={"MVAU", "Thresholding"})
    if where == "class":
        make.ops = frozenset({"MVAU", "Thresholding"})
    rt = FallbackRuntime(graph, ["board", "cpu"], factories={"board": make})
    assert [(p.nodes, p.backend) for p in rt.parts] == [
        (["MVAU_0"], "board"), (["pool"], "cpu"), (["requant", "MVAU_1"], "board")]
    assert np.array_equal(rt.run(x), expected)
    assert [p.answered_by for p in rt.parts] == [{"board": N}, {"cpu": N}, {"board": N}]
    assert rt.name == "board+cpu"


def test_a_partitioned_board_that_fails_moves_each_part(graph, x, expected):
    opened: dict = {}
    make = factory("board", opened, k=8, exc=OSError("lost board"))
    make.ops = frozenset({"MVAU", "Thresholding"})
    rt = FallbackRuntime(graph, ["board", "cpu"], chunk=4, factories={"board": make})
    assert np.array_equal(rt.run(x), expected)
    # the first part failed on its third chunk (8 answered): the board is lost, so the third
    # part (on the same board, 8 answered) moves to the CPU engine at the same chunk
    assert [p.answered_by for p in rt.parts] == [{"board": 8, "cpu": 12}, {"cpu": N},
                                                 {"board": 8, "cpu": 12}]
    assert [(f.backend, f.answered, f.moved, f.to, f.part) for f in rt.failovers] == [
        ("board", 8, 12, "cpu", "node MVAU_0"),
        ("board", 8, 12, "cpu", "nodes requant..MVAU_1 (2)")]
    assert "OSError: lost board" in rt.failovers[1].reason


@pytest.mark.sim
@pytest.mark.skipif(shutil.which("iverilog") is None, reason="Icarus Verilog not installed")
def test_sim_runs_the_rtl_parts_and_cpu_the_pool_bit_exact(graph, x, expected):
    """Chain [sim, cpu] with a design that lacks the pool (as a board's bitstream may):
    MVAU_0 and requant..MVAU_1 are simulated RTL (Icarus), the pool runs on the CPU engine; the
    integers equal the CPU engine's on the whole graph."""
    from netfabric.host.sim_backend import SimBackend

    class DesignWithoutPool(SimBackend):
        ops = frozenset({"MVAU", "Thresholding"})

    rt = FallbackRuntime(graph, ["sim", "cpu"], options={"simulator": "icarus"},
                         factories={"sim": DesignWithoutPool})
    assert [(p.nodes, p.backend) for p in rt.parts] == [
        (["MVAU_0"], "sim"), (["pool"], "cpu"), (["requant", "MVAU_1"], "sim")]
    assert np.array_equal(rt.run(x), expected)
    assert [p.answered_by for p in rt.parts] == [{"sim": N}, {"cpu": N}, {"sim": N}]
    sims = [b for (name, *_), b in rt._open.items() if name == "sim"]
    assert len(sims) == 2 and all(isinstance(b, SimBackend) for b in sims)
    assert all(b.last_metrics.get("frames") == N for b in sims)  # really simulated


# --- auto, chains, options ------------------------------------------------------------------


def _unavailable(reason: str):
    def loader():
        raise BackendUnavailable(reason)

    return loader


def test_auto_probes_boards_then_gpu_then_cpu_and_says_why(graph, x, expected, monkeypatch,
                                                           caplog):
    for name in ("fpga", "pynq", "triton"):
        monkeypatch.setitem(runtime.LOADERS, name, _unavailable(f"no {name} here"))
    with caplog.at_level(logging.INFO, logger="netfabric.runtime"):
        rt = runtime.open_backend("auto", graph)
    assert rt.name == "cpu"
    assert rt.skipped == {"fpga": "no fpga here", "pynq": "no pynq here", "triton": "no triton here"}
    assert all(f"backend {n} skipped: no {n} here" in caplog.text for n in ("fpga", "pynq", "triton"))
    assert np.array_equal(rt.run(x), expected) and rt.answered_by == {"cpu": N}


def test_auto_on_this_machine_agrees_with_the_cpu_engine(graph, x, expected):
    rt = runtime.open_backend("auto", graph)
    assert set(rt.skipped) <= {"fpga", "pynq", "triton"} and all(rt.skipped.values())
    assert np.array_equal(rt.run(x), expected)
    assert sum(rt.parts[-1].answered_by.values()) == N


def test_a_named_backend_opens_as_before(graph):
    assert isinstance(runtime.open_backend("cpu", graph, threads=1), CpuEngine)
    with pytest.raises(BackendUnavailable, match="unknown backend 'fpga9000'"):
        runtime.open_backend("fpga9000", graph)


def test_fallback_chains():
    assert runtime.chain_for("auto", True) == ["fpga", "pynq", "triton", "cpu"]
    assert runtime.chain_for("sim", True) == ["sim", "cpu"]
    assert runtime.chain_for("fpga", True) == ["fpga", "pynq", "triton", "cpu"]
    assert runtime.chain_for("triton", True) == ["triton", "cpu"]
    assert runtime.chain_for("cpu", True) == ["cpu"]
    assert runtime.chain_for("sim", False) == ["sim"]


def test_options_reach_only_the_backends_that_take_them():
    def fpga(graph_path, port=None):
        pass

    assert runtime.accepted_options(fpga, {"port": "/dev/ttyUSB1", "threads": 2}) == {
        "port": "/dev/ttyUSB1"}
    assert runtime.accepted_options(CpuEngine, {"port": None, "threads": 2}) == {"threads": 2}


# --- netfabric run ----------------------------------------------------------------------------


def _cli(*args: str):
    from click.testing import CliRunner

    from netfabric.cli import main

    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def _npy(tmp_path: Path, x: np.ndarray) -> Path:
    np.save(tmp_path / "x.npy", x)
    return tmp_path / "x.npy"


def test_run_reports_skips_a_failover_and_who_answered(graph, x, monkeypatch, tmp_path):
    board = functools.partial(Recorder, name="fpga", k=8)
    board.ops = ALL_OPS  # a design with every op of the graph: one part
    monkeypatch.setitem(runtime.LOADERS, "fpga", lambda: board)
    for name in ("pynq", "triton"):
        monkeypatch.setitem(runtime.LOADERS, name, _unavailable(f"no {name} board [here]"))
    res = _cli("run", graph, "--backend", "auto", "--input", _npy(tmp_path, x), "--chunk", "4")
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert "skipped pynq: no pynq board [here]" in lines
    assert "skipped triton: no triton board [here]" in lines
    assert ("failover: fpga failed after 8 inputs (TimeoutError: no answer within 2 s); "
            "12 inputs moved to cpu") in lines
    assert "fpga answered 8 inputs" in lines and "cpu answered 12 inputs" in lines


def test_run_reports_which_backend_ran_which_nodes(graph, x, monkeypatch, tmp_path):
    board = functools.partial(Recorder, name="fpga", design_ops={"MVAU", "Thresholding"})
    monkeypatch.setitem(runtime.LOADERS, "fpga", lambda: board)
    monkeypatch.setitem(runtime.LOADERS, "triton", _unavailable("no GPU"))  # cpu is next
    res = _cli("run", graph, "--backend", "fpga", "--fallback", "--input", _npy(tmp_path, x))
    assert res.exit_code == 0, res.output
    assert f"fpga answered {N} inputs (node MVAU_0)" in res.stdout
    assert f"cpu answered {N} inputs (node pool)" in res.stdout
    assert f"fpga answered {N} inputs (nodes requant..MVAU_1 (2))" in res.stdout
    assert "backend fpga+cpu" in res.stdout


def test_run_without_fallback_uses_only_the_named_backend(graph, x, monkeypatch, tmp_path):
    board = functools.partial(Recorder, name="fpga", k=4)
    board.ops = ALL_OPS
    monkeypatch.setitem(runtime.LOADERS, "fpga", lambda: board)
    res = _cli("run", graph, "--backend", "cpu", "--input", _npy(tmp_path, x))
    assert res.exit_code == 0 and f"cpu answered {N} inputs" in res.stdout
    res = _cli("run", graph, "--backend", "fpga", "--no-fallback", "--chunk", "4",
               "--input", _npy(tmp_path, x))
    assert res.exit_code == 2
    assert res.stderr.strip() == ("Error: the fpga backend failed after 4 of 20 inputs: "
                                  "TimeoutError: no answer within 2 s")


def test_an_empty_batch_and_a_single_input(graph, x, expected):
    rt = runtime.open_backend("auto", graph)
    assert rt.run(x[:0]).shape == (0, *expected.shape[1:])
    assert np.array_equal(rt.run(x[0]), expected[:1])


def _triton_or_skip():
    triton_backend = pytest.importorskip("netfabric.host.triton_backend")
    reason = triton_backend.triton_availability()
    if reason:
        pytest.skip(reason)
    import torch

    if not torch.cuda.is_available():  # auto passes over the interpreter on purpose
        pytest.skip("no CUDA GPU")
    return triton_backend.TritonBackend


def test_on_a_gpu_auto_picks_triton_and_a_gpu_failure_moves_to_cpu(graph, x, expected):
    triton = _triton_or_skip()
    rt = runtime.open_backend("auto", graph)
    assert rt.name == "triton" and np.array_equal(rt.run(x), expected)

    class LostGpu:  # the real kernels, until the device errors out after 8 inputs
        name = "triton"

        def __init__(self, graph_path: Path) -> None:
            self.inner, self.answered = triton(graph_path), 0

        def run(self, xs: np.ndarray) -> np.ndarray:
            if self.answered + len(xs) > 8:
                raise RuntimeError("CUDA error: an illegal memory access was encountered")
            self.answered += len(xs)
            return self.inner.run(xs)

    rt = FallbackRuntime(graph, ["triton", "cpu"], chunk=4, factories={"triton": LostGpu})
    assert np.array_equal(rt.run(x), expected)
    assert rt.answered_by == {"triton": 8, "cpu": N - 8}
    # a board design without the pool: the pool runs on the GPU in the same call
    board = factory("board", {}, design_ops={"MVAU", "Thresholding"})
    rt = FallbackRuntime(graph, ["board", "triton", "cpu"], factories={"board": board})
    assert [(p.nodes, p.backend) for p in rt.parts] == [
        (["MVAU_0"], "board"), (["pool"], "triton"), (["requant", "MVAU_1"], "board")]
    assert np.array_equal(rt.run(x), expected)
