"""cocotb tests of maxpool.v against golden.maxpool: bit-exact under random stalls, and one
input beat per cycle without stalls.

TB_PARAMS keys: CHANNELS, PE, BITS, SIGNED, IFM_H, IFM_W, K, seed, frames, optional report.
"""

from __future__ import annotations

import cocotb
import numpy as np

from netfabric.sim import golden
from netfabric.sim.tb.tbutil import StreamTB, check_equal, tb_params, write_report


async def _run(dut, src_idle: float, sink_stall: float, measure: bool,
               sink_block: int = 0) -> None:
    p = tb_params()
    c, pe, bits, k = (int(p[x]) for x in ("CHANNELS", "PE", "BITS", "K"))
    h, w, signed = int(p["IFM_H"]), int(p["IFM_W"]), bool(p["SIGNED"])
    frames = int(p["frames"])
    if sink_block:  # enough output to overflow any internal buffer if backpressure broke
        frames = max(frames, -(-96 // ((h // k) * (w // k) * (c // pe))))
    rng = np.random.default_rng(int(p.get("seed", 1)) + (7 if measure else 0))
    imgs = golden.random_ints(rng, (frames, h, w, c), bits, signed)
    if not measure:
        # Only three distinct values: many ties, and the maximum often comes from the value
        # stored by the read-modify-write of the previous beat (bypass path).
        vals = golden.random_ints(rng, 3, bits, signed)
        imgs = vals[rng.integers(0, 3, size=imgs.shape)]
    exp = np.stack([golden.maxpool(img, k) for img in imgs])
    out_beats = (h // k) * (w // k) * (c // pe)
    ideal = h * w * (c // pe)

    tb = StreamTB(dut, seed=int(p.get("seed", 1)))
    tb.stalls(src_idle, sink_stall, sink_block)
    await tb.reset()
    for img in imgs:
        await tb.send(golden.pack_beats(img, pe, bits))
    beats, timing = await tb.recv(frames * out_beats, timeout_cycles=40 * frames * ideal + 4000)
    got = golden.unpack_beats(beats, pe, bits, signed).reshape(exp.shape)
    check_equal("maxpool outputs", got, exp, tb.log)

    if measure:
        interval = timing.steady_interval(out_beats)
        tb.log.info("maxpool: steady-state %.1f cycles/frame, ideal H*W*CF = %d (%.3fx)",
                    interval, ideal, interval / ideal)
        write_report(p, {"module": "maxpool", "interval": interval, "ideal": ideal,
                         "latency_total": timing.total_cycles(), "frames": frames})
        assert interval <= 1.05 * ideal, f"{interval} cycles/frame > 1.05 x ideal {ideal}"


@cocotb.test()
async def test_maxpool_random_stalls(dut) -> None:
    await _run(dut, src_idle=0.3, sink_stall=0.5, measure=False)


@cocotb.test()
async def test_maxpool_throughput(dut) -> None:
    await _run(dut, src_idle=0.0, sink_stall=0.0, measure=True)


@cocotb.test()
async def test_maxpool_sink_blocked(dut) -> None:
    # Sink refuses all beats for a while: internal buffers fill, input must be held back.
    await _run(dut, src_idle=0.1, sink_stall=0.2, measure=False, sink_block=400)


@cocotb.test()
async def test_maxpool_source_idles(dut) -> None:
    # Idle source, eager sink: the module runs ahead of its input (read-before-write hazards).
    await _run(dut, src_idle=0.5, sink_stall=0.0, measure=False)
