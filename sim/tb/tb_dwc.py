"""cocotb tests of dwc.v: the element sequence is unchanged across the width change, under
random stalls, and the converter sustains the rate of its wider side without stalls.

TB_PARAMS keys: IN_WIDTH, OUT_WIDTH, BITS, seed, beats (input beats), optional report.
"""

from __future__ import annotations

import cocotb
import numpy as np

from netfabric.sim import golden
from netfabric.sim.tb.tbutil import StreamTB, check_equal, tb_params, write_report


async def _run(dut, src_idle: float, sink_stall: float, measure: bool,
               sink_block: int = 0) -> None:
    p = tb_params()
    iw, ow, bits = int(p["IN_WIDTH"]), int(p["OUT_WIDTH"]), int(p["BITS"])
    n_in = int(p.get("beats", 96))
    rng = np.random.default_rng(int(p.get("seed", 1)) + (7 if measure else 0))
    elems = golden.random_ints(rng, n_in * iw, bits, False)
    n_out = n_in * iw // ow

    tb = StreamTB(dut, seed=int(p.get("seed", 1)))
    tb.stalls(src_idle, sink_stall, sink_block)
    await tb.reset()
    await tb.send(golden.pack_beats(elems, iw, bits))
    beats, timing = await tb.recv(n_out, timeout_cycles=40 * (n_in + n_out) + 2000)
    check_equal("dwc elements", golden.unpack_beats(beats, ow, bits, False), elems, tb.log)

    if measure:
        # The narrow side moves one beat per cycle at best.
        ideal = max(n_in, n_out)
        span = timing.out_cycles[-1] - timing.first_in + 1
        tb.log.info("dwc %d->%d: %d cycles for %d in / %d out beats", iw, ow, span, n_in,
                    n_out)
        write_report(p, {"module": "dwc", "interval": span, "ideal": ideal})
        assert span <= ideal + 4, f"{span} cycles for {ideal} narrow-side beats"


@cocotb.test()
async def test_dwc_random_stalls(dut) -> None:
    await _run(dut, src_idle=0.3, sink_stall=0.5, measure=False)


@cocotb.test()
async def test_dwc_throughput(dut) -> None:
    await _run(dut, src_idle=0.0, sink_stall=0.0, measure=True)


@cocotb.test()
async def test_dwc_sink_blocked(dut) -> None:
    # Sink refuses all beats for a while: internal buffers fill, input must be held back.
    await _run(dut, src_idle=0.1, sink_stall=0.2, measure=False, sink_block=400)


@cocotb.test()
async def test_dwc_source_idles(dut) -> None:
    # Idle source, eager sink: the module runs ahead of its input (read-before-write hazards).
    await _run(dut, src_idle=0.5, sink_stall=0.0, measure=False)
