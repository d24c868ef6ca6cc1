"""The op registry: one entry per hardware-layer op, every backend's piece hanging off it.

An op (``MVAU``, ``Thresholding``, ``SegmentAttention``...) is defined once, in
``netfabric/ops/defs/``: its integer semantics in numpy (the reference every backend must
equal), its cost model (cycles per frame, resources) and a generator of random single-op
graphs for the conformance test. Backends register their piece for an op with a decorator
in their own stage folder:

    @register_piece("cpu", "MVAU", kind="perm")      # host/: onnxruntime lowering
    @register_piece("rtl", "MVAU")                   # hw/: stitcher stage builder
    @register_piece("triton", "MVAU")                # host/: GPU kernel

Support checks (compile), the CPU engine's dispatch, the stitcher's mapping, ``netfabric ops``
and the conformance test all read this registry; there is no other table of ops. Only numpy
is imported here: the host side runs on boards without FINN.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from netfabric.errors import UnsupportedOpError

# Where each backend registers its pieces. A module that cannot be imported (a backend not
# built yet, or its package missing) leaves that backend's column empty.
BACKEND_MODULES: dict[str, tuple[str, ...]] = {
    "cpu": ("netfabric.host.cpu_engine", "netfabric.host.cpu_lowering_transformer"),
    "rtl": ("netfabric.hw.rtl_ops",),
    "triton": ("netfabric.host.triton_ops",),
}
BACKENDS = tuple(BACKEND_MODULES)
DEFS_PACKAGE = "netfabric.ops.defs"


@dataclass
class Piece:
    """One backend's implementation of one op: ``fn`` plus backend-specific options."""

    backend: str
    op: str
    fn: Callable
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class OpDef:
    """Everything about one HW-layer op that does not depend on a backend.

    semantics(node, streams, graph) -> [outputs]: ``streams`` are the node's stream inputs
        (int64 numpy arrays, batch first, in the graph's layout), outputs likewise.
    cycles(node, graph) -> int: cycles per frame in steady state (the registry's cost model).
    resources(node, graph) -> dict: memory bits, multipliers, ... (the registry's model).
    sample(rng) -> onnx.ModelProto: a random FINN-ONNX graph exercising the op (conformance).
    """

    name: str
    origin: str  # "finn" (an adapter over FINN's class) or "netfabric" (our own op)
    semantics: Callable
    cycles: Callable
    resources: Callable | None = None
    sample: Callable | None = None
    finn_class: str | None = None  # dotted path of the qonnx/FINN class for this op
    values_unchanged: bool = False  # FIFOs, width converters, forks: outputs == input
    doc: str = ""
    pieces: dict[str, Piece] = field(default_factory=dict)

    def adapter(self, onnx_node):
        """The qonnx/FINN class instance for a node of this op: its declared attributes
        (``get_nodeattr_types``), normal and folded stream shapes, stream widths. FINN's ops
        adapt FINN's own classes; netfabric's have theirs in ``hls/custom_ops``. Imports FINN."""
        from netfabric.hls.finn_env import ensure_finn

        ensure_finn()
        module, cls = self.finn_class.rsplit(".", 1)
        return getattr(importlib.import_module(module), cls)(onnx_node)

    def has(self, backend: str) -> bool:
        return backend in self.pieces

    def piece(self, backend: str) -> Piece:
        if backend not in self.pieces:
            raise UnsupportedOpError(
                f"op {self.name} has no {backend} implementation "
                f"(present: {', '.join(['semantics', *sorted(self.pieces)])})")
        return self.pieces[backend]


_OPS: dict[str, OpDef] = {}
_PENDING: list[Piece] = []  # pieces registered before their op's definition was imported
_loaded: set[str] = set()


def define_op(op: OpDef) -> OpDef:
    """Add an op definition (called by the modules of ``netfabric/ops/defs``)."""
    if op.name in _OPS:
        raise ValueError(f"op {op.name} is defined twice")
    if op.origin not in ("finn", "netfabric"):
        raise ValueError(f"op {op.name}: origin must be 'finn' or 'netfabric'")
    _OPS[op.name] = op
    for piece in [p for p in _PENDING if p.op == op.name]:
        op.pieces[piece.backend] = piece
        _PENDING.remove(piece)
    return op


def register_piece(backend: str, op_name: str, **options) -> Callable[[Callable], Callable]:
    """Decorator: ``fn`` is ``backend``'s implementation of ``op_name``."""
    if backend not in BACKEND_MODULES:
        raise ValueError(f"unknown backend {backend!r}; known: {', '.join(BACKENDS)}")

    def deco(fn: Callable) -> Callable:
        piece = Piece(backend, op_name, fn, options)
        if op_name in _OPS:
            _OPS[op_name].pieces[backend] = piece
        else:
            _PENDING.append(piece)
        return fn

    return deco


def _load_defs() -> None:
    if "defs" in _loaded:
        return
    _loaded.add("defs")
    package = importlib.import_module(DEFS_PACKAGE)
    for name in package.MODULES:
        importlib.import_module(f"{DEFS_PACKAGE}.{name}")


def load_backend(backend: str) -> bool:
    """Import the modules that register ``backend``'s pieces; False if one cannot load."""
    _load_defs()
    ok = True
    for module in BACKEND_MODULES[backend]:
        if module in _loaded:
            continue
        try:
            importlib.import_module(module)
            _loaded.add(module)
        except ImportError:
            ok = False
    return ok


def ops(backends: tuple[str, ...] = BACKENDS) -> dict[str, OpDef]:
    """Every registered op, with the pieces of ``backends`` loaded."""
    _load_defs()
    for backend in backends:
        load_backend(backend)
    return dict(_OPS)


def get(op_name: str, backends: tuple[str, ...] = ()) -> OpDef:
    """The definition of ``op_name`` (generic name, no _hls/_rtl suffix)."""
    registry = ops(backends)
    if op_name not in registry:
        raise UnsupportedOpError(
            f"op type {op_name} has no netfabric hardware layer; registered: "
            f"{', '.join(sorted(registry))}")
    return registry[op_name]


def generic_name(op_type: str) -> str:
    """``MVAU_hls`` / ``MVAU_rtl`` -> ``MVAU`` (FINN's specializations share semantics)."""
    for suffix in ("_hls", "_rtl"):
        if op_type.endswith(suffix):
            return op_type.removesuffix(suffix)
    return op_type


def require(op_type: str, backends: tuple[str, ...], node_name: str = "") -> OpDef:
    """The op's definition, or an error naming the node and each missing piece."""
    where = f"node {node_name} ({op_type})" if node_name else f"op {op_type}"
    try:
        op = get(generic_name(op_type), backends)
    except UnsupportedOpError as exc:
        raise UnsupportedOpError(f"{where}: {exc}") from None
    missing = [b for b in backends if not op.has(b)]
    if missing:
        raise UnsupportedOpError(
            f"{where} has no {' / '.join(missing)} implementation in netfabric yet, so it "
            "cannot be run there; `netfabric ops` lists what each op supports")
    return op


def matrix() -> list[dict[str, Any]]:
    """Rows of ``netfabric ops``: op x (semantics, cost model, each backend)."""
    rows = []
    for name, op in sorted(ops().items(), key=lambda kv: (kv[1].origin, kv[0])):
        row = {"op": name, "origin": op.origin, "semantics": op.semantics is not None,
               "cost model": op.cycles is not None and op.resources is not None,
               "conformance": op.sample is not None}
        row.update({b: op.has(b) for b in BACKENDS})
        rows.append(row)
    return rows
