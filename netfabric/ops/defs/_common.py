"""Helpers the op definitions share: shapes, datatypes, random samples."""

from __future__ import annotations

import numpy as np

from netfabric.errors import GraphError
from netfabric.host.hwgraph import int_type, prod  # noqa: F401 -- shared by the op defs


def param_ints(graph, name: str, what: str) -> np.ndarray:
    """An initializer as int64; thresholds may be stored as floats (compared as ceil)."""
    value = np.asarray(graph.params[name], dtype=np.float64)
    return np.ceil(value).astype(np.int64)


def out_shape(graph, node, batch: int, index: int = 0) -> list[int]:
    return [batch, *graph.shapes[node.outputs[index]][1:]]


def check_width(node, what: str, total: int, lanes: int) -> int:
    if lanes < 1 or total % lanes:
        raise GraphError(f"node {node.name}: {what}={lanes} does not divide {total}")
    return total // lanes


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def random_type(rng: np.random.Generator, max_bits: int = 8, signed: bool | None = None,
                min_bits: int = 2) -> str:
    bits = int(rng.integers(min_bits, max_bits + 1))
    signed = bool(rng.integers(2)) if signed is None else signed
    return f"{'INT' if signed else 'UINT'}{bits}"


def sorted_thresholds(rng, channels: int, steps: int, lo: int, hi: int) -> np.ndarray:
    t = rng.integers(lo, hi + 1, size=(channels, steps), dtype=np.int64)
    return np.sort(t, axis=1)
