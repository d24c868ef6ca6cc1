"""cocotb tests of thresholding.v against golden.multithreshold: bit-exact under random
stalls, one beat per cycle without stalls.

TB_PARAMS keys: CHANNELS, PE, IBITS, ISIGNED, OBITS, OSIGNED, ACT_BIAS, NVEC,
``thresholds_npy`` ([CHANNELS, NT]), seed, frames, optional report.
"""

from __future__ import annotations

import cocotb
import numpy as np

from netfabric.sim import golden
from netfabric.sim.tb.tbutil import StreamTB, check_equal, tb_params, write_report


async def _run(dut, src_idle: float, sink_stall: float, measure: bool,
               sink_block: int = 0) -> None:
    p = tb_params()
    c, pe, ibits, obits = (int(p[x]) for x in ("CHANNELS", "PE", "IBITS", "OBITS"))
    isigned, osigned = bool(p["ISIGNED"]), bool(p["OSIGNED"])
    nvec, frames = int(p["NVEC"]), int(p["frames"])
    if sink_block:  # enough output to overflow any internal buffer if backpressure broke
        frames = max(frames, -(-96 // (nvec * c // pe)))
    t = np.load(p["thresholds_npy"])
    rng = np.random.default_rng(int(p.get("seed", 1)) + (7 if measure else 0))
    x = golden.random_ints(rng, (frames * nvec, c), ibits, isigned)
    exp = golden.multithreshold(x, t, int(p.get("ACT_BIAS", 0)))
    beats_per_frame = nvec * c // pe

    tb = StreamTB(dut, seed=int(p.get("seed", 1)))
    tb.stalls(src_idle, sink_stall, sink_block)
    await tb.reset()
    for f in range(frames):
        await tb.send(golden.pack_beats(x[f * nvec:(f + 1) * nvec], pe, ibits))
    beats, timing = await tb.recv(frames * beats_per_frame,
                                  timeout_cycles=40 * frames * beats_per_frame + 4000)
    got = golden.unpack_beats(beats, pe, obits, osigned).reshape(exp.shape)
    check_equal("thresholding outputs", got, exp, tb.log)

    if measure:
        interval = timing.steady_interval(beats_per_frame)
        tb.log.info("thresholding: steady-state %.1f cycles/frame, ideal %d",
                    interval, beats_per_frame)
        write_report(p, {"module": "thresholding", "interval": interval,
                         "ideal": beats_per_frame, "latency_total": timing.total_cycles(),
                         # first input handshake -> first output handshake (no stalls)
                         "first_beat_latency": timing.out_cycles[0] - timing.first_in,
                         "frames": frames})
        assert interval <= 1.05 * beats_per_frame


@cocotb.test()
async def test_thresholding_random_stalls(dut) -> None:
    await _run(dut, src_idle=0.3, sink_stall=0.5, measure=False)


@cocotb.test()
async def test_thresholding_throughput(dut) -> None:
    await _run(dut, src_idle=0.0, sink_stall=0.0, measure=True)


@cocotb.test()
async def test_thresholding_sink_blocked(dut) -> None:
    # Sink refuses all beats for a while: internal buffers fill, input must be held back.
    await _run(dut, src_idle=0.1, sink_stall=0.2, measure=False, sink_block=400)


@cocotb.test()
async def test_thresholding_source_idles(dut) -> None:
    # Idle source, eager sink: the module runs ahead of its input (read-before-write hazards).
    await _run(dut, src_idle=0.5, sink_stall=0.0, measure=False)
