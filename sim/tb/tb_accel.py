"""cocotb test of a whole stitched accelerator: stream frames through it, capture the output.

The expected integers are *not* computed here: the pytest side (or the sim backend) compares
the captured output with the integer reference. This test checks the stream protocol (the
exact number of output beats, nothing extra), measures cycles, and stops early when the
accelerator stalls: no output beat for ``stall_cycles`` cycles (a deadlock, e.g. a fork's
short path with too shallow a FIFO) fails the test with that diagnosis in the report.

TB_PARAMS keys: ``manifest`` (path), ``input_npy`` ([frames, elements] ints in graph layout),
``output_npy`` (where to save [frames, out elements]), ``src_idle``, ``sink_stall``, ``seed``,
``stall_cycles`` (optional), ``report`` (JSON path for the cycle measurements, or ``error``).
"""

from __future__ import annotations

import json
from pathlib import Path

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles, SimTimeoutError, with_timeout
from cocotb.utils import get_sim_steps

from netfabric.sim import golden
from netfabric.sim.tb.tbutil import CLK_NS, StreamTB, Timing, tb_params, write_report


async def _collect(tb: StreamTB, n: int, stall_cycles: int) -> tuple[list[int], list[int], bool]:
    """Up to ``n`` output beats with their handshake cycles; stops (False) when no beat came
    for ``stall_cycles`` cycles."""
    beats: list[int] = []
    stamps: list[int] = []
    steps_per_cycle = float(get_sim_steps(CLK_NS, "ns"))
    while len(beats) < n:
        try:
            frame = await with_timeout(tb.sink.recv(), stall_cycles * CLK_NS, "ns")
        except SimTimeoutError:
            return beats, stamps, False
        for v in frame.tdata:  # without tlast every beat is its own frame
            beats.append(int(v))
            stamps.append(round(frame.sim_time_end / steps_per_cycle))
    return beats, stamps, True


@cocotb.test()
async def test_accelerator_frames(dut) -> None:
    p = tb_params()
    man = json.loads(Path(p["manifest"]).read_text())
    inp, outp = man["input"], man["output"]
    frames = np.load(p["input_npy"])
    n = frames.shape[0]

    tb = StreamTB(dut, seed=int(p.get("seed", 1)))
    tb.stalls(float(p.get("src_idle", 0.0)), float(p.get("sink_stall", 0.0)))
    await tb.reset()
    for frame in frames:
        await tb.send(golden.pack_beats(frame, inp["elems_per_beat"], inp["bits"]))
    per_frame = outp["beats_per_frame"]
    ideal = int(man["ideal_cycles_per_frame"])
    # a first frame takes a few intervals (pipeline fill); with random stalls about 3x more
    stall = int(p.get("stall_cycles", 0)) or 40 * ideal + 5000
    beats, stamps, ok = await _collect(tb, n * per_frame, stall)
    if not ok:
        msg = (f"the accelerator stalled: no output beat for {stall} cycles after {len(beats)} of "
               f"{n * per_frame} (a deadlock: e.g. a fork/join FIFO too shallow)")
        write_report(p, {"error": msg, "beats": len(beats), "stall_cycles": stall})
        raise AssertionError(msg)
    await ClockCycles(dut.clk, 8)
    assert tb.sink.empty(), "the accelerator produced more beats than expected"
    base = tb._reset_cycle
    timing = Timing((tb._first_in or base) - base, [s - base for s in stamps])
    out = golden.unpack_beats(beats, outp["elems_per_beat"], outp["bits"], outp["signed"])
    np.save(p["output_npy"], out.reshape(n, -1))
    metrics = {"frames": n, "cycles": tb.now_cycles() - base,
               "latency_total": timing.total_cycles(), "ideal": ideal,
               "first_frame_latency": timing.frame_ends(per_frame)[0] - timing.first_in}
    if n >= 3:
        metrics["interval"] = timing.steady_interval(per_frame)
    tb.log.info("accelerator: %s", metrics)
    write_report(p, metrics)
