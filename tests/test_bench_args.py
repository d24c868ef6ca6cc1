"""Benchmarks run with their output sent to netfabric's log file (bench/_report.own_output);
their own help and usage errors must still reach the terminal (bench/_report.BenchArgs)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCH / args[0]), *args[1:]], capture_output=True,
                          text=True, timeout=120)


def test_bad_argument_is_one_line_on_the_terminal():
    proc = _bench("sim_speed.py", "--repeats", "0")
    assert proc.returncode == 2
    assert "sim_speed.py: error: --repeats must be at least 1" in proc.stderr


def test_unknown_option_and_help_reach_the_terminal():
    proc = _bench("cpu_engine.py", "--bogus")
    assert proc.returncode == 2 and "unrecognized arguments: --bogus" in proc.stderr
    proc = _bench("sim_speed.py", "--help")
    assert proc.returncode == 0 and "--compiled-frames" in proc.stdout
