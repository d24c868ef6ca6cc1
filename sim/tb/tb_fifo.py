"""cocotb tests of fifo.v: order and content preserved under random idles/backpressure and a
blocked sink, one beat per cycle when nobody stalls (DEPTH >= 2).

TB_PARAMS keys: WIDTH, DEPTH, seed, beats, optional report.
"""

from __future__ import annotations

import cocotb
import numpy as np

from netfabric.sim.tb.tbutil import StreamTB, check_equal, tb_params, write_report


async def _run(dut, src_idle: float, sink_stall: float, measure: bool,
               sink_block: int = 0) -> None:
    p = tb_params()
    width, depth = int(p["WIDTH"]), int(p["DEPTH"])
    n = int(p.get("beats", 300))
    rng = np.random.default_rng(int(p.get("seed", 1)) + (7 if measure else 0))
    data = [int.from_bytes(rng.bytes((width + 7) // 8), "little") & ((1 << width) - 1)
            for _ in range(n)]

    tb = StreamTB(dut, seed=int(p.get("seed", 1)))
    tb.stalls(src_idle, sink_stall, sink_block)
    await tb.reset()
    await tb.send(data)
    got, timing = await tb.recv(n, timeout_cycles=40 * n + sink_block + 2000)
    check_equal("fifo beats", got, data, tb.log)
    cycles = timing.out_cycles[-1] - timing.out_cycles[0] + 1
    tb.log.info("fifo depth %d: %d beats out in %d cycles", depth, n, cycles)
    if measure:
        # DEPTH 1 cannot take a beat while full, even if one leaves (registered tready).
        expected = n if depth >= 2 else 2 * n - 1
        write_report(p, {"module": "fifo", "interval": cycles, "ideal": expected,
                         "latency_total": timing.total_cycles()})
        assert cycles <= expected, f"took {cycles} cycles for {n} beats"


@cocotb.test()
async def test_fifo_random_stalls(dut) -> None:
    await _run(dut, src_idle=0.3, sink_stall=0.5, measure=False)


@cocotb.test()
async def test_fifo_full_rate(dut) -> None:
    await _run(dut, src_idle=0.0, sink_stall=0.0, measure=True)


@cocotb.test()
async def test_fifo_sink_blocked(dut) -> None:
    # The FIFO runs full and s_axis_tready must drop until the sink drains it.
    await _run(dut, src_idle=0.0, sink_stall=0.2, measure=False, sink_block=400)


@cocotb.test()
async def test_fifo_source_idles(dut) -> None:
    await _run(dut, src_idle=0.5, sink_stall=0.0, measure=False)
