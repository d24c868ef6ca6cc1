"""cocotb test of a whole stitched accelerator: stream frames through it, capture the output.

The expected integers are *not* computed here: the pytest side (or the sim backend) compares
the captured output with the integer reference. This test checks the stream protocol (the
exact number of output beats, nothing extra) and measures cycles.

TB_PARAMS keys: ``manifest`` (path), ``input_npy`` ([frames, elements] ints in graph layout),
``output_npy`` (where to save [frames, out elements]), ``src_idle``, ``sink_stall``, ``seed``,
``report`` (JSON path for the cycle measurements).
"""

from __future__ import annotations

import json

import cocotb
import numpy as np

from netfabric.sim import golden
from netfabric.sim.tb.tbutil import StreamTB, tb_params, write_report


@cocotb.test()
async def test_accelerator_frames(dut) -> None:
    p = tb_params()
    man = json.loads(open(p["manifest"]).read())
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
    budget = (n + 4) * ideal * 8 + 20_000
    beats, timing = await tb.recv(n * per_frame, timeout_cycles=budget)
    out = golden.unpack_beats(beats, outp["elems_per_beat"], outp["bits"], outp["signed"])
    np.save(p["output_npy"], out.reshape(n, -1))
    metrics = {"frames": n, "latency_total": timing.total_cycles(), "ideal": ideal,
               "first_frame_latency": timing.frame_ends(per_frame)[0] - timing.first_in}
    if n >= 3:
        metrics["interval"] = timing.steady_interval(per_frame)
    tb.log.info("accelerator: %s", metrics)
    write_report(p, metrics)
