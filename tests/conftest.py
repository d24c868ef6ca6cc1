"""Shared fixtures: the shipped INT8 MLP exported and compiled once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from netfabric import flow


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
