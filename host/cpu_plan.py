"""The CPU engine's fast path: a HW-layer graph compiled once into a flat list of numpy steps.

Compiling walks the graph once: every tensor gets a register slot, a dtype and a proven
integer range [lo, hi] (from the input type, the weights, the threshold counts), and every node
becomes a closure over its prebound constants. Running is one loop over those closures; no
graph walk, dict lookup or ONNX session per call. numpy, plus numba's one-pass kernels where it
is installed (``cpu_fused.py``; the board side is light: numpy alone runs the same plan).

Integers travel in float32 (or float64) arrays wherever every value *and every partial sum*
of the op that makes them is provably below 2^24 (2^53): BLAS matmuls are then exact
whatever their summation order, and far faster than numpy's integer matmul. Past that, int64.
Each op's plan compiler is the ``plan`` option of its ``cpu`` piece in the op registry:
``fn(plan, node, graph)``; see ``cpu_plan_ops.py`` and ``cpu_plan_transformer.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from netfabric.errors import GraphError
from netfabric.ops.registry import require

F32_EXACT, F64_EXACT = 2**24, 2**53


def exact_dtype(bound: int | float) -> np.dtype:
    """The cheapest dtype in which integers (and sums) up to ``bound`` in magnitude are exact."""
    if bound < F32_EXACT:
        return np.dtype(np.float32)
    if bound < F64_EXACT:
        return np.dtype(np.float64)
    if bound < 2**63:
        return np.dtype(np.int64)
    raise GraphError(f"values up to {bound} do not fit int64")


@dataclass
class Info:
    """What the plan knows about a tensor: slot, dtype, value range, channel order."""

    slot: int
    dtype: np.dtype
    lo: int
    hi: int
    perm: np.ndarray | None = None  # channel i of the array is natural channel perm[i]
    shift: np.ndarray | None = None  # the array holds value + shift[i] in channel i

    @property
    def bound(self) -> int:
        return max(abs(self.lo), abs(self.hi))


class Plan:
    """Compile-time builder and run-time program."""

    def __init__(self, small: bool = False) -> None:
        self.small = small  # for a few rows: fewest numpy calls (see cpu_plan_ops.mvau)
        self.steps: list[Callable[[list], None]] = []
        self.names: list[str] = []  # the tensor each step makes (for profiling)
        self.info: dict[str, Info] = {}
        self.nslots = 0
        # (fn, source slot, result slot) of every step while the plan is a chain of unary
        # steps, each reading the previous result; None once it is not
        self._chain: list[tuple[Callable, int, int]] | None = []

    # -- compile helpers -----------------------------------------------------------------
    def new(self, name: str, dtype, lo: int, hi: int, perm: np.ndarray | None = None,
            shift: np.ndarray | None = None) -> Info:
        info = Info(self.nslots, np.dtype(dtype), int(lo), int(hi), perm, shift)
        self.nslots += 1
        self.info[name] = info
        return info

    def alias(self, name: str, info: Info) -> None:
        self.info[name] = info

    def get(self, name: str, natural: bool = True) -> Info:
        """A tensor's info; with ``natural``, its channels in natural order (an unpermute
        step is added once if needed)."""
        if name not in self.info:
            raise GraphError(f"tensor {name} is not produced earlier")
        info = self.info[name]
        if natural and (info.perm is not None or info.shift is not None):
            inv = np.argsort(info.perm) if info.perm is not None else None
            shift = info.shift
            dtype = exact_dtype(info.bound) if shift is not None else info.dtype

            def natural_order(x):
                if shift is not None:
                    x = np.subtract(x, shift, dtype=dtype)
                return x if inv is None else x.take(inv, axis=-1)
            nat = self.new(name + "#natural", dtype, info.lo, info.hi)
            self.unary(natural_order, info, nat)
            self.info[name] = nat
            return nat
        return info

    def unary(self, fn: Callable, src: Info, dst: Info) -> None:
        i, o = src.slot, dst.slot
        if self._chain is not None:
            last = self._chain[-1][2] if self._chain else 0
            self._chain = self._chain + [(fn, i, o)] if i == last else None

        def step(r: list) -> None:
            r[o] = fn(r[i])
        self.steps.append(step)
        self.names.append(next(k for k, v in self.info.items() if v is dst))

    def nary(self, fn: Callable, srcs: list[Info], dsts: list[Info]) -> None:
        ins, outs = [s.slot for s in srcs], [d.slot for d in dsts]
        self._chain = None

        def step(r: list) -> None:
            res = fn(*[r[i] for i in ins])
            for o, v in zip(outs, res, strict=True):
                r[o] = v
        self.steps.append(step)
        self.names.append(next(k for k, v in self.info.items() if v is dsts[0]))

    # -- run -----------------------------------------------------------------------------
    def run(self, x: np.ndarray, out_slots: list[int]) -> list[np.ndarray]:
        chain = self._chain
        if chain and out_slots == [chain[-1][2]]:  # a chain (an MLP): no register file
            for fn, _, _ in chain:
                x = fn(x)
            return [x]
        r: list = [None] * self.nslots
        r[0] = x
        for step in self.steps:
            step(r)
        return [r[s] for s in out_slots]


def compile_plan(graph, input_lo: int, input_hi: int, outputs: list[str],
                 small: bool = False) -> tuple[Plan, list[Info]]:
    """The plan for ``graph`` whose input integers lie in [input_lo, input_hi]; raises
    UnsupportedOpError when a node's cpu piece has no plan compiler. ``small``: a plan for
    batches of a few rows."""
    plan = Plan(small)
    bound = max(abs(input_lo), abs(input_hi))
    plan.new(graph.input_name, exact_dtype(bound), input_lo, input_hi)
    for node in graph.nodes:
        piece = require(node.op_type, ("cpu",), node.name).piece("cpu")
        compiler = piece.options.get("plan")
        if compiler is None:
            raise NotImplementedError(f"node {node.name}: {node.op_type} has no CPU plan")
        compiler(plan, node, graph)
    return plan, [plan.get(name) for name in outputs]


def has_plan(graph) -> bool:
    """Whether every node's op has a plan compiler."""
    for node in graph.nodes:
        if "plan" not in require(node.op_type, ("cpu",), node.name).piece("cpu").options:
            return False
    return True
