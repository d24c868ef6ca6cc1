"""cocotb tests of axis_out_credit.v behind a model pipeline: a result started with
`reserve` (only while `full` is low) arrives on in_valid exactly LAT cycles later.

Checked every cycle: results in flight (started, not yet delivered) never exceed DEPTH, so the
FIFO never overflows; all results arrive in order. With an always-ready sink the report gives
the cycles on which a wanted start was held back by `full` (0 when DEPTH covers the credit
round trip).

TB_PARAMS keys: WIDTH, DEPTH, LAT, seed, results, sink_stall, optional report.
"""

from __future__ import annotations

import random
from collections import deque

import cocotb
from cocotb.triggers import FallingEdge

from netfabric.sim.tb.tbutil import check_equal, clock_and_reset, tb_params, write_report


async def _run(dut, sink_stall: float) -> dict:
    p = tb_params()
    width, depth, lat = int(p["WIDTH"]), int(p["DEPTH"]), int(p["LAT"])
    n = int(p.get("results", 400))
    rng = random.Random(int(p.get("seed", 1)))
    values = [rng.getrandbits(width) for _ in range(n)]

    await clock_and_reset(dut, reserve=0, in_valid=0, in_data=0, m_axis_tready=0)

    pipeline: deque[tuple[int, int]] = deque()  # (cycle it reaches in_valid, value)
    started, got, held, max_in_flight = 0, [], 0, 0
    for cycle in range(40 * n + 200):
        # registered outputs are settled half a cycle after the edge; inputs set now are
        # sampled at the next rising edge
        await FallingEdge(dut.clk)
        ready = rng.random() >= sink_stall
        dut.m_axis_tready.value = int(ready)
        if ready and int(dut.m_axis_tvalid.value):
            got.append(int(dut.m_axis_tdata.value) & ((1 << width) - 1))  # taken at the edge
        start = started < n and not int(dut.full.value)
        held += started < n and not start
        dut.reserve.value = int(start)
        if start:
            pipeline.append((cycle + lat, values[started]))
            started += 1
        arrive = bool(pipeline) and pipeline[0][0] == cycle
        dut.in_valid.value = int(arrive)
        dut.in_data.value = pipeline.popleft()[1] if arrive else 0
        in_flight = started - len(got)
        max_in_flight = max(max_in_flight, in_flight)
        assert in_flight <= depth, f"cycle {cycle}: {in_flight} results in flight > DEPTH {depth}"
        if len(got) == n:
            break
    check_equal("credit FIFO results", got, values, dut._log)
    return {"module": "axis_out_credit", "held_starts": held, "max_in_flight": max_in_flight}


@cocotb.test()
async def test_credit_random_backpressure(dut) -> None:
    """Under backpressure the unit is held back; nothing is lost or reordered."""
    p = tb_params()
    await _run(dut, sink_stall=float(p.get("sink_stall", 0.6)))


@cocotb.test()
async def test_credit_always_ready_sink(dut) -> None:
    """Behind a sink that is always ready: how many starts `full` held back."""
    p = tb_params()
    write_report(p, await _run(dut, sink_stall=0.0))
