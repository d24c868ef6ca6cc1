"""cocotb tests of mvau.v against golden.mvau: bit-exact results under random source idles
and sink backpressure, and the steady-state frame interval without stalls.

TB_PARAMS keys: the HDL parameters (MW, MH, PE, SIMD, WBITS, WSIGNED, IBITS, ISIGNED, ACCBITS,
NVEC, USE_ACT, OBITS, OSIGNED, ACT_BIAS, optional XNOR), ``weights_npy`` ([MH, MW] int array) and with USE_ACT
``thresholds_npy`` ([MH, NT]), plus ``seed``, ``frames`` and optional ``report`` (JSON path).
"""

from __future__ import annotations

import cocotb
import numpy as np

from netfabric.sim import golden
from netfabric.sim.tb.tbutil import StreamTB, check_equal, tb_params, write_report


async def _run(dut, src_idle: float, sink_stall: float, measure: bool,
               sink_block: int = 0) -> None:
    p = tb_params()
    mw, mh, pe, simd = (int(p[k]) for k in ("MW", "MH", "PE", "SIMD"))
    ibits, isigned = int(p["IBITS"]), bool(p["ISIGNED"])
    nvec, frames = int(p["NVEC"]), int(p["frames"])
    if sink_block:  # enough output to overflow any internal buffer if backpressure broke
        frames = max(frames, -(-96 // (nvec * (mh // pe))))
    use_act = bool(p["USE_ACT"])
    accbits = int(p["ACCBITS"])
    obits = int(p["OBITS"]) if use_act else accbits
    osigned = bool(p.get("OSIGNED", 0)) if use_act else True
    sf, nf = mw // simd, mh // pe

    w = np.load(p["weights_npy"])
    t = np.load(p["thresholds_npy"]) if use_act else None
    rng = np.random.default_rng(int(p.get("seed", 1)) + (7 if measure else 0))
    x = golden.random_ints(rng, (frames * nvec, mw), ibits, isigned)
    exp = golden.mvau(x, w, t, int(p.get("ACT_BIAS", 0)), accbits, bool(p.get("XNOR", 0)))

    tb = StreamTB(dut, seed=int(p.get("seed", 1)))
    tb.stalls(src_idle, sink_stall, sink_block)
    await tb.reset()
    for f in range(frames):
        await tb.send(golden.pack_beats(x[f * nvec:(f + 1) * nvec], simd, ibits))
    n_out = frames * nvec * nf
    ideal = nvec * sf * nf
    beats, timing = await tb.recv(n_out, timeout_cycles=40 * frames * ideal + 4000)
    got = golden.unpack_beats(beats, pe, obits, osigned).reshape(frames * nvec, mh)
    check_equal("mvau outputs", got, exp, tb.log)

    if measure:
        interval = timing.steady_interval(nvec * nf)
        tb.log.info("mvau: steady-state %.1f cycles/frame, ideal NVEC*SF*NF = %d (%.3fx); "
                    "first-in to last-out %d cycles for %d frames",
                    interval, ideal, interval / ideal, timing.total_cycles(), frames)
        write_report(p, {"module": "mvau", "interval": interval, "ideal": ideal,
                         "latency_total": timing.total_cycles(), "frames": frames,
                         "first_out": timing.out_cycles[0] - timing.first_in})
        assert interval <= 1.05 * ideal, f"{interval} cycles/frame > 1.05 x ideal {ideal}"


@cocotb.test()
async def test_mvau_random_stalls(dut) -> None:
    await _run(dut, src_idle=0.3, sink_stall=0.4, measure=False)


@cocotb.test()
async def test_mvau_throughput(dut) -> None:
    await _run(dut, src_idle=0.0, sink_stall=0.0, measure=True)


@cocotb.test()
async def test_mvau_sink_blocked(dut) -> None:
    # Sink refuses all beats for a while: internal buffers fill, input must be held back.
    await _run(dut, src_idle=0.1, sink_stall=0.2, measure=False, sink_block=400)


@cocotb.test()
async def test_mvau_source_idles(dut) -> None:
    # Idle source, eager sink: the module runs ahead of its input (read-before-write hazards).
    await _run(dut, src_idle=0.5, sink_stall=0.0, measure=False)
