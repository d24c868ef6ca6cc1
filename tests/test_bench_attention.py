"""The attention bench's memory helpers see a known allocation (no timers asserted)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "attention.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_attention", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_torch_peak_sees_a_known_allocation():
    import torch

    bench = _bench()
    peak = bench.torch_peak_bytes(lambda: torch.ones(1 << 20) + 1)  # two 4 MiB tensors
    assert 8 * 2**20 <= peak < 9 * 2**20


def test_tracemalloc_peak_sees_a_known_allocation():
    import numpy as np

    bench = _bench()
    peak = bench.tracemalloc_peak_bytes(lambda: np.ones(1 << 20, np.float64))  # 8 MiB
    assert 8 * 2**20 <= peak < 9 * 2**20


def test_malloc_shim_sees_a_known_allocation(tmp_path):
    bench = _bench()
    shim = bench.build_malloc_shim(tmp_path)
    if shim is None:
        pytest.skip("no C compiler")
    code = (f"import sys; sys.path.insert(0, {str(BENCH.parent)!r}); import attention, numpy; "
            "print(attention.malloc_peak_bytes(lambda: numpy.ones(1 << 20)))")
    env = {**os.environ, "LD_PRELOAD": str(shim)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout
    assert 8 * 2**20 <= int(out.split()[-1]) < 9 * 2**20
