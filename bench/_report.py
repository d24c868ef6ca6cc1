"""Shared by the benchmarks: results JSON + a marked section of bench/RESULTS.md + machine info."""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from netfabric import logs
from netfabric.files import atomic_write

BENCH = Path(__file__).resolve().parent
RESULTS_MD = BENCH / "RESULTS.md"


class BenchArgs(argparse.ArgumentParser):
    """argparse for a benchmark run under :func:`own_output`: its help and usage errors reach
    the terminal (argparse writes to sys.stdout/sys.stderr, which own_output sends to the log)."""

    def _print_message(self, message: str, file=None) -> None:
        if message:
            logs.echo(message.rstrip("\n"), err=file is not sys.stdout)


@contextmanager
def own_output() -> Iterator[None]:
    """A benchmark's run: its own lines (:func:`say`, netfabric's progress) on the terminal,
    everything else (torch's export warnings, onnxruntime, Verilator and Yosys output) in
    netfabric's log file, whose path is printed at the end."""
    logs.start()
    try:
        with logs.captured():
            yield
    finally:
        logs.finish()


def say(*parts: object) -> None:
    """A result line on the terminal, also while :func:`own_output` redirects stdout."""
    logs.echo(" ".join(str(p) for p in parts))


def machine() -> dict:
    import numpy as np

    return {
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "numpy": np.__version__,
    }


def provenance() -> str:
    """Which code on which machine: the commit (``+dirty`` if the tree had changes), the CPU and
    its int8 dot-product support (onnxruntime's and torch's int8 speed depend on VNNI)."""
    import subprocess
    import time

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=BENCH, capture_output=True, text=True,
                                  check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    # the results a benchmark writes do not make the code it measured dirty
    dirty = "+dirty" if git("status", "--porcelain", "--untracked-files=no", "--", ":(top)",
                            ":(exclude,top)bench/results", ":(exclude,top)bench/RESULTS.md") else ""
    cpu, flags = platform.processor() or platform.machine(), set()
    try:
        info = Path("/proc/cpuinfo").read_text()
        cpu = next((ln.split(":", 1)[1].strip() for ln in info.splitlines()
                    if ln.startswith("model name")), cpu)
        flags = set(next((ln.split(":", 1)[1].split() for ln in info.splitlines()
                          if ln.startswith("flags")), []))
    except OSError:
        pass
    vnni = "VNNI" if flags & {"avx512_vnni", "avx_vnni"} else "no VNNI"
    isa = f"{'AVX2' if 'avx2' in flags else 'no AVX2'}, {vnni}" if flags else "ISA unknown"
    return (f"Measured at commit {commit}{dirty} on {cpu} ({os.cpu_count()} cores, {isa}), "
            f"{time.strftime('%Y-%m-%d')}.")


def write_json(name: str, data: dict) -> Path:
    path = BENCH / "results" / f"{name}.json"
    atomic_write(path, json.dumps(data, indent=2))
    return path


def write_section(name: str, markdown: str, stamp: str | None = None) -> None:
    """Replace (or append) the section between <!-- name --> and <!-- /name --> markers.
    ``stamp``: where and at which commit it was measured, when not on this machine (default:
    :func:`provenance`)."""
    text = RESULTS_MD.read_text() if RESULTS_MD.exists() else "# Benchmark results\n"
    block = f"<!-- {name} -->\n{markdown.strip()}\n\n_{stamp or provenance()}_\n<!-- /{name} -->"
    pattern = re.compile(rf"<!-- {re.escape(name)} -->.*?<!-- /{re.escape(name)} -->", re.S)
    text = (
        pattern.sub(lambda _: block, text)
        if pattern.search(text)
        else f"{text.rstrip()}\n\n{block}\n"
    )
    atomic_write(RESULTS_MD, text)
