"""cocotb tests of label_select.v against golden.label_select (ties -> lowest index), under
random stalls and at one input beat per cycle.

TB_PARAMS keys: NLABELS, PE, BITS, SIGNED, NVEC, seed, frames, optional report.
"""

from __future__ import annotations

import random

import cocotb
import numpy as np
from cocotb.triggers import FallingEdge

from netfabric.sim import golden
from netfabric.sim.tb.tbutil import StreamTB, check_equal, tb_params, write_report


async def _garble_idle_data(dut, seed: int) -> None:
    """While the source idles (tvalid low), drive random tdata: slots the module saw no beat
    in (bubbles) must never take part in the maximum, whatever their data."""
    rng = random.Random(seed)
    width = len(dut.s_axis_tdata)
    while True:
        await FallingEdge(dut.clk)
        if dut.s_axis_tvalid.value == 0:
            dut.s_axis_tdata.value = rng.getrandbits(width)


async def _run(dut, src_idle: float, sink_stall: float, measure: bool,
               sink_block: int = 0) -> None:
    p = tb_params()
    n, pe, bits, signed = int(p["NLABELS"]), int(p["PE"]), int(p["BITS"]), bool(p["SIGNED"])
    nvec, frames = int(p["NVEC"]), int(p["frames"])
    if sink_block:  # enough output to overflow any internal buffer if backpressure broke
        frames = max(frames, -(-64 // nvec))
    rng = np.random.default_rng(int(p.get("seed", 1)) + (7 if measure else 0))
    x = golden.random_ints(rng, (frames * nvec, n), bits, signed)
    # Half the vectors from only a few distinct values: ties, incl. across beats.
    few = golden.random_ints(rng, 3, bits, signed)
    x[::2] = few[rng.integers(0, 3, size=x[::2].shape)]
    exp = golden.label_select(x)
    beats_per_frame = nvec * n // pe

    tb = StreamTB(dut, seed=int(p.get("seed", 1)))
    tb.stalls(src_idle, sink_stall, sink_block)
    await tb.reset()
    if src_idle > 0:
        cocotb.start_soon(_garble_idle_data(dut, int(p.get("seed", 1))))
    for f in range(frames):
        await tb.send(golden.pack_beats(x[f * nvec:(f + 1) * nvec], pe, bits))
    beats, timing = await tb.recv(frames * nvec,
                                  timeout_cycles=40 * frames * beats_per_frame + 4000)
    check_equal("label_select indices", np.array(beats), exp, tb.log)

    if measure:
        interval = timing.steady_interval(nvec)
        tb.log.info("label_select: steady-state %.1f cycles/frame, ideal %d", interval,
                    beats_per_frame)
        write_report(p, {"module": "label_select", "interval": interval,
                         "ideal": beats_per_frame, "latency_total": timing.total_cycles(),
                         # last beat of the first vector in -> its index out (no stalls)
                         "latency": timing.out_cycles[0] - timing.first_in - (n // pe - 1),
                         "frames": frames})
        assert interval <= 1.05 * beats_per_frame


@cocotb.test()
async def test_label_select_random_stalls(dut) -> None:
    await _run(dut, src_idle=0.3, sink_stall=0.5, measure=False)


@cocotb.test()
async def test_label_select_throughput(dut) -> None:
    await _run(dut, src_idle=0.0, sink_stall=0.0, measure=True)


@cocotb.test()
async def test_label_select_sink_blocked(dut) -> None:
    # Sink refuses all beats for a while: internal buffers fill, input must be held back.
    await _run(dut, src_idle=0.1, sink_stall=0.2, measure=False, sink_block=400)


@cocotb.test()
async def test_label_select_source_idles(dut) -> None:
    # Idle source, eager sink: the module runs ahead of its input (read-before-write hazards).
    await _run(dut, src_idle=0.5, sink_stall=0.0, measure=False)
