"""Third-party warnings and logs go to a log file whose path is printed, not to the console;
`netfabric -v` shows them on the console instead."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner

from netfabric import flow, logs
from netfabric.cli import main

WARNING = "brevitas: fast kernels not found, says a library"
LOG_LINE = "qonnx: folding a constant, says a library"


@pytest.fixture
def log_home(tmp_path, monkeypatch) -> Path:
    monkeypatch.delenv("NETFABRIC_CACHE", raising=False)  # it overrides XDG_CACHE_HOME
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "netfabric" / "logs"


@pytest.fixture
def noisy_export(monkeypatch, tmp_path):
    """`netfabric export`, with the library call replaced by one that warns and logs."""

    def export_checkpoint(checkpoint, out):
        warnings.warn(WARNING, UserWarning, stacklevel=1)
        logging.getLogger("qonnx.transformation").warning(LOG_LINE)
        Path(out).write_text("onnx")
        return Path(out)

    monkeypatch.setattr(flow, "export_checkpoint", export_checkpoint)
    return ["export", "--out", str(tmp_path / "m.onnx")]


def test_log_dir_follows_xdg(log_home):
    assert logs.log_dir() == log_home


def test_third_party_output_goes_to_the_log_file(noisy_export, log_home):
    res = CliRunner().invoke(main, noisy_export)
    assert res.exit_code == 0, res.output
    assert WARNING not in res.output and LOG_LINE not in res.output
    assert "wrote " in res.output
    [log_file] = log_home.glob("netfabric-*.log")
    text = log_file.read_text()
    assert WARNING in text and LOG_LINE in text
    assert str(log_file) in res.output  # the path is printed
    # the redirection ends with the command
    assert logs.log_path() is None
    assert not any(getattr(h, "baseFilename", "") == str(log_file)
                   for h in logging.getLogger().handlers)
    assert warnings.showwarning.__module__ != "logging"


def test_verbose_shows_them_on_the_console(noisy_export, log_home):
    res = CliRunner().invoke(main, ["-v", *noisy_export])
    assert res.exit_code == 0, res.output
    assert WARNING in res.output and LOG_LINE in res.output
    assert not list(log_home.glob("netfabric-*.log"))


def test_nothing_logged_means_no_log_file(log_home):
    res = CliRunner().invoke(main, ["run", "--help"])
    assert res.exit_code == 0 and "full log" not in res.output
    assert not list(log_home.glob("*"))


def test_an_error_is_one_line_and_its_traceback_is_logged(log_home):
    res = CliRunner().invoke(main, ["run", "x.onnx", "--backend", "nope"])
    assert res.exit_code == 2
    assert "full log" not in res.stderr  # the error itself is one line on stderr
    # the traceback of the error was logged, so the file stays and its path is printed
    assert list(log_home.glob("netfabric-*.log")) and "full log" in res.stdout


def test_subprocess_and_print_output_is_captured(tmp_path, log_home):
    """A real process: third-party prints and stderr writes (fds 1 and 2) reach the log file,
    netfabric's own lines the terminal."""
    code = (
        "import os, sys, click\n"
        "from netfabric import cli, logs\n"
        "@cli.main.command()\n"
        "@cli._guard\n"
        "def noisy():\n"
        "    print('a library prints this')\n"
        "    os.system('echo a tool writes this >&2')\n"
        "    logs.echo('netfabric says this')\n"
        "cli.main(['noisy'])\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "NETFABRIC_CACHE"}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert "netfabric says this" in res.stdout
    assert "a library prints this" not in res.stdout + res.stderr
    assert "a tool writes this" not in res.stdout + res.stderr
    [log_file] = log_home.glob("netfabric-*.log")
    text = log_file.read_text()
    assert "a library prints this" in text and "a tool writes this" in text
    assert f"(full log: {log_file})" in res.stdout
