"""cocotb tests of swg.v against golden.swg: window contents/order under random stalls, and the
steady-state frame interval with frames back to back.

TB_PARAMS keys: IFM_H, IFM_W, IFM_CH, SIMD, K, S, BITS, seed, frames, optional
PARALLEL_WINDOW (a whole window a beat) and report.
"""

from __future__ import annotations

import cocotb
import numpy as np

from netfabric.sim import golden
from netfabric.sim.tb.tbutil import StreamTB, check_equal, tb_params, write_report


def swg_out_elems(p: dict) -> int:
    """Elements per output beat: SIMD, or the whole K x K x SIMD window (PARALLEL_WINDOW)."""
    k, simd = int(p["K"]), int(p["SIMD"])
    return k * k * simd if int(p.get("PARALLEL_WINDOW", 0)) else simd


def swg_ideal_cycles(p: dict) -> tuple[int, int, int]:
    """(output beats, input beats, ideal cycles) per frame."""
    h, w, c, simd, k, s = (int(p[x]) for x in ("IFM_H", "IFM_W", "IFM_CH", "SIMD", "K", "S"))
    cf = c // simd
    oh, ow = (h - k) // s + 1, (w - k) // s + 1
    out_beats, in_beats = oh * ow * k * k * c // swg_out_elems(p), h * w * cf
    return out_beats, in_beats, max(out_beats, in_beats)


async def _run(dut, src_idle: float, sink_stall: float, measure: bool,
               sink_block: int = 0) -> None:
    p = tb_params()
    h, w, c, simd, k, s, bits = (int(p[x]) for x in
                                 ("IFM_H", "IFM_W", "IFM_CH", "SIMD", "K", "S", "BITS"))
    frames = int(p["frames"])
    if sink_block:  # enough output to overflow any internal buffer if backpressure broke
        frames = max(frames, -(-96 // swg_ideal_cycles(p)[0]))
    rng = np.random.default_rng(int(p.get("seed", 1)) + (7 if measure else 0))
    imgs = golden.random_ints(rng, (frames, h, w, c), bits, False)
    exp = np.stack([golden.swg(img, k, s) for img in imgs])
    out_beats, _, ideal = swg_ideal_cycles(p)

    tb = StreamTB(dut, seed=int(p.get("seed", 1)))
    tb.stalls(src_idle, sink_stall, sink_block)
    await tb.reset()
    for img in imgs:
        await tb.send(golden.pack_beats(img, simd, bits))
    beats, timing = await tb.recv(frames * out_beats,
                                  timeout_cycles=40 * frames * ideal + 4000)
    got = golden.unpack_beats(beats, swg_out_elems(p), bits, False).reshape(exp.shape)
    check_equal("swg windows", got, exp, tb.log)

    if measure:
        interval = timing.steady_interval(out_beats)
        tb.log.info("swg: steady-state %.1f cycles/frame, ideal max(out %d, in %d) = %d "
                    "(%.3fx); first-in to last-out %d cycles for %d frames", interval,
                    out_beats, h * w * (c // simd), ideal, interval / ideal, timing.total_cycles(),
                    frames)
        write_report(p, {"module": "swg", "interval": interval, "ideal": ideal,
                         "out_beats": out_beats, "latency_total": timing.total_cycles(),
                         "frames": frames,
                         "first_out": timing.out_cycles[0] - timing.first_in})
        assert interval <= 1.05 * ideal, f"{interval} cycles/frame > 1.05 x ideal {ideal}"


@cocotb.test()
async def test_swg_random_stalls(dut) -> None:
    await _run(dut, src_idle=0.3, sink_stall=0.4, measure=False)


@cocotb.test()
async def test_swg_throughput(dut) -> None:
    await _run(dut, src_idle=0.0, sink_stall=0.0, measure=True)


@cocotb.test()
async def test_swg_sink_blocked(dut) -> None:
    # Sink refuses all beats for a while: internal buffers fill, input must be held back.
    await _run(dut, src_idle=0.1, sink_stall=0.2, measure=False, sink_block=400)


@cocotb.test()
async def test_swg_source_idles(dut) -> None:
    # Idle source, eager sink: the module runs ahead of its input (read-before-write hazards).
    await _run(dut, src_idle=0.5, sink_stall=0.0, measure=False)
