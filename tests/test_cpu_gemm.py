"""The plan's float GEMM (host/cpu_gemm.py): torch's where the process runs torch with IEEE
float32 matmuls and a pool within the engine's threads, numpy's otherwise; exact integers
either way up to the plan's bound (every partial sum below 2^24 in float32)."""

from __future__ import annotations

import numpy as np
import pytest

from netfabric.host import cpu_gemm


def _worst_case(rows: int, k: int, c: int, dtype):
    """Operands whose partial sums reach just below 2^24: k * 127 * 127 * ... (int8 x int8 at
    k = 1040 sums to 16,774,160 < 2^24)."""
    rng = np.random.default_rng(0)
    x = rng.choice([-127, 127], size=(rows, k)).astype(dtype)
    w = rng.choice([-127, 127], size=(k, c)).astype(dtype)
    x[0], w[:, 0] = 127, 127  # one output at the bound
    return x, w


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gemm_exact_on_both_paths(monkeypatch, dtype):
    torch = pytest.importorskip("torch")
    x, w = _worst_case(300, 1040, 24, dtype)
    want = x.astype(np.int64) @ w.astype(np.int64)
    assert abs(want).max() < 2**24
    f = cpu_gemm.gemm(w)
    threads = torch.get_num_threads()
    monkeypatch.setattr(cpu_gemm, "_threads", threads)
    assert cpu_gemm._torch_exact() is torch
    assert np.array_equal(f(x), want)  # torch's GEMM
    assert np.array_equal(f(x[:10]), want[:10])  # few rows: numpy's
    monkeypatch.setattr(cpu_gemm, "_threads", threads - 1)  # pool larger than the engine's
    assert cpu_gemm._torch_exact() is None
    assert np.array_equal(f(x), want)


def test_rounding_matmul_settings_keep_numpy():
    """"medium" float32 precision (bf16 in oneDNN) could round: torch is not used then."""
    torch = pytest.importorskip("torch")
    before = torch.get_float32_matmul_precision()
    saved = cpu_gemm._threads
    cpu_gemm._threads = torch.get_num_threads()
    try:
        assert cpu_gemm._torch_exact() is torch
        torch.set_float32_matmul_precision("medium")
        assert cpu_gemm._torch_exact() is None
    finally:
        torch.set_float32_matmul_precision(before)
        cpu_gemm._threads = saved
    assert torch.backends.mkldnn.matmul.fp32_precision in ("none", "ieee")
