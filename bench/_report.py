"""Shared by the benchmarks: results JSON + a marked section of bench/RESULTS.md + machine info."""

from __future__ import annotations

import json
import os
import platform
import re
import sys
from pathlib import Path

from netfabric.files import atomic_write

BENCH = Path(__file__).resolve().parent
RESULTS_MD = BENCH / "RESULTS.md"


def machine() -> dict:
    import numpy as np

    return {
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "numpy": np.__version__,
    }


def write_json(name: str, data: dict) -> Path:
    path = BENCH / "results" / f"{name}.json"
    atomic_write(path, json.dumps(data, indent=2))
    return path


def write_section(name: str, markdown: str) -> None:
    """Replace (or append) the section between <!-- name --> and <!-- /name --> markers."""
    text = RESULTS_MD.read_text() if RESULTS_MD.exists() else "# Benchmark results\n"
    block = f"<!-- {name} -->\n{markdown.strip()}\n<!-- /{name} -->"
    pattern = re.compile(rf"<!-- {re.escape(name)} -->.*?<!-- /{re.escape(name)} -->", re.S)
    text = (
        pattern.sub(lambda _: block, text)
        if pattern.search(text)
        else f"{text.rstrip()}\n\n{block}\n"
    )
    atomic_write(RESULTS_MD, text)
