"""One runtime API over several backends; every backend returns the same integers.

A backend takes a batch in the model's original input layout (raw integer pixels) and returns
the graph's integer output. ``open_backend("auto", ...)`` picks the best one available.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Protocol

import numpy as np

from netfabric.errors import BackendUnavailable


class Backend(Protocol):
    name: str

    def run(self, x: np.ndarray) -> np.ndarray: ...


def _cpu(graph: Path, **kwargs) -> Backend:
    if importlib.util.find_spec("onnxruntime") is None:
        raise BackendUnavailable("the cpu backend needs onnxruntime: pip install onnxruntime")
    from .cpu_engine import CpuEngine

    return CpuEngine(graph, **kwargs)


def _sim(graph: Path, **kwargs) -> Backend:
    try:
        from .sim_backend import SimBackend
    except ImportError as exc:
        raise BackendUnavailable(f"the sim backend is not available: {exc}") from exc
    return SimBackend(graph, **kwargs)


def _pynq(graph: Path, **kwargs) -> Backend:
    if importlib.util.find_spec("pynq") is None:
        raise BackendUnavailable(
            "the pynq backend runs on a PYNQ board (its image ships the `pynq` package) with a "
            "bitstream from `make bitstream BOARD=pynq-z2`; `pynq` is not installed here"
        )
    raise BackendUnavailable("the pynq backend needs a deployed bitstream; none is configured")


def _triton(graph: Path, **kwargs) -> Backend:
    raise BackendUnavailable("the triton (GPU) backend is not part of this release yet")


BACKENDS = {"cpu": _cpu, "sim": _sim, "pynq": _pynq, "triton": _triton}
# Preference order for "auto": real hardware first, the exact CPU engine as the fallback.
AUTO_ORDER = ["pynq", "triton", "cpu"]


def open_backend(name: str, graph: str | Path, **kwargs) -> Backend:
    graph = Path(graph)
    if name == "auto":
        reasons = []
        for candidate in AUTO_ORDER:
            try:
                return BACKENDS[candidate](graph, **kwargs)
            except BackendUnavailable as exc:
                reasons.append(f"{candidate}: {exc}")
        raise BackendUnavailable("no backend available:\n  " + "\n  ".join(reasons))
    if name not in BACKENDS:
        raise BackendUnavailable(f"unknown backend {name!r}; choose from auto, {', '.join(BACKENDS)}")
    return BACKENDS[name](graph, **kwargs)
