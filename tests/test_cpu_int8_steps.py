"""The int8 chain's step columns (host/cpu_int8.py, ``Steps``): a layer's single-point
threshold fixes as extra output columns ``[acc >= point]`` that the next layer weighs with
+-the fixed channel's weights. Exact on every accumulator value, caught by the probe when a
column is off, and not taken where it would not be exact or no kernel could take it."""

from __future__ import annotations

import numpy as np
import pytest
from test_cpu_int8_gemm import LEVELS, _chain, _inputs, _thresholds

from netfabric.host import cpu_int8
from netfabric.host.cpu_engine import CpuEngine
from netfabric.host.cpu_thresholds import ThresholdEval
from netfabric.host.hwgraph import load_hwgraph
from netfabric.ops.execute import run_graph


def _next_layer(channels: int, w: np.ndarray | None = None, x_lo: int = 0) -> cpu_int8.Layer:
    w = np.ones((channels, 3), np.int64) if w is None else w
    return cpu_int8.Layer(None, w, 0, x_lo, x_lo + LEVELS)


def _plan(ev: ThresholdEval, nxt: cpu_int8.Layer, k: int = 20) -> cpu_int8.Steps | None:
    """``step_plan`` for a layer of ``k`` inputs with thresholds ``ev``."""
    return cpu_int8.step_plan(cpu_int8.Layer(None, np.ones((k, ev.channels), np.int64), 0,
                                             0, 255, ev=ev), nxt)


def _ev(lo: int, hi: int, seed: int, act: int = 0, all_line: bool = True,
        shared: bool = False) -> ThresholdEval:
    """Thresholds with FINN-like one-off fixes, ``seed`` picked so that the line is float32
    with fixes of both signs, and every channel a line (``all_line``) or not; ``shared``:
    the first row for all channels."""
    thr = _thresholds(np.random.default_rng(seed), "fixes", 12, lo * 4, hi * 4)
    thr = thr[:1] if shared else thr
    ev = ThresholdEval(thr, 12, lo, hi, act, np.float32, permutable=True)
    assert ev.kind == "line" and ev.good.all() == all_line and ev.line[0].dtype == np.float32
    assert np.any(ev.deltas > 0) and np.any(ev.deltas < 0)
    return ev


def _run(ev: ThresholdEval, steps: cpu_int8.Steps, zero: int, acc: np.ndarray) -> np.ndarray:
    from onnx import TensorProto

    model = cpu_int8.threshold_model(ev, zero, TensorProto.INT64, steps=steps)
    run = cpu_int8.session(model, 1).run
    return run(None, {"acc": steps.insert(acc, acc[:, steps.cols]).astype(np.int32)})[0]


@pytest.mark.parametrize("zero,act,seed,all_line,shared", [
    (0, 0, 12, True, False), (128, -8, 12, True, False), (0, 0, 10, False, False),
    (128, -8, 3, False, False), (0, 0, 2, True, True), (128, -8, 2, True, True)])
def test_steps_on_every_integer(zero, act, seed, all_line, shared):
    """Line columns plus their steps, weighed as the next layer does, give the count on every
    accumulator value of the range (channels of the table search as before), and the probe
    agrees."""
    lo, hi = -3000, 5000
    ev = _ev(lo, hi, seed, act, all_line, shared)
    steps = _plan(ev, _next_layer(ev.channels, x_lo=act))
    fixes = np.count_nonzero(cpu_int8._ordered_fixes(ev)[1])  # (a shared row's: per channel)
    assert steps is not None and len(steps.cols) == 2 * fixes
    assert steps.at == cpu_int8.n_line(ev) == (ev.channels if all_line else ev.good.sum())
    assert cpu_int8.probe_steps(ev, steps, zero, cpu_int8._I64)
    x = np.tile(np.arange(lo, hi + 1)[:, None], (1, ev.channels))[:, ev.order]
    got = _run(ev, steps, zero, x) - zero
    stepped = got[:, steps.at : steps.at + len(steps.cols)]
    fixed = np.delete(got, np.arange(steps.at, steps.at + len(steps.cols)), axis=1)
    np.add.at(fixed.T, steps.cols, (steps.signs * stepped).T)
    thr = np.broadcast_to(ev.thr, (ev.channels, ev.thr.shape[1]))[ev.order]
    want = (x[..., None] >= thr).sum(-1) + act
    assert np.array_equal(fixed, want)
    assert set(np.unique(stepped)) == {0, 1}


def test_step_probe_catches_an_off_column():
    """A line column nudged to step early, or a step column one value late, fails the probe."""
    ev = _ev(-20000, 20000, 0)
    steps = _plan(ev, _next_layer(ev.channels))
    assert cpu_int8.probe_steps(ev, steps, 0, cpu_int8._U8)
    late = cpu_int8.Steps(steps.cols, steps.points.copy(), steps.signs, steps.at)
    late.points[0] += 1
    assert not cpu_int8.probe_steps(ev, late, 0, cpu_int8._U8)
    a, b, clo, chi = ev.line
    b = b.copy()
    b[ev.order[0]] += a[ev.order[0]] * 1.5  # the first column steps 1-2 values early
    ev.line = (a, b, clo, chi)
    assert not cpu_int8.probe_steps(ev, steps, 0, cpu_int8._U8)


def test_steps_not_taken_where_not_exact_or_not_representable():
    ev = _ev(-3000, 5000, 12)
    assert _plan(ev, _next_layer(ev.channels)) is not None
    # float32 steps over a range this wide: 1 - point * 2^-m is no float32
    wide = _ev(-6_000_000, 6_000_000, 23)
    assert not cpu_int8.steps_exact(wide)
    assert _plan(wide, _next_layer(wide.channels)) is None
    # the next layer's inputs have no 0 (ActVal 1): a step's 0 would be out of its range
    assert _plan(ev, _next_layer(ev.channels, x_lo=1)) is None
    # a weight -128 of a channel whose fix steps early: its row -w = 128 is no int8, and
    # the other weights' range (with -128) is no uint8 either
    c = int(np.flatnonzero((cpu_int8._ordered_fixes(ev)[1] > 0).any(0))[0])
    w = np.ones((ev.channels, 3), np.int64)
    w[c, 1] = -128
    assert _plan(ev, _next_layer(ev.channels, w)) is None
    w[c, 1] = 127  # -127 fits: taken
    assert _plan(ev, _next_layer(ev.channels, w)) is not None
    # no fixes: nothing to move
    ev.deltas = np.zeros_like(ev.deltas)
    assert _plan(ev, _next_layer(ev.channels)) is None


def test_steps_not_taken_beyond_their_share(monkeypatch):
    """Step columns that would add more than STEPS_MAX_MACS multiply-adds per row to this
    GEMM and the next: the fix ops cost less."""
    ev = _ev(-3000, 5000, 12)
    macs = 2 * np.count_nonzero(ev.deltas) * (20 + 3)
    monkeypatch.setattr(cpu_int8, "STEPS_MAX_MACS", macs)
    assert _plan(ev, _next_layer(ev.channels)) is not None
    assert _plan(ev, _next_layer(ev.channels), k=21) is None


def _fixes_chain(tmp_path):
    rng = np.random.default_rng(400)
    widths = [40, 24, 16, 10]
    path = _chain(tmp_path, rng, widths, "UINT8", ["INT8"] * 3, ["fixes", "line", "none"],
                  [0, 0, 0])
    graph = load_hwgraph(path)
    layers = cpu_int8.plan_layers(graph, cpu_int8.chain_nodes(graph, [graph.output_name]), 0, 255)
    return rng, widths, path, graph, layers


def test_chain_moves_its_fixes_to_step_columns(tmp_path):
    """A hidden layer with fixes (and channels of the table search): step columns, no
    compare or scatter in the session, the next layer's weights one row per step; exact
    through the engine."""
    rng, widths, path, graph, layers = _fixes_chain(tmp_path)
    assert not layers[0].ev.good.all() and np.any(layers[0].ev.deltas)  # a table part too
    assert cpu_int8.pick_forms(layers)
    steps = layers[0].steps
    assert steps is not None
    chain = cpu_int8.with_steps(layers)
    assert chain[0].w.shape[1] == widths[1] + len(steps.cols)
    assert chain[1].w.shape[0] == widths[1] + len(steps.cols)
    ops = {n.op_type for n in cpu_int8.chain_model(chain, ["s8"] * 3).graph.node}
    assert not ops & {"Equal", "Gemm"}
    x = _inputs(rng, "UINT8", widths, 29)
    engine = CpuEngine(path)
    assert engine.mode == "int8"
    want = run_graph(graph, x)["output"]
    assert np.array_equal(engine.run(x), want)
    assert np.array_equal(engine.run(x[:1]), want[:1])


def _rejects_widened(widths):
    """onnxruntime's kernel (the one the chain's session runs) on weights of the graph's own
    heights, one off on any other (the step rows'): the chain must give the steps up, not the
    int8 path. On the graph's own weights it is exactly as right as the session: where the
    CPU's u8 x s8 kernel saturates (no VNNI), the probe sees it and the chain runs u8 x u8."""
    def gemm(w, w_zero, x_zero, x):
        out = cpu_int8.ort_gemm(w, w_zero, x_zero, x)
        return out if w.shape[0] in widths else out + 1
    return gemm


def test_chain_drops_steps_when_no_kernel_takes_them(tmp_path):
    rng, widths, path, graph, _ = _fixes_chain(tmp_path)
    chain = cpu_int8.build_chain(graph, 0, 255, [graph.output_name], 1,
                                 gemm=_rejects_widened(widths))
    assert chain is not None and len(chain.forms) == 1 and not any(chain.steps)
    x = _inputs(rng, "UINT8", widths, 17)
    assert np.array_equal(chain.run(x), run_graph(graph, x)["output"])
    with_steps = cpu_int8.build_chain(graph, 0, 255, [graph.output_name], 1)
    assert with_steps.forms[0].steps[0] is not None and not any(with_steps.forms[1].steps)
    assert np.array_equal(with_steps.run(x), run_graph(graph, x)["output"])


def test_batch_routing():
    """Each form's time is a line through its times at batch 1 and 64; the form faster at 1
    runs the batches below the lines' crossing, the other the rest; one form wins both: it
    runs every batch."""
    assert cpu_int8.batch_routing([(1.0, 10.0), (2.0, 20.0)]) == (0, None)
    assert cpu_int8.batch_routing([(2.0, 20.0), (1.0, 10.0)]) == (1, None)
    # lines 1 + (n - 1) and 2 + 0.5 (n - 1) cross at n = 3
    assert cpu_int8.batch_routing([(1.0, 64.0), (2.0, 33.5)]) == (0, 3)
    assert cpu_int8.batch_routing([(2.0, 33.5), (1.0, 64.0)]) == (1, 3)
    # crossing between 1 and 2: batch 1 still runs the form faster at 1
    assert cpu_int8.batch_routing([(1.0, 64.0), (1.001, 2.0)]) == (0, 2)


@pytest.mark.parametrize("steps_first", [True, False])
def test_chain_routes_batches_between_its_forms(tmp_path, steps_first):
    """With both forms exact, batches below the split run one form's session, the rest the
    other's; the integers are the HW-layer graph's on every batch size either way."""
    rng, widths, path, graph, _ = _fixes_chain(tmp_path)
    fast, slow = {1: 1e-5, 64: 1e-3}, {1: 2e-5, 64: 5e-4}  # lines cross at batch 3

    def timer(form, batch):
        return (fast if (form == 0) == steps_first else slow)[batch]

    chain = cpu_int8.build_chain(graph, 0, 255, [graph.output_name], 1, timer=timer)
    assert len(chain.forms) == 2 and chain.split == 3
    small, large = chain.form_for(2), chain.form_for(3)
    assert small != large and (chain.forms[small].steps[0] is not None) == steps_first
    assert chain.routing() == (f"{chain.describe(small)} below batch 3, "
                               f"{chain.describe(large)} from it")
    assert chain.describe(small) == ("step columns" if steps_first else "fixes in the thresholds")
    ran = []
    chain._runs = [lambda x, i=i, run=run: ran.append(i) or run(x)
                   for i, run in enumerate(chain._runs)]
    for n in (1, 2, 3, 17):
        x = _inputs(rng, "UINT8", widths, n)
        assert np.array_equal(chain.run(x), run_graph(graph, x)["output"])
    assert ran == [small, small, large, large]
