"""The attention bench's memory helpers see a known allocation (no timers asserted)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

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
