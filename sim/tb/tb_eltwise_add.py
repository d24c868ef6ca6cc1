"""cocotb tests of eltwise_add.v against numpy: lhs + rhs wrapped to OBITS, bit-exact under
random idles on each input (independently) and sink backpressure, a blocked sink, and one
beat per cycle without stalls. With CONST_RHS the rhs comes from the ROM (RHS_FILE) and
repeats every RHS_WORDS beats.

TB_PARAMS keys: PE, LBITS, LSIGNED, RBITS, RSIGNED, OBITS, OSIGNED, CONST_RHS, RHS_WORDS,
``rhs_npy`` (the ROM's elements, CONST_RHS only), seed, beats, optional report.
"""

from __future__ import annotations

import logging
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, with_timeout
from cocotb.utils import get_sim_steps
from cocotbext.axi import AxiStreamBus, AxiStreamFrame, AxiStreamSink, AxiStreamSource

from netfabric.sim import golden
from netfabric.sim.tb.tbutil import CLK_NS, check_equal, random_pauses, tb_params, write_report


async def _run(dut, lhs_idle: float, rhs_idle: float, sink_stall: float, measure: bool,
               sink_block: int = 0) -> None:
    p = tb_params()
    pe, lbits, rbits, obits = (int(p[k]) for k in ("PE", "LBITS", "RBITS", "OBITS"))
    lsigned, rsigned, osigned = (bool(p[k]) for k in ("LSIGNED", "RSIGNED", "OSIGNED"))
    const = bool(p.get("CONST_RHS", 0))
    n = int(p.get("beats", 200))
    seed = int(p.get("seed", 1)) + (7 if measure else 0)
    rng = np.random.default_rng(seed)
    lhs = golden.random_ints(rng, (n, pe), lbits, lsigned)
    if const:
        table = np.load(p["rhs_npy"]).reshape(-1, pe)
        rhs = table[np.arange(n) % len(table)]
    else:
        rhs = golden.random_ints(rng, (n, pe), rbits, rsigned)
    exp = golden.wrap(lhs + rhs, obits, osigned) if osigned else (lhs + rhs) & ((1 << obits) - 1)

    log = logging.getLogger("cocotb.tb")
    prng = random.Random(seed)
    cocotb.start_soon(Clock(dut.clk, CLK_NS, unit="ns").start())
    srcs = [AxiStreamSource(AxiStreamBus.from_prefix(dut, prefix), dut.clk, dut.rst_n,
                            reset_active_level=False, byte_lanes=1)
            for prefix in (("s0_axis",) if const else ("s0_axis", "s1_axis"))]
    sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis"), dut.clk, dut.rst_n,
                         reset_active_level=False, byte_lanes=1)
    for s, idle in zip(srcs, (lhs_idle, rhs_idle), strict=False):
        s.log.setLevel(logging.WARNING)
        if idle > 0:
            s.set_pause_generator(random_pauses(prng, idle))
    sink.log.setLevel(logging.WARNING)
    if sink_stall > 0 or sink_block > 0:
        sink.set_pause_generator(random_pauses(prng, sink_stall, sink_block))
    if const:
        dut.s1_axis_tvalid.value = 0
        dut.s1_axis_tdata.value = 0
    dut.rst_n.value = 0
    await ClockCycles(dut.clk, 4)
    dut.rst_n.value = 1
    await srcs[0].send(AxiStreamFrame(golden.pack_beats(lhs, pe, lbits)))
    if not const:
        await srcs[1].send(AxiStreamFrame(golden.pack_beats(rhs, pe, rbits)))

    beats: list[int] = []
    stamps: list[int] = []

    async def collect() -> None:
        while len(beats) < n:
            frame = await sink.recv()
            beats.extend(int(v) for v in frame.tdata)
            stamps.append(int(frame.sim_time_end))

    await with_timeout(collect(), (60 * n + sink_block + 3000) * CLK_NS, "ns")
    await ClockCycles(dut.clk, 8)
    assert sink.empty(), "eltwise_add produced more beats than expected"
    got = golden.unpack_beats(beats, pe, obits, osigned).reshape(exp.shape)
    check_equal("eltwise_add outputs", got, exp, log)
    if measure:
        steps = (stamps[-1] - stamps[0]) / float(get_sim_steps(CLK_NS, "ns")) + 1
        write_report(p, {"module": "eltwise_add", "interval": steps, "ideal": n})
        log.info("eltwise_add: %d beats out in %.0f cycles", n, steps)
        assert steps <= n, f"took {steps} cycles for {n} beats"


@cocotb.test()
async def test_eltwise_add_random_stalls(dut) -> None:
    await _run(dut, lhs_idle=0.3, rhs_idle=0.3, sink_stall=0.5, measure=False)


@cocotb.test()
async def test_eltwise_add_full_rate(dut) -> None:
    await _run(dut, lhs_idle=0.0, rhs_idle=0.0, sink_stall=0.0, measure=True)


@cocotb.test()
async def test_eltwise_add_sink_blocked(dut) -> None:
    # the output buffer fills: both inputs must be held back, nothing lost
    await _run(dut, lhs_idle=0.1, rhs_idle=0.1, sink_stall=0.2, measure=False, sink_block=400)


@cocotb.test()
async def test_eltwise_add_one_input_lags(dut) -> None:
    # rhs mostly idle, lhs and sink eager: lhs beats must wait for their partners
    await _run(dut, lhs_idle=0.0, rhs_idle=0.7, sink_stall=0.0, measure=False)
