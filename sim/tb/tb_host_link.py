"""cocotb test of ``host_link`` alone, with a Python model of the accelerator on its streams.

The host side is :class:`netfabric.host.link_protocol.HostLink` over the simulated UART (the
transport of tb_board_link). The model takes IN_BEATS beats per frame on ``m_axis`` and
answers OUT_BEATS beats on ``s_axis``: word j = (sum of the input words + j) mod 2^OUT_W.
Checked: pipelined frames, multi-beat multi-byte answers, and an overflow (the model stops
taking input mid-request), answered with its status, the next frame right.
TB_PARAMS: the HDL parameters IN_W, IN_BEATS, OUT_W, OUT_BEATS, CLKS_PER_BIT, TIMEOUT_CYCLES.
"""

from __future__ import annotations

import logging
from typing import Any

import cocotb
import numpy as np
from cocotb.task import bridge, resume
from cocotb.triggers import ClockCycles
from cocotbext.axi import AxiStreamFrame
from cocotbext.uart import UartSink, UartSource

from netfabric.host.link_protocol import FrameFormat, HostLink, Status, StreamFormat
from netfabric.sim.tb.tb_board_link import CocotbTransport
from netfabric.sim.tb.tbutil import CLK_NS, StreamTB, tb_params


def expected(frame_words: list[int], out_w: int, out_beats: int) -> list[int]:
    return [(sum(frame_words) + j) % (1 << out_w) for j in range(out_beats)]


@cocotb.test()
async def test_host_link(dut) -> None:
    p = tb_params()
    in_w, in_beats, out_w, out_beats = (int(p[k]) for k in ("IN_W", "IN_BEATS", "OUT_W",
                                                            "OUT_BEATS"))
    dut.uart_rx.value = 1
    tb = StreamTB(dut)  # clock, reset; its sink takes the link's m_axis, its source feeds s_axis
    baud = 1e9 / (CLK_NS * int(p["CLKS_PER_BIT"]))
    source, sink = UartSource(dut.uart_rx, baud=baud), UartSink(dut.uart_tx, baud=baud)
    for sig in (dut.uart_rx, dut.uart_tx):
        logging.getLogger(f"cocotb.{sig._path}").setLevel(logging.WARNING)
    await tb.reset()

    async def accelerator() -> None:
        while True:
            words: list[int] = []
            while len(words) < in_beats:
                words += [int(v) for v in (await tb.sink.recv()).tdata]
            for w in expected(words, out_w, out_beats):
                await tb.source.send(AxiStreamFrame([w]))

    cocotb.start_soon(accelerator())

    @resume
    async def stall(on: bool) -> None:
        tb.sink.pause = on
        await ClockCycles(dut.clk, 1)

    fmt = FrameFormat(StreamFormat(1, in_w, False, in_beats, in_w // 8),
                      StreamFormat(1, out_w, False, out_beats, out_w // 8))
    byte_s = 10 * int(p["CLKS_PER_BIT"]) * CLK_NS * 1e-9
    timeout_s = int(p["TIMEOUT_CYCLES"]) * CLK_NS * 1e-9
    link = HostLink(CocotbTransport(source, sink), fmt, window=3, resync_s=3 * timeout_s,
                    reply_timeout_s=4 * fmt.request_bytes * byte_s + 2 * timeout_s)

    def session() -> dict[str, Any]:
        rng = np.random.default_rng(5)
        frames = rng.integers(0, 1 << in_w, size=(7, in_beats), dtype=np.int64)
        out = link.run(frames)
        ok = all(out[i].tolist() == expected(f.tolist(), out_w, out_beats)
                 for i, f in enumerate(frames))
        stall(True)  # the accelerator stops taking input: the link's byte buffer overflows
        link.transport.write(fmt.encode(frames[0]))
        early = link.transport.read(1, 4 * fmt.request_bytes * byte_s)
        stall(False)
        status = link.read_response().status
        link.resync()
        after = link.run(frames[1:3])
        ok_after = all(after[i].tolist() == expected(f.tolist(), out_w, out_beats)
                       for i, f in enumerate(frames[1:3]))
        return {"ok": ok, "early": early, "status": status, "ok_after": ok_after}

    r = await bridge(session)()
    assert r["ok"], "pipelined frames came back wrong"
    assert r["early"] == b"", "an answer came while the accelerator was stalled"
    assert r["status"] == Status.OVERFLOW, f"status 0x{r['status']:02X}, expected OVERFLOW"
    assert r["ok_after"], "the frames after the overflow came back wrong"
