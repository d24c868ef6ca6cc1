"""Shared fixtures: the shipped INT8 MLP exported and compiled once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from netfabric import flow

# The triton backend's kernels run on CPU tensors only under Triton's interpreter, which triton
# reads when a kernel is defined (host/triton_kernels, imported when a TritonBackend is built):
# set it at session start, before any test module can import them. A GPU machine runs the same
# tests compiled with TRITON_INTERPRET=0.
os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(scope="session")
def mlp_qonnx(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mlp") / "mlp.qonnx.onnx"
    return flow.export_checkpoint(flow.DEFAULT_CHECKPOINT, out)


def _compile(qonnx: Path, out: Path, **kwargs) -> Path:
    from netfabric.hls.frontend import CompileConfig

    return flow.compile_model(qonnx, out, CompileConfig(**kwargs))


@pytest.fixture(scope="session")
def mlp_graph(mlp_qonnx, tmp_path_factory) -> Path:
    """Shipped MLP, top-1 LabelSelect at the end, folded for 100k frames/s at 100 MHz."""
    return _compile(mlp_qonnx, tmp_path_factory.mktemp("mlp_hw"), target_fps=100_000)


@pytest.fixture(scope="session")
def mlp_logits_graph(mlp_qonnx, tmp_path_factory) -> Path:
    """Shipped MLP ending in integer logits (no LabelSelect)."""
    return _compile(mlp_qonnx, tmp_path_factory.mktemp("mlp_hw_logits"), label_select=False)


@pytest.fixture(scope="session")
def mnist_test():
    from netfabric.models.data import load_mnist

    return load_mnist("test")


@pytest.fixture(scope="session")
def compile_helper():
    return _compile
