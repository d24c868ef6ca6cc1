"""The open boards' host link, end to end in simulation and on the host side.

Full-system simulation: the folder a ULX3S bitstream build synthesizes (stitched shipped MLP,
host link, board shell; ``stage_board_top``) simulated under cocotb with cocotbext-uart on the
UART pins, driven by the `fpga` backend's own protocol code (sim/tb/tb_board_link.py). Only
the PLL is bypassed (``NF_SIM_NO_PLL``) and the line runs at 4 clocks a bit instead of 33 (a
top-level parameter) to keep the simulation short.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from netfabric.errors import BackendFailure, BackendUnavailable
from netfabric.host.link_protocol import (
    MAGIC,
    FrameFormat,
    HostLink,
    LinkError,
    Status,
    StreamFormat,
)
from netfabric.sim.board_link import SIM_CLKS_PER_BIT, SIM_TIMEOUT_CYCLES

# --- host side, no simulator ---------------------------------------------------------------------


class FakeBoard:
    """A Transport answering like the board (label = sum of the frame's bytes mod 10)."""

    def __init__(self, fmt: FrameFormat, fail_after: int | None = None) -> None:
        self.fmt, self.fail_after, self.rx, self.tx, self.frames = fmt, fail_after, b"", b"", 0

    def write(self, data: bytes) -> None:
        self.rx += data
        while len(self.rx) >= self.fmt.request_bytes:
            req, self.rx = self.rx[: self.fmt.request_bytes], self.rx[self.fmt.request_bytes:]
            assert req[0] == MAGIC and int.from_bytes(req[1:3], "little") == self.fmt.inp.frame_bytes
            if self.fail_after is not None and self.frames >= self.fail_after:
                self.tx += bytes([Status.TIMEOUT])
            else:
                self.tx += bytes([Status.OK, sum(req[3:]) % 10])
            self.frames += 1

    def read(self, n: int, timeout: float) -> bytes:
        data, self.tx = self.tx[:n], self.tx[n:]
        return data

    def flush(self) -> None:
        pass


def _fmt(in_bits: int = 8) -> FrameFormat:
    return FrameFormat(StreamFormat(4, in_bits, False, 3, 4 * in_bits // 8),
                       StreamFormat(1, 4, False, 1, 1))


def test_stream_format_packs_like_the_rtl_library():
    from netfabric.sim import golden

    rng = np.random.default_rng(0)
    for bits, signed in ((8, False), (4, True), (3, True), (1, False)):
        s = StreamFormat(6, bits, signed, 5, (6 * bits + 7) // 8)
        lo, hi = golden.int_range(bits, signed)
        frame = rng.integers(lo, hi + 1, size=30)
        data = s.pack(frame)
        beats = golden.pack_beats(frame, 6, bits)
        assert data == b"".join(b.to_bytes(s.beat_bytes, "little") for b in beats)
        assert np.array_equal(s.unpack(data), frame)


def test_request_layout_and_link_limit():
    fmt = _fmt()
    req = fmt.encode(np.arange(12))
    assert req[:3] == bytes([0xA5, 12, 0]) and req[3:] == bytes(range(12))
    assert fmt.request_bytes == 15 and fmt.response_bytes == 2
    assert fmt.link_limit(3_000_000) == pytest.approx(3_000_000 / 150)


def test_host_link_pipelines_and_keeps_order():
    fmt = _fmt()
    frames = np.arange(60).reshape(5, 12) % 256
    out = HostLink(FakeBoard(fmt), fmt, window=3).run(frames)
    assert out.reshape(-1).tolist() == [int(f.sum()) % 10 for f in frames]


def test_error_status_and_silence_are_backend_failures():
    fmt = _fmt()
    with pytest.raises(LinkError, match="TIMEOUT") as exc:
        HostLink(FakeBoard(fmt, fail_after=1), fmt).run(np.zeros((3, 12), int))
    assert exc.value.status == Status.TIMEOUT and isinstance(exc.value, BackendFailure)

    class Silent(FakeBoard):
        def write(self, data: bytes) -> None:
            pass

    with pytest.raises(BackendFailure, match="no answer from the board"):
        HostLink(Silent(fmt), fmt, reply_timeout_s=0.01).run(np.zeros((1, 12), int))


def test_fpga_backend_without_a_board_says_so(mlp_graph):
    from netfabric.host.fpga_backend import FpgaBackend

    with pytest.raises(BackendUnavailable, match="needs the board's serial port"):
        FpgaBackend(mlp_graph)
    with pytest.raises(BackendUnavailable, match="no board on /dev/nf-no-such-port"):
        FpgaBackend(mlp_graph, port="/dev/nf-no-such-port")


def test_fpga_backend_runs_through_any_transport(mlp_graph, mnist_test):
    """The backend's run() contract (raw pixels in, labels out) over a fake board."""
    from netfabric.host.fpga_backend import FpgaBackend, frame_format

    fmt = frame_format(mlp_graph)
    assert (fmt.inp.frame_bytes, fmt.out.frame_bytes) == (784, 1)
    backend = FpgaBackend(mlp_graph, transport=FakeBoard(fmt))
    x = mnist_test[0][:3, None]
    labels = backend.run(x)
    xs = backend._checker.check_input(x).reshape(3, -1)
    assert labels.reshape(-1).tolist() == [sum(fmt.inp.pack(f)) % 10 for f in xs]
    assert backend.link_limit() == pytest.approx(3_000_000 / (10 * (3 + 784)))


# --- board shell ---------------------------------------------------------------------------------

TINY = Path(__file__).parent / "fixtures" / "flow_tiny"


@pytest.mark.parametrize("name, clks_per_bit", [("ulx3s-85f", 33), ("icebreaker", 8)])
def test_open_boards_get_the_host_link_shell(name, clks_per_bit):
    from netfabric.hw.flow import get_board, load_manifest
    from netfabric.hw.flow.pll import plan_clock
    from netfabric.hw.flow.shell import generate_shell, plan_link

    board = get_board(name)
    pll = plan_clock(board, board.default_freq_mhz)
    text = generate_shell(load_manifest(TINY), board, pll)
    assert f"parameter CLKS_PER_BIT = {clks_per_bit}" in text
    assert "input  wire uart_rx" in text and "output wire uart_tx" in text
    assert "host_link #(" in text and ".IN_W(32), .IN_BEATS(1)" in text
    # simulation swaps the PLL for a wire, and nothing else
    assert text.count("`ifdef NF_SIM_NO_PLL") == 1 and "assign clk = clk_osc;" in text
    assert ("~status" in text) == board.leds_active_low
    link = plan_link(board, pll)
    assert link.baud == 3_000_000 and abs(link.baud_error) < 0.011


def test_vendor_board_keeps_the_lfsr_shell():
    from netfabric.hw.flow import get_board, load_manifest
    from netfabric.hw.flow.shell import generate_shell, shell_sources

    board = get_board("pynq-z2")
    text = generate_shell(load_manifest(TINY), board, None)
    assert "host_link" not in text and "lfsr" in text and not shell_sources(board)


# --- full system in simulation -------------------------------------------------------------------


def _simulate(graph: Path, x: np.ndarray, tmp_path: Path, **kwargs) -> tuple[np.ndarray, dict]:
    from netfabric.sim.board_link import simulate_board_link

    return simulate_board_link(graph, x, tmp_path, **kwargs)


@pytest.mark.sim
def test_board_top_is_bit_exact_and_recovers_from_malformed_requests(mlp_graph, mnist_test,
                                                                      tmp_path):
    from netfabric.host.cpu_engine import CpuEngine

    x = mnist_test[0][:20, None]
    out, report = _simulate(mlp_graph, x, tmp_path, malformed=True)
    expected = CpuEngine(mlp_graph).run(x)
    assert np.array_equal(out, expected)
    want = {"bad_header": Status.BAD_HEADER, "bad_length": Status.BAD_LENGTH,
            "truncated_payload": Status.TIMEOUT, "truncated_header": Status.TIMEOUT}
    got = {name: Status(case["status"]) for name, case in report["cases"].items()}
    assert got == want
    for name, case in report["cases"].items():
        assert case["next"] == expected[1].reshape(-1).tolist(), name
    assert report["led"] & 1 == 0  # the error LED is off again after a good answer
    print(f"board top: {report['sim_ns_per_frame'] / 1e3:.0f} us simulated per frame "
          f"at {SIM_CLKS_PER_BIT} clocks/bit")


# --- host_link alone -----------------------------------------------------------------------------


@pytest.mark.sim
@pytest.mark.parametrize("params", [
    {"IN_W": 8, "IN_BEATS": 8, "OUT_W": 16, "OUT_BEATS": 2},   # byte beats, multi-byte answers
    {"IN_W": 24, "IN_BEATS": 3, "OUT_W": 8, "OUT_BEATS": 1},
], ids=["in8x8-out16x2", "in24x3-out8x1"])
def test_host_link_pipelines_and_reports_overflow(params):
    from netfabric.sim.runner import rtl_sources, run_cocotb

    simulator = "icarus" if shutil.which("iverilog") else "verilator"
    # the smallest receive FIFO (2 bytes, plus the read and output registers), so that one
    # request into a stalled accelerator overflows it
    # (the board's FIFO holds the host's whole window: hw/flow/shell.rx_fifo_depth)
    params = {**params, "CLKS_PER_BIT": SIM_CLKS_PER_BIT, "TIMEOUT_CYCLES": SIM_TIMEOUT_CYCLES,
              "RX_FIFO_DEPTH": 2}
    run_cocotb("host_link", rtl_sources("host_link.v", "uart_rx.v", "uart_tx.v"), params,
               "netfabric.sim.tb.tb_host_link", simulator,
               extra_env={"TB_PARAMS": json.dumps(params)})


@pytest.mark.sim
@pytest.mark.slow
def test_board_top_at_the_bitstreams_own_baud(mlp_graph, mnist_test, tmp_path):
    """The bitstream's divider (100 MHz / 33 = 3.0303 Mbaud) against a host sending at 3 Mbaud
    (the FT231X's rate; 0.9 % apart here, 1.0 % on the board): two frames come back right."""
    from netfabric.host.cpu_engine import CpuEngine

    x = mnist_test[0][:2, None]
    out, _ = _simulate(mlp_graph, x, tmp_path, malformed=False, real_line=True)
    assert np.array_equal(out, CpuEngine(mlp_graph).run(x))

