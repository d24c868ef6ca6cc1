"""The CLI as a user runs it: real subprocesses, clear one-line errors, no tracebacks."""

import subprocess
import sys

import pytest


def netfabric(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "netfabric.cli", *args], capture_output=True, text=True, timeout=600
    )


@pytest.mark.parametrize(
    "cmd", ["train", "evaluate", "export", "compile", "run", "bitstream", "demo"]
)
def test_every_command_has_help(cmd):
    res = netfabric(cmd, "--help")
    assert res.returncode == 0 and "Usage:" in res.stdout


@pytest.mark.parametrize(
    "args,message",
    [
        (["compile", "missing.onnx", "--out", "x"], "does not exist"),
        (["run", "missing.onnx"], "does not exist"),
        (["export", "missing.pt", "--out", "x.onnx"], "does not exist"),
        (["run", "{junk}"], "not a readable ONNX"),
    ],
)
def test_bad_input_gives_a_clear_error(args, message, tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00garbage")
    res = netfabric(*[a.format(junk=junk) for a in args])
    assert res.returncode == 2
    assert message in res.stderr and "Traceback" not in res.stderr


def test_run_cpu_backend_on_the_compiled_mlp(mlp_graph):
    res = netfabric("run", str(mlp_graph), "--backend", "cpu", "--count", "500")
    assert res.returncode == 0, res.stderr
    acc = float(res.stdout.split("accuracy ")[1].split("%")[0])
    assert acc >= 97.0


def test_run_rejects_a_bad_npy(mlp_graph, tmp_path):
    import numpy as np

    bad = tmp_path / "x.npy"
    np.save(bad, np.zeros((2, 3), np.uint8))
    res = netfabric("run", str(mlp_graph), "--input", str(bad))
    assert res.returncode == 2 and "shape" in res.stderr


def test_unknown_backend_is_named(mlp_graph):
    res = netfabric("run", str(mlp_graph), "--backend", "fpga9000")
    assert res.returncode == 2 and "unknown backend" in res.stderr
