"""One error root: every stage's error is a NetfabricError, and every CLI command prints one as
one line with exit status 2 and no traceback (the traceback goes to the log file)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result

from netfabric import errors
from netfabric.cli import main, one_line


@pytest.fixture(autouse=True)
def log_home(tmp_path, monkeypatch) -> Path:
    """Log files of these runs go under tmp_path, not the user's cache."""
    monkeypatch.delenv("NETFABRIC_CACHE", raising=False)  # it overrides XDG_CACHE_HOME
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "netfabric" / "logs"


def invoke(*args: object) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_one_line_error(res: Result, log_home: Path, kind: str, message: str) -> None:
    """Exit 2, a single 'Error: ...' line naming the problem, no traceback on the console; the
    log file holds the traceback of the ``kind`` exception that caused it."""
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.stderr
    assert message in lines[0]
    logged = "".join(p.read_text() for p in log_home.glob("netfabric-*.log"))
    assert kind in logged and "Traceback" in logged


STAGE_ERRORS = [
    ("netfabric.hls.errors", "CompileError"),
    ("netfabric.hls.errors", "UnsupportedOpError"),
    ("netfabric.host.hwgraph", "GraphError"),
    ("netfabric.host.runtime", "BackendUnavailable"),
    ("netfabric.hw.errors", "StitchError"),
    ("netfabric.hw.flow.errors", "FlowError"),
    ("netfabric.hw.flow.errors", "UnknownBoardError"),
    ("netfabric.hw.flow.errors", "ToolNotFoundError"),
    ("netfabric.hw.flow.errors", "ToolFailedError"),
    ("netfabric.hw.flow.errors", "DesignDoesNotFitError"),
    ("netfabric.models.data", "DataError"),
    ("netfabric.models.train", "CheckpointError"),
    ("netfabric.models.train_transformer", "CheckpointError"),
    ("netfabric.sim.runner", "SimulatorNotFound"),
    ("netfabric.sim.runner", "SimulationFailed"),
]


@pytest.mark.parametrize("module,name", STAGE_ERRORS)
def test_every_stage_error_is_a_netfabric_error(module, name):
    import importlib

    cls = getattr(importlib.import_module(module), name)
    assert issubclass(cls, errors.NetfabricError)


def test_stage_modules_re_export_the_root_classes():
    from netfabric.hls.errors import CompileError
    from netfabric.host.hwgraph import GraphError
    from netfabric.hw.errors import StitchError
    from netfabric.hw.flow.errors import FlowError
    from netfabric.models.train import CheckpointError
    from netfabric.models.train_transformer import CheckpointError as TransformerCheckpointError
    from netfabric.sim.runner import SimulationFailed, SimulatorNotFound

    assert CompileError is errors.CompileError and GraphError is errors.GraphError
    assert StitchError is errors.StitchError and FlowError is errors.FlowError
    assert CheckpointError is TransformerCheckpointError is errors.CheckpointError
    assert issubclass(SimulatorNotFound, errors.SimulationError)
    assert issubclass(SimulationFailed, errors.SimulationError)


def test_every_command_is_guarded():
    """A command added without @_guard would print tracebacks for user errors."""
    for name, cmd in main.commands.items():
        assert hasattr(cmd.callback, "__wrapped__"), f"`netfabric {name}` is not guarded"


def test_a_long_message_is_cut_to_its_first_line():
    short = ValueError("unknown board 'x'; known boards:\n  a  first\n  b  second")
    assert one_line(short) == "unknown board 'x'; known boards: a  first; b  second"
    long = RuntimeError("verilator build failed\n" + "make: error\n" * 50)
    assert one_line(long) == "verilator build failed"


# --- each kind, raised by a real command on bad input ----------------------------------------


def test_compile_error(tmp_path, log_home):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00garbage")
    res = invoke("compile", junk, "--out", tmp_path / "hw")
    assert_one_line_error(res, log_home, "CompileError", "not a readable ONNX")


def test_graph_error(tmp_path, log_home):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00garbage")
    res = invoke("run", junk, "--backend", "cpu")
    assert_one_line_error(res, log_home, "GraphError", "not a readable ONNX")


def test_backend_unavailable(tmp_path, log_home):
    res = invoke("run", tmp_path / "hw_graph.onnx", "--backend", "fpga9000")
    assert_one_line_error(res, log_home, "BackendUnavailable", "unknown backend 'fpga9000'")


def test_data_error(tmp_path, log_home, monkeypatch):
    from netfabric.models.data import MNIST_FILES

    data = tmp_path / "data"
    (data / "mnist").mkdir(parents=True)
    for name in MNIST_FILES:
        (data / "mnist" / name).write_bytes(b"not mnist")
    monkeypatch.setenv("NETFABRIC_DATA", str(data))
    res = invoke("evaluate", "--dataset", "mnist")  # the shipped checkpoint, corrupt data
    assert_one_line_error(res, log_home, "DataError", "corrupt")


def test_checkpoint_error(tmp_path, log_home):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00garbage")
    res = invoke("evaluate", junk)
    assert_one_line_error(res, log_home, "CheckpointError", "corrupt")


def test_transformer_checkpoint_error(tmp_path, log_home):
    import torch

    stub = tmp_path / "stub.pt"
    torch.save({"kind": "netfabric.transformer"}, stub)  # trained nothing yet
    res = invoke("evaluate", stub)
    assert_one_line_error(res, log_home, "CheckpointError", "has no float weights")


def _fifo_only_graph(path: Path) -> Path:
    """A readable HW-layer graph with no layer to stitch: only a FIFO, which the stitcher
    drops (it places its own)."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    fifo = helper.make_node("StreamingFIFO_rtl", ["x"], ["y"], name="StreamingFIFO_0",
                            domain="finn.custom_op.fpgadataflow.rtl", depth=2)
    graph = helper.make_graph([fifo], "g", [x], [y])
    onnx.save(helper.make_model(graph), str(path))
    return path


def test_stitch_error(tmp_path, log_home):
    graph = _fifo_only_graph(tmp_path / "fifo.onnx")
    res = invoke("bitstream", "--graph", graph, "--out", tmp_path / "bs")
    assert_one_line_error(res, log_home, "StitchError", "no hardware layers")


def test_flow_error(tmp_path, log_home):
    res = invoke("bitstream", "--board", "de10-nano", "--out", tmp_path / "bs")
    assert_one_line_error(res, log_home, "UnknownBoardError", "unknown board 'de10-nano'")


def _frames(tmp_path: Path) -> Path:
    npy = tmp_path / "x.npy"
    np.save(npy, np.zeros((2, 1, 28, 28), np.uint8))
    return npy


def test_simulator_not_found(mlp_graph, tmp_path, log_home, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no perl, make or C++ compiler
    res = invoke("run", mlp_graph, "--backend", "sim", "--input", _frames(tmp_path))
    assert_one_line_error(res, log_home, "SimulatorNotFound", "")


def test_simulation_failed(mlp_graph, tmp_path, log_home, monkeypatch):
    from netfabric.host import sim_backend
    from netfabric.sim import runner

    def failing(toplevel, *args, **kwargs):
        raise runner.SimulationFailed(f"{toplevel} on verilator: 1 of 1 cocotb tests failed")

    monkeypatch.setattr(runner, "run_cocotb", failing)  # a real failure needs a Verilator build
    # the cocotb engine (the compiled harness, the default with Verilator, never calls cocotb)
    monkeypatch.setattr(sim_backend, "default_engine", lambda simulator: "cocotb")
    res = invoke("run", mlp_graph, "--backend", "sim", "--input", _frames(tmp_path))
    assert_one_line_error(res, log_home, "SimulationFailed", "cocotb tests failed")
