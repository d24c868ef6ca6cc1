"""cocotb tests of dup_streams.v: every output lane carries the input stream unchanged, each
lane back-pressured on its own (random stalls per lane, one lane blocked while the others
run), one beat per cycle on every lane when nobody stalls.

TB_PARAMS keys: NOUT, PE, BITS, seed, beats, optional report.
"""

from __future__ import annotations

import logging
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge, with_timeout
from cocotbext.axi import AxiStreamBus, AxiStreamFrame, AxiStreamSource

from netfabric.sim import golden
from netfabric.sim.tb.tbutil import CLK_NS, check_equal, random_pauses, tb_params, write_report


class LaneSinks:
    """AXI-Stream sinks for the NOUT lanes of a flattened ``m_axis`` bus (lane j: tdata bits
    [j*PW +: PW], tvalid[j], tready[j]), each with its own pause pattern."""

    def __init__(self, dut, nout: int, pw: int, pauses: list) -> None:
        self.dut, self.nout, self.pw, self.pauses = dut, nout, pw, pauses
        self.beats: list[list[int]] = [[] for _ in range(nout)]
        self.cycles: list[list[int]] = [[] for _ in range(nout)]
        self.max_skew = 0
        self._cycle = 0
        dut.m_axis_tready.value = 0

    async def run(self) -> None:
        dut, mask = self.dut, (1 << self.pw) - 1
        ready = 0
        while True:
            await RisingEdge(dut.clk)
            self._cycle += 1
            if dut.rst_n.value == 1:
                valid = int(dut.m_axis_tvalid.value)
                fired = valid & ready
                if fired:
                    data = int(dut.m_axis_tdata.value)
                    for j in range(self.nout):
                        if fired >> j & 1:
                            self.beats[j].append((data >> (j * self.pw)) & mask)
                            self.cycles[j].append(self._cycle)
                counts = [len(b) for b in self.beats]
                self.max_skew = max(self.max_skew, max(counts) - min(counts))
            ready = sum((0 if next(self.pauses[j]) else 1) << j for j in range(self.nout))
            dut.m_axis_tready.value = ready

    async def wait_for(self, n: int) -> None:
        while min(len(b) for b in self.beats) < n:
            await RisingEdge(self.dut.clk)


async def _run(dut, src_idle: float, lane_stall: float, measure: bool, block_lane: int = -1) -> None:
    p = tb_params()
    nout, pe, bits = int(p["NOUT"]), int(p["PE"]), int(p["BITS"])
    n = int(p.get("beats", 200))
    seed = int(p.get("seed", 1)) + (7 if measure else 0) + 3 * (block_lane + 1)
    rng = np.random.default_rng(seed)
    elems = golden.random_ints(rng, (n, pe), bits, False)
    data = golden.pack_beats(elems, pe, bits)

    log = logging.getLogger("cocotb.tb")
    cocotb.start_soon(Clock(dut.clk, CLK_NS, unit="ns").start())
    source = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis"), dut.clk, dut.rst_n,
                             reset_active_level=False, byte_lanes=1)
    source.log.setLevel(logging.WARNING)
    prng = random.Random(seed)
    if src_idle > 0:
        source.set_pause_generator(random_pauses(prng, src_idle))
    pauses = [random_pauses(prng, lane_stall, 400 if j == block_lane else 0) for j in range(nout)]
    sinks = LaneSinks(dut, nout, golden.axis_width(pe * bits), pauses)
    dut.rst_n.value = 0
    cocotb.start_soon(sinks.run())
    await ClockCycles(dut.clk, 4)
    dut.rst_n.value = 1
    await source.send(AxiStreamFrame(data))
    await with_timeout(sinks.wait_for(n), (60 * n + 3000) * CLK_NS, "ns")
    await ClockCycles(dut.clk, 8)
    for j in range(nout):
        check_equal(f"dup_streams lane {j}", sinks.beats[j], data, log)
    if block_lane >= 0:
        # while one lane was blocked the others ran ahead by at most its 2-beat buffer
        assert sinks.max_skew <= 2 + 1, f"lanes drifted {sinks.max_skew} beats apart"
        log.info("blocked lane %d: lanes at most %d beats apart", block_lane, sinks.max_skew)
    if measure:
        spans = [c[-1] - c[0] + 1 for c in sinks.cycles]
        write_report(p, {"module": "dup_streams", "interval": max(spans), "ideal": n})
        log.info("dup_streams: %d beats on every lane in %s cycles", n, spans)
        assert max(spans) <= n, f"took {max(spans)} cycles for {n} beats"


@cocotb.test()
async def test_dup_streams_random_stalls(dut) -> None:
    await _run(dut, src_idle=0.3, lane_stall=0.5, measure=False)


@cocotb.test()
async def test_dup_streams_full_rate(dut) -> None:
    await _run(dut, src_idle=0.0, lane_stall=0.0, measure=True)


@cocotb.test()
async def test_dup_streams_one_lane_blocked(dut) -> None:
    # Lane 0 refuses everything for 400 cycles: its buffer fills, the input must be held back
    # and the other lanes stop 2 beats ahead; nothing is lost or duplicated afterwards.
    await _run(dut, src_idle=0.1, lane_stall=0.2, measure=False, block_lane=0)


@cocotb.test()
async def test_dup_streams_source_idles(dut) -> None:
    await _run(dut, src_idle=0.5, lane_stall=0.0, measure=False)
