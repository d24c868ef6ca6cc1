"""The engine routes each batch between its exact executors (host/cpu_engine.py): the int8
chain and the numpy plan, by their times on batches of 1 and 64 rows; every batch size gives
the HW-layer graph's integers whichever runs it."""

from __future__ import annotations

import numpy as np
import pytest
from test_cpu_int8_gemm import _inputs
from test_cpu_int8_steps import _fixes_chain

from netfabric.host.cpu_engine import CpuEngine, path_timer
from netfabric.ops.execute import run_graph


@pytest.mark.parametrize("int8_first", [True, False])
def test_engine_routes_batches_between_int8_chain_and_plan(tmp_path, int8_first):
    rng, widths, path, graph, _ = _fixes_chain(tmp_path)
    fast, slow = {1: 1e-5, 64: 1e-3}, {1: 2e-5, 64: 5e-4}  # lines cross at batch 3

    def timer(executor, batch):
        return (fast if (executor == 0) == int8_first else slow)[batch]

    engine = CpuEngine(path, route_timer=timer)
    assert engine.mode == "int8"
    small, large = ("int8", "plan") if int8_first else ("plan", "int8")
    assert [engine.path_for(n) for n in (1, 2, 3, 17)] == [small, small, large, large]
    chain = f"int8 chain ({engine.int8.routing()})"
    names = {"int8": chain, "plan": "numpy plan"}
    assert engine.routing() == f"{names[small]} below batch 3, {names[large]} from it"
    ran = []
    int8_run, plan_run = engine.int8.run, engine._run_chunks
    engine.int8.run = lambda x: ran.append("int8") or int8_run(x)
    engine._run_chunks = lambda x: ran.append("plan") or plan_run(x)
    for n in (1, 2, 3, 17):
        x = _inputs(rng, "UINT8", widths, n)
        want = run_graph(graph, x)["output"]
        assert np.array_equal(engine.run(x), want)
        assert np.array_equal(engine.run_all(x.astype(np.int64))[0], want)  # checked path
    assert ran == [small] * 4 + [large] * 4


def test_engine_times_both_executors_and_explicit_int8_stays_int8(tmp_path):
    rng, widths, path, graph, _ = _fixes_chain(tmp_path)
    engine = CpuEngine(path)
    routed = engine._route
    timer = path_timer(engine)
    for executor in (0, 1):
        assert 0 < timer(executor, 1) < timer(executor, 64)
    assert engine._route == routed  # the timer leaves the routing as it found it
    only = CpuEngine(path, mode="int8")
    assert {only.path_for(n) for n in (1, 64, 1000)} == {"int8"}
    x = _inputs(rng, "UINT8", widths, 70)
    assert np.array_equal(engine.run(x), only.run(x))


def test_a_plan_that_cannot_compile_leaves_the_int8_chain_every_batch(tmp_path, monkeypatch):
    from netfabric.errors import GraphError

    rng, widths, path, graph, _ = _fixes_chain(tmp_path)

    def refuse(self, outputs):
        raise GraphError("no plan for this graph")
    monkeypatch.setattr(CpuEngine, "_compile_plans", refuse)
    engine = CpuEngine(path)
    assert engine.mode == "int8" and {engine.path_for(n) for n in (1, 64, 500)} == {"int8"}
    assert engine.routing().endswith("at every batch size")
    x = _inputs(rng, "UINT8", widths, 70)
    assert np.array_equal(engine.run(x), run_graph(graph, x)["output"])
    with pytest.raises(GraphError, match="no plan"):
        CpuEngine(path, mode="plan")
