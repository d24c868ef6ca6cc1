"""A runtime over a chain of backends: partitions by op support, falls back on failures.

``FallbackRuntime(graph, ["sim", "cpu"]).run(x)``:

* **Partitioning.** A backend implements a set of ops (the op registry's column for cpu /
  triton / RTL, or a board design's own ``ops``). The graph is cut into consecutive parts at
  single-tensor cuts (``partition.py``) and each part runs on the first backend of the chain
  that implements all its ops, the integer tensor at each cut passed on to the next part. A
  graph one backend runs whole is one part, opened on the original file.
* **Fallback.** The batch goes through in chunks of ``chunk`` inputs. When a backend raises
  while running a chunk (device error, timeout, lost board: any exception), it is marked
  failed and that chunk and every later one go to the next backend implementing the part. So
  each input is answered exactly once, in order; ``answered_by`` counts who answered how
  many and ``failovers`` records each move with its reason. A ``ValueError`` (the backends'
  input checks: wrong shape, values out of range) is the caller's error and propagates.

Backends are opened when first needed; one that cannot open (missing package or device) is
skipped with the reason, kept in ``skipped`` and logged.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from netfabric.errors import BackendFailure, BackendUnavailable, UnsupportedOpError

from . import partition as parts_mod
from . import runtime
from .hwgraph import prod

log = logging.getLogger("netfabric.runtime")
DEFAULT_CHUNK = 256


def reason_of(exc: BaseException) -> str:
    """An exception as one short line: its type and first line."""
    first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


@dataclass
class Part:
    """Nodes ``start..stop-1`` of the graph and the backends that can run them."""

    start: int
    stop: int
    nodes: list[str]
    candidates: list[str]  # chain order
    path: Path | None = None
    backend: str | None = None  # the one answering now
    answered_by: dict[str, int] = field(default_factory=dict)

    @property
    def label(self) -> str:
        if len(self.nodes) == 1:
            return f"node {self.nodes[0]}"
        return f"nodes {self.nodes[0]}..{self.nodes[-1]} ({len(self.nodes)})"


@dataclass
class Failover:
    """A backend that failed mid-batch, and where its unanswered inputs went."""

    backend: str
    reason: str
    answered: int  # inputs of this call the part had answered before the failure
    moved: int  # inputs of this call moved on
    to: str
    part: str  # the part's label


class FallbackRuntime:
    """The graph on a chain of backends (see the module docstring). ``options`` go to every
    backend's constructor that takes them (``port=``, ``threads=``, ``simulator=``);
    ``factories`` add or replace backends by name (a constructor ``(graph_path, **options)``);
    ``checks`` give, by name, a reason to pass over a backend that loads (``auto``'s policy)."""

    def __init__(self, graph: str | Path, chain: Sequence[str], *, fallback: bool = True,
                 chunk: int = DEFAULT_CHUNK, options: Mapping[str, Any] | None = None,
                 factories: Mapping[str, Callable[..., runtime.Backend]] | None = None,
                 workdir: str | Path | None = None,
                 checks: Mapping[str, Callable[[], str | None]] | None = None) -> None:
        import onnx

        from .hwgraph import load_hwgraph

        if chunk < 1:
            raise ValueError(f"chunk must be at least 1, not {chunk}")
        self.graph_path = Path(graph)
        self.graph = load_hwgraph(self.graph_path)  # clear errors for a missing/corrupt file
        self._model = onnx.load(str(self.graph_path))
        self.chain, self.fallback, self.chunk = list(chain), fallback, chunk
        self.options = dict(options or {})
        self._factories = dict(factories or {})
        self._workdir = Path(workdir) if workdir else None
        self.skipped: dict[str, str] = {}  # backend -> why it is not used
        self.failed: dict[str, str] = {}  # backend -> why it failed mid-run
        self.failovers: list[Failover] = []
        self._constructors: dict[str, Callable[..., runtime.Backend]] = {}
        self._ops: dict[str, frozenset[str] | None] = {}
        self._open: dict[tuple[str, int, int], runtime.Backend] = {}
        self._ops_of_node = [n.op_type for n in self.graph.nodes]  # generic names
        for name in self.chain:
            try:
                ctor = self._factories.get(name) or runtime.load(name)
            except (BackendUnavailable, ImportError) as exc:
                self._skip(name, str(exc))
                continue
            check = (checks or {}).get(name)
            if name not in self._factories and check and (reason := check()):
                self._skip(name, reason)  # loads, but `auto` should not pick it (see runtime)
                continue
            self._constructors[name] = ctor
            self._ops[name] = runtime.implemented_ops(name, ctor)
        if not self._constructors:
            raise self._nothing_available()
        self.parts = self._plan_and_open()

    # -- planning ------------------------------------------------------------------------------

    def _available(self) -> list[str]:
        return [n for n in self.chain if n in self._constructors and n not in self.skipped
                and n not in self.failed]

    def _plan(self) -> list[Part]:
        """Blocks between valid cuts, each on the backends implementing all its ops; runs of
        blocks with the same backends merged into one part."""
        avail = self._available()
        if not avail:
            raise self._nothing_available()
        parts: list[Part] = []
        for block in parts_mod.blocks(self._model):
            ops = set(self._ops_of_node[block.start:block.stop])
            cands = [n for n in avail if self._ops[n] is None or ops <= self._ops[n]]
            if not cands:
                raise self._unsupported(block, avail)
            if parts and parts[-1].candidates == cands:
                parts[-1].stop = block.stop
            else:
                parts.append(Part(block.start, block.stop, [], cands))
        for p in parts:
            p.nodes = [n.name for n in self._model.graph.node[p.start:p.stop]]
        return parts

    def _plan_and_open(self) -> list[Part]:
        """Plan, then open each part's first backend. A backend that cannot open, or whose
        opened instance declares fewer ops, changes the plan: plan again."""
        while True:
            parts = self._plan()
            if all(self._open_first(p, len(parts) == 1) for p in parts):
                used = {(p.backend, p.start, p.stop) for p in parts}
                for key in [k for k in self._open if k not in used]:  # from an earlier plan
                    _close(self._open.pop(key))
                for p in parts:
                    log.info("%s runs on %s", p.label, p.backend)
                return parts

    def _path(self, p: Part, whole: bool) -> Path:
        if whole:
            return self.graph_path
        if p.path is None:
            folder = self._workdir
            if folder is None:
                from netfabric.paths import cache_dir

                digest = hashlib.sha256(self.graph_path.read_bytes()).hexdigest()[:12]
                folder = cache_dir("partitions", digest)
            p.path = parts_mod.save_part(self._model, p.start, p.stop, folder)
        return p.path

    def _open_first(self, p: Part, whole: bool) -> bool:
        """Open the first usable candidate of ``p``; False if the plan must change."""
        for name in p.candidates:
            if name in self.skipped or name in self.failed:
                continue
            try:
                self._instance(name, p, whole)
            except _Replan:
                return False
            p.backend = name
            return True
        raise AssertionError("a planned part always has an available candidate")

    def _instance(self, name: str, p: Part, whole: bool) -> runtime.Backend:
        key = (name, p.start, p.stop)
        if key in self._open:
            return self._open[key]
        ctor = self._constructors[name]
        try:
            backend = ctor(self._path(p, whole), **runtime.accepted_options(ctor, self.options))
        except (BackendUnavailable, ImportError) as exc:  # probing: not on this host
            self._skip(name, str(exc))
            raise _Replan from exc
        except ValueError:
            raise
        except Exception as exc:  # any other reason it cannot open: the next one, if allowed
            if not self.fallback:
                raise
            self._skip(name, reason_of(exc))
            raise _Replan from exc
        declared = getattr(backend, "ops", None)
        if isinstance(declared, set | frozenset | list | tuple):
            missing = set(self._ops_of_node[p.start:p.stop]) - set(declared)
            if missing:  # a board design without some op: plan around it
                self._ops[name] = frozenset(declared)
                _close(backend)  # frees its device for the parts it will be opened on
                log.info("the %s backend's design lacks %s", name, ", ".join(sorted(missing)))
                raise _Replan
        self._open[key] = backend
        return backend

    def _skip(self, name: str, reason: str) -> None:
        self.skipped[name] = reason
        order = {n: i for i, n in enumerate(self.chain)}  # report in the order probed
        self.skipped = dict(sorted(self.skipped.items(), key=lambda kv: order.get(kv[0], 0)))
        log.info("backend %s skipped: %s", name, reason)

    def _nothing_available(self) -> BackendUnavailable:
        reasons = {**self.skipped, **self.failed}
        if len(reasons) == 1:
            return BackendUnavailable(next(iter(reasons.values())))
        return BackendUnavailable("no backend available: " + "; ".join(
            f"{n}: {r}" for n, r in reasons.items()))

    def _unsupported(self, block: parts_mod.Block, avail: list[str]) -> UnsupportedOpError:
        for node, op in zip(self._model.graph.node[block.start:block.stop],
                            self._ops_of_node[block.start:block.stop], strict=True):
            lacking = [n for n in avail if self._ops[n] is not None and op not in self._ops[n]]
            if len(lacking) == len(avail):
                return UnsupportedOpError(
                    f"node {node.name} ({op}) has no implementation on {' / '.join(avail)}, "
                    "so it cannot be run there; `netfabric ops` lists what each op supports")
        nodes = self._model.graph.node
        return UnsupportedOpError(
            f"nodes {nodes[block.start].name}..{nodes[block.stop - 1].name} cannot be split at "
            f"a single tensor and no one backend of {' / '.join(avail)} implements them all")

    # -- running -------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The backend answering now (``sim+cpu`` when parts run on different ones)."""
        names = list(dict.fromkeys(p.backend for p in self.parts if p.backend))
        return "+".join(names)

    @property
    def answered_by(self) -> dict[str, int]:
        """Inputs each backend answered (summed over the parts it ran)."""
        total: dict[str, int] = {}
        for p in self.parts:
            for name, n in p.answered_by.items():
                total[name] = total.get(name, 0) + n
        return total

    def _input_ndim(self) -> int:
        shape = json.loads(self.graph.metadata.get("host_input_shape", "null") or "null")
        return len(shape or self.graph.input_shape)

    def run(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim == self._input_ndim() - 1:  # one input without its batch axis
            x = x[None]
        n = len(x)
        if n == 0:  # nothing to answer (onnxruntime refuses some empty batches)
            from .hwgraph import apply_host_steps

            empty = np.zeros([0, *self.graph.output_shape[1:]], np.int64)
            return apply_host_steps(empty, self.graph.host_steps("host_post"))
        done = [0] * len(self.parts)
        outs = []
        for start in range(0, n, self.chunk):
            y = x[start:start + self.chunk]
            for k, p in enumerate(self.parts):
                y = self._run_part(p, k, y, n, done[k])
                done[k] += len(y)
            outs.append(y)
        if len(outs) == 1:
            return outs[0]
        # backends agree on values per input; give every chunk the first one's layout
        return np.concatenate([o.reshape(len(o), *outs[0].shape[1:]) for o in outs])

    def _run_part(self, p: Part, k: int, xs: np.ndarray, total: int, done: int) -> np.ndarray:
        last = k == len(self.parts) - 1
        shape = None if last else [len(xs), *self.graph.shapes[
            parts_mod.boundary_tensor(self._model, p.stop)][1:]]
        while True:
            if p.backend in self.failed:  # failed on another part: a lost board loses all
                self._move(p, p.backend, self.failed[p.backend], done, total - done)
            name, backend = self._current(p)
            try:
                y = np.asarray(backend.run(xs))
                if len(y) != len(xs) or (shape is not None and y.size != prod(shape)):
                    raise BackendFailure(f"answered {len(y)} inputs with shape {list(y.shape)} "
                                         f"for {len(xs)} inputs")
            except ValueError:
                raise  # the input's fault (shape, range), not the backend's
            except Exception as exc:  # any failure of the backend moves the inputs on
                self._fail(p, name, exc, done, total - done)
                continue
            p.answered_by[name] = p.answered_by.get(name, 0) + len(xs)
            return y if shape is None else y.reshape(shape)

    def _current(self, p: Part) -> tuple[str, runtime.Backend]:
        """The backend answering ``p`` now, opening the next candidate if it cannot open."""
        whole = len(self.parts) == 1
        while p.backend is not None:
            try:
                return p.backend, self._instance(p.backend, p, whole)
            except _Replan:  # cannot open, or lacks an op of p: the next candidate
                p.candidates = [c for c in p.candidates if c != p.backend]
                p.backend = self._next_candidate(p)
        raise BackendFailure(f"no backend left for {p.label}: " + "; ".join(
            f"{n}: {self.failed.get(n) or self.skipped.get(n, 'not tried')}"
            for n in p.candidates))

    def _next_candidate(self, p: Part) -> str | None:
        return next((n for n in p.candidates if n not in self.failed and n not in self.skipped
                     and n in self._constructors), None)

    def _fail(self, p: Part, name: str, exc: Exception, answered: int, moved: int) -> None:
        """Backend ``name`` raised ``exc`` on ``p``: mark it failed and move on (with
        fallback), else raise (a netfabric error as it is, others as BackendFailure)."""
        from netfabric.errors import NetfabricError

        reason = reason_of(exc)
        if not self.fallback:
            if isinstance(exc, NetfabricError):
                raise exc
            raise BackendFailure(f"the {name} backend failed after {answered} of "
                                 f"{answered + moved} inputs: {reason}") from exc
        self.failed[name] = reason
        log.warning("backend %s failed on %s after %d inputs: %s", name, p.label, answered,
                    reason)
        log.debug("the %s backend's error", name, exc_info=exc)
        self._move(p, name, reason, answered, moved, exc)

    def _move(self, p: Part, name: str, reason: str, answered: int, moved: int,
              exc: Exception | None = None) -> None:
        p.backend = self._next_candidate(p)
        try:
            nxt, _ = self._current(p)
        except BackendFailure as none_left:
            raise none_left from exc
        self.failovers.append(Failover(name, reason, answered, moved, nxt, p.label))
        log.warning("%d inputs of %s moved from %s to %s", moved, p.label, name, nxt)

    def close(self) -> None:
        """Close the backends that hold a device (serial port, board)."""
        for backend in self._open.values():
            _close(backend)
        self._open.clear()

    def __enter__(self) -> FallbackRuntime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _close(backend: runtime.Backend) -> None:
    close = getattr(backend, "close", None)
    if callable(close):
        close()


class _Replan(Exception):
    """Internal: a backend could not open a part; plan (or pick a candidate) again."""
