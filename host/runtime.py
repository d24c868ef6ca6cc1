"""One runtime API over several backends; every backend returns the same integers.

A backend takes a batch in the model's original input layout (raw integer pixels) and returns
the graph's integer output. ``open_backend(name, graph)`` opens one; ``open_backend("auto",
graph)`` probes the boards first (fpga, pynq), then the GPU (triton), then the exact CPU
engine, logs why each was skipped, and returns a :class:`~netfabric.host.fallback.FallbackRuntime`
that moves the unanswered inputs to the next backend when one fails mid-batch and runs the ops
a backend lacks on the next one (see ``fallback.py``).

Backends are imported lazily: a module that is missing, or that raises
:class:`~netfabric.errors.BackendUnavailable` or ``ImportError``, makes that backend
unavailable with the reason.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from netfabric.errors import BackendUnavailable

if TYPE_CHECKING:
    from .fallback import FallbackRuntime

log = logging.getLogger("netfabric.runtime")


class Backend(Protocol):
    name: str

    def run(self, x: np.ndarray) -> np.ndarray: ...


def _import(module: str, attr: str, what: str) -> tuple[Any, Any]:
    """``netfabric.host.<module>.<attr>``, or BackendUnavailable saying why not."""
    full = f"netfabric.host.{module}"
    try:
        mod = importlib.import_module(full)
    except ImportError as exc:
        if exc.name == full:
            raise BackendUnavailable(f"the {what} backend is not part of this installation "
                                     f"({full} is missing)") from exc
        raise BackendUnavailable(f"the {what} backend cannot load: {exc}") from exc
    cls = getattr(mod, attr, None)
    if cls is None:
        raise BackendUnavailable(f"the {what} backend cannot load: {full} has no {attr}")
    return mod, cls


def _cpu() -> Callable[..., Backend]:
    if importlib.util.find_spec("onnxruntime") is None:
        raise BackendUnavailable("the cpu backend needs onnxruntime: pip install onnxruntime")
    from .cpu_engine import CpuEngine

    return CpuEngine


def _sim() -> Callable[..., Backend]:
    if importlib.util.find_spec("cocotb") is None:
        raise BackendUnavailable("the sim backend needs cocotb: pip install 'netfabric[sim]'")
    return _import("sim_backend", "SimBackend", "sim")[1]


def _triton() -> Callable[..., Backend]:
    mod, cls = _import("triton_backend", "TritonBackend", "triton (GPU)")
    availability = getattr(mod, "triton_availability", None)
    reason = availability() if availability else None
    if reason:
        raise BackendUnavailable(reason)
    return cls


def _fpga() -> Callable[..., Backend]:
    return _import("fpga_backend", "FpgaBackend", "fpga (open board over UART)")[1]


def _pynq() -> Callable[..., Backend]:
    try:
        return _import("pynq_backend", "PynqBackend", "pynq")[1]
    except BackendUnavailable:
        if importlib.util.find_spec("pynq") is None:
            raise BackendUnavailable(
                "the pynq backend runs on a PYNQ board (its image ships the `pynq` package) "
                "with a bitstream from `make bitstream BOARD=pynq-z2`; `pynq` is not installed "
                "here") from None
        raise


# name -> loader returning the backend's constructor ``(graph_path, **options) -> Backend``
LOADERS: dict[str, Callable[[], Callable[..., Backend]]] = {
    "cpu": _cpu, "sim": _sim, "triton": _triton, "fpga": _fpga, "pynq": _pynq}
BACKENDS = tuple(LOADERS)
# Preference order for "auto": the boards first, then the GPU, the exact CPU engine last.
AUTO_ORDER = ("fpga", "pynq", "triton", "cpu")
# The op registry's column saying which ops a backend implements. The boards run designs
# stitched from the RTL library; a board backend whose design holds fewer ops says so with an
# ``ops`` attribute (class or instance), which takes precedence.
OP_COLUMN = {"cpu": "cpu", "sim": "rtl", "triton": "triton", "fpga": "rtl", "pynq": "rtl"}


def load(name: str) -> Callable[..., Backend]:
    """The constructor of backend ``name``; BackendUnavailable if it cannot run here."""
    if name not in LOADERS:
        raise BackendUnavailable(f"unknown backend {name!r}; choose from auto, {', '.join(BACKENDS)}")
    return LOADERS[name]()


def implemented_ops(name: str, constructor: Any = None) -> frozenset[str] | None:
    """Generic op names backend ``name`` implements: its declared ``ops`` if it has them,
    else the registry's column; None for a backend without either (assumed to run any op)."""
    declared = getattr(constructor, "ops", None)
    if isinstance(declared, set | frozenset | list | tuple):
        return frozenset(declared)
    column = OP_COLUMN.get(name)
    if column is None:
        return None
    from netfabric.ops import registry

    return frozenset(op for op, d in registry.ops((column,)).items() if d.has(column))


def accepted_options(constructor: Callable, options: dict[str, Any]) -> dict[str, Any]:
    """The options ``constructor`` takes (all of them if it takes ``**kwargs``), None values
    dropped: one set of options (``port=``, ``threads=``) serves every backend of a chain."""
    options = {k: v for k, v in options.items() if v is not None}
    try:
        params = inspect.signature(constructor).parameters.values()
    except (TypeError, ValueError):  # no signature to read: pass everything
        return options
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return options
    names = {p.name for p in params}
    return {k: v for k, v in options.items() if k in names}


def chain_for(name: str, fallback: bool) -> list[str]:
    """The backends tried for ``--backend name``: with ``fallback``, ``name`` then the ones
    after it in the auto order (the simulator: then the CPU engine)."""
    if name == "auto":
        return list(AUTO_ORDER)
    if name not in LOADERS:
        raise BackendUnavailable(f"unknown backend {name!r}; choose from auto, {', '.join(BACKENDS)}")
    if not fallback:
        return [name]
    rest = AUTO_ORDER[AUTO_ORDER.index(name) + 1:] if name in AUTO_ORDER else ("cpu",)
    return [name, *[b for b in rest if b != name]]


def open_backend(name: str, graph: str | Path, *, fallback: bool | None = None, **kwargs) -> Backend:
    """Open backend ``name`` on a HW-layer graph file.

    ``auto`` (and any name with ``fallback=True``) returns a
    :class:`~netfabric.host.fallback.FallbackRuntime` over :func:`chain_for`'s chain: it
    exposes ``skipped`` (backend -> why it was not used), ``answered_by`` and ``failovers``.
    Each backend of such a chain gets the ``kwargs`` its constructor takes. A single named
    backend without fallback is returned as it is and gets every keyword argument.
    """
    if fallback is None:
        fallback = name == "auto"
    if name == "auto" or fallback:
        return open_runtime(name, graph, fallback=fallback, **kwargs)
    return load(name)(Path(graph), **kwargs)


def open_runtime(name: str, graph: str | Path, *, fallback: bool | None = None,
                 chunk: int | None = None, workdir: str | Path | None = None,
                 **options) -> FallbackRuntime:
    """Like :func:`open_backend`, but always a :class:`FallbackRuntime` (a chain of one
    backend without ``fallback``), so callers can report ``answered_by`` for any backend.
    ``fallback`` defaults to on for ``auto`` and off for a named backend."""
    from .fallback import DEFAULT_CHUNK, FallbackRuntime

    if fallback is None:
        fallback = name == "auto"
    return FallbackRuntime(graph, chain_for(name, fallback), fallback=fallback,
                           chunk=chunk or DEFAULT_CHUNK, options=options, workdir=workdir,
                           checks=AUTO_CHECKS if name == "auto" else None)


def _interpreter_only() -> str | None:
    """Why ``auto`` passes over triton on a host without a CUDA GPU where the kernels would
    run under Triton's interpreter (set for the tests): exact, but far slower than the CPU
    engine. ``--backend triton`` still runs it there."""
    import sys

    if "torch" not in sys.modules and importlib.util.find_spec("torch") is None:
        return None
    import torch

    if torch.cuda.is_available():
        return None
    return ("no CUDA GPU: the Triton kernels would only run under the interpreter (exact but "
            "slow); `--backend triton` runs them anyway")


# What `auto` asks of a backend beyond loading: a reason to pass it over, or None.
AUTO_CHECKS: dict[str, Callable[[], str | None]] = {"triton": _interpreter_only}
