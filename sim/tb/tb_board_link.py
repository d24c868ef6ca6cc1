"""Full-system cocotb test: the board top that goes into the bitstream (shell + host link +
stitched accelerator), driven over its UART pins by the `fpga` backend's own code.

cocotbext-uart's UartSource/UartSink sit on ``uart_rx``/``uart_tx``; :class:`CocotbTransport`
makes them a :class:`netfabric.host.link_protocol.Transport`, and the blocking host code
(:class:`netfabric.host.fpga_backend.FpgaBackend`, :class:`HostLink`) runs in a cocotb bridge
thread whose transport calls resume the simulation. Times the host code passes to the
transport are simulated seconds.

The expected integers are not computed here: the pytest side compares the outputs with the
CPU engine. TB_PARAMS keys: ``graph``, ``input_npy`` (raw inputs), ``output_npy``,
``report`` (JSON: statuses of the malformed requests and what followed each), ``clks_per_bit``,
``timeout_cycles``, ``window``, ``malformed`` (bool), ``host_baud`` (optional).
"""

from __future__ import annotations

import logging
from typing import Any

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.task import bridge, resume
from cocotb.triggers import ClockCycles
from cocotb.utils import get_sim_time
from cocotbext.uart import UartSink, UartSource

from netfabric.sim.tb.tbutil import CLK_NS, tb_params, write_report


class CocotbTransport:
    """The simulated UART as a link Transport (call only from a cocotb bridge thread)."""

    def __init__(self, source: UartSource, sink: UartSink) -> None:
        self.source, self.sink = source, sink

    def write(self, data: bytes) -> None:
        self._write(bytes(data))

    def read(self, n: int, timeout: float) -> bytes:
        return self._read(n, timeout)

    def flush(self) -> None:
        self._flush()

    @resume
    async def _write(self, data: bytes) -> None:
        self.source.write_nowait(data)

    @resume
    async def _read(self, n: int, timeout: float) -> bytes:
        # like pyserial: block until n bytes or the timeout, return what came
        end = get_sim_time("ns") + timeout * 1e9
        buf = bytearray()
        while len(buf) < n:
            if not self.sink.empty():
                buf += self.sink.read_nowait(min(n - len(buf), self.sink.count()))
                continue
            left = int(end - get_sim_time("ns"))
            if left < 1:
                break
            await self.sink.wait(timeout=left, timeout_unit="ns")
        return bytes(buf)

    @resume
    async def _flush(self) -> None:
        await self.source.wait()


def _session(backend: Any, p: dict[str, Any]) -> dict[str, Any]:
    """The host side (blocking code, bridge thread): frames, then malformed requests."""
    from netfabric.host.link_protocol import MAGIC

    link, fmt = backend.link, backend.format
    x = np.load(p["input_npy"])
    t0 = get_sim_time("ns")
    out = backend.run(x)
    np.save(p["output_npy"], out)
    report: dict[str, Any] = {"frames": len(x), "sim_ns_per_frame": (get_sim_time("ns") - t0) / len(x)}
    if not p.get("malformed"):
        return report
    good = fmt.encode(backend._checker.check_input(x[:1]).reshape(-1))
    n = fmt.inp.frame_bytes
    bad = {
        "bad_header": bytes([MAGIC ^ 0xFF]) + good[1:],
        "bad_length": bytes([MAGIC, (n + 1) & 0xFF, (n + 1) >> 8]) + good[3:] + b"\x00",
        "truncated_payload": good[: 3 + n // 2],
        "truncated_header": good[:2],
    }
    cases = {}
    for name, request in bad.items():
        status = link.exchange(request).status
        # the next frame must come back right (what the pytest side compares)
        cases[name] = {"status": status, "next": backend.run(x[1:2]).reshape(-1).tolist()}
    report["cases"] = cases
    return report


@cocotb.test()
async def test_board_link(dut) -> None:
    from netfabric.host.fpga_backend import FpgaBackend

    p = tb_params()
    cocotb.start_soon(Clock(dut.clk_osc, CLK_NS, unit="ns").start())
    # the host's line rate: the FPGA's own (default), or e.g. the FTDI chip's 3 Mbaud against
    # the bitstream's real divider
    baud = float(p.get("host_baud") or 1e9 / (CLK_NS * int(p["clks_per_bit"])))
    source, sink = UartSource(dut.uart_rx, baud=baud), UartSink(dut.uart_tx, baud=baud)
    for sig in (dut.uart_rx, dut.uart_tx):  # one INFO line per byte otherwise
        logging.getLogger(f"cocotb.{sig._path}").setLevel(logging.WARNING)
    await ClockCycles(dut.clk_osc, 40)  # the shell's reset sequence

    byte_s = 10 / baud
    timeout_s = int(p["timeout_cycles"]) * CLK_NS * 1e-9
    window = int(p.get("window", 2))
    backend = FpgaBackend(p["graph"], transport=CocotbTransport(source, sink), window=window,
                          resync_s=3 * timeout_s)
    # simulated seconds: the requests in flight plus slack, and always past the board's timeout
    backend.link.reply_timeout_s = (window + 2) * backend.format.request_bytes * byte_s + \
        2 * timeout_s
    report = await bridge(_session)(backend, p)
    leds = int(dut.led.value)
    report["led"] = leds
    write_report(p, report)
