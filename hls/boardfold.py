"""Folding for a board: the fastest folding whose predicted resources fit it.

FINN's SetFolding folds for a cycle target; the fit model (``hw/flow/fit.py``) predicts what
the stitched design of a folding uses on the board. Bisection on the target (in log scale)
between "fits" and "does not fit" finds the smallest target that still fits, within
``STEP``; a graph that does not fit even fully folded (PE = SIMD = 1) is refused with the
numbers. Each trial is a copy of the unfolded graph: SetFolding, accumulator widths, and the
stitcher's in-memory plan, about a second for the shipped CNN.

FINN logs a warning per node that misses a target; during the search those go to the log
file at debug level only (:func:`quiet_finn_folding`), and the compile prints one summary
table instead (``layer_bounds``: per layer PE/SIMD, cycles and what bounded it).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from netfabric.errors import CompileError

STEP = 1.05  # stop when the fitting and failing targets are within 5%
FINN_FOLD_LOGGER = "finn_logger"


class _ToDebug(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        logging.getLogger("netfabric.fold").debug("FINN: %s", record.getMessage())
        return False


@contextmanager
def quiet_finn_folding() -> Iterator[None]:
    """FINN's per-node 'did not meet the target' warnings become debug lines of the log."""
    logger = logging.getLogger(FINN_FOLD_LOGGER)
    filt = _ToDebug()
    logger.addFilter(filt)
    try:
        yield
    finally:
        logger.removeFilter(filt)


@dataclass
class Trial:
    target: int
    model: object
    prediction: object  # hw.flow.fit.Prediction
    cycles: int  # the folding's bottleneck, by the registry's cost model


def fold_trial(model, cfg, target: int) -> Trial:
    """A copy of ``model`` folded for ``target`` cycles, with its predicted resources."""
    from qonnx.core.modelwrapper import ModelWrapper

    from netfabric.host.hwgraph import hwgraph_from_proto
    from netfabric.hw.flow.fit import plan_layers, predict
    from netfabric.ops.registry import get

    from .backhalf import fold_for_target

    trial = ModelWrapper(copy.deepcopy(model.model))
    trial = fold_for_target(trial, cfg, target)
    graph = hwgraph_from_proto(trial.model)
    cycles = max(int(get(n.op_type).cycles(n, graph)) for n in graph.nodes)
    return Trial(target, trial, predict(plan_layers(graph), cfg.board), cycles)


def fold_for_board(model, cfg, log=None) -> tuple[object, dict]:
    """The fastest folding that fits ``cfg.board`` (no faster than ``cfg.target_fps`` when
    given); returns the folded model and a record of the search."""
    say = log or (lambda msg: None)
    fastest = cfg.target_cycles() or 1
    slow = fold_trial(model, cfg, 10**12)  # PE = SIMD = 1 everywhere
    if not slow.prediction.fits():
        p = slow.prediction
        raise CompileError(f"no folding fits {cfg.board}: even fully folded (PE = SIMD = 1, "
                           f"{slow.cycles:,} cycles/frame) {p.describe(p.over())}")
    fast = fold_trial(model, cfg, fastest)
    if fast.prediction.fits():
        best, failed = fast, None
    else:
        best, failed = slow, fast
        lo, hi = fastest, max(slow.cycles, fastest + 1)  # lo: does not fit, hi: fits
        while hi > lo * STEP and hi - lo > 1:
            mid = int(round((lo * hi) ** 0.5))
            mid = min(max(mid, lo + 1), hi - 1)
            trial = fold_trial(model, cfg, mid)
            say(f"fold for {cfg.board}: target {mid:,} cycles -> bottleneck {trial.cycles:,}, "
                f"{'fits' if trial.prediction.fits() else 'does not fit'} "
                f"({trial.prediction.binding()} at "
                f"{trial.prediction.fraction(trial.prediction.binding()):.0%})")
            if trial.prediction.fits():
                hi, best = mid, trial
            else:
                lo, failed = mid, trial
    p = best.prediction
    record = {"board": cfg.board, "target_cycles": best.target, "bottleneck_cycles": best.cycles,
              "predicted": p.used, "capacity": p.capacity, "binding": p.binding(),
              "limited_by": (failed.prediction.over() or [failed.prediction.binding()])[0]
              if failed is not None else None}
    return best.model, record
