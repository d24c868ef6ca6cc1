"""Shared cocotb testbench scaffolding for single-input/single-output stream modules.

Every module under test has ``clk``, active-low ``rst_n``, an ``s_axis`` input and an
``m_axis`` output. Beats travel as whole integers (cocotbext-axi with ``byte_lanes=1``, so a
"byte" is the full tdata word), which keeps packing in one place: :mod:`netfabric.sim.golden`.

Configuration reaches the testbench as JSON in the ``TB_PARAMS`` environment variable
(HDL parameters plus test settings such as ``seed`` and ``frames``).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge, with_timeout
from cocotb.utils import get_sim_steps, get_sim_time
from cocotbext.axi import AxiStreamBus, AxiStreamFrame, AxiStreamSink, AxiStreamSource

CLK_NS = 10


def tb_params() -> dict[str, Any]:
    """The JSON dict the pytest side put into ``TB_PARAMS``."""
    raw = os.environ.get("TB_PARAMS")
    if not raw:
        raise RuntimeError("TB_PARAMS environment variable missing (run through sim.runner)")
    return json.loads(raw)


def random_pauses(rng: random.Random, p: float, block: int = 0) -> Iterator[bool]:
    """Endless pause pattern: ``block`` stalled cycles first, then True (stall this cycle)
    with probability ``p``, in bursts of 1..25 cycles so that single-cycle stalls, stalls
    longer than the modules' internal buffers, and everything between happen."""
    yield from itertools.repeat(True, block)
    while True:
        if rng.random() < p:
            yield from itertools.repeat(True, rng.choice((1, 1, 1, 2, 3, 7, 25)))
        else:
            yield False


@dataclass
class Timing:
    """Cycle numbers (since reset release) of stream handshakes."""

    first_in: int
    out_cycles: list[int]

    def frame_ends(self, beats_per_frame: int) -> list[int]:
        return self.out_cycles[beats_per_frame - 1::beats_per_frame]

    def steady_interval(self, beats_per_frame: int) -> float:
        """Mean cycles between the last output beats of consecutive frames, leaving out the
        interval between frames 0 and 1 (it may still contain pipeline fill)."""
        ends = self.frame_ends(beats_per_frame)
        if len(ends) < 3:
            raise ValueError("need >= 3 frames to measure a steady-state interval")
        tail = ends[1:]
        return (tail[-1] - tail[0]) / (len(tail) - 1)

    def total_cycles(self) -> int:
        """First input handshake to last output handshake (all frames)."""
        return self.out_cycles[-1] - self.first_in


class StreamTB:
    """Clock, reset, one AxiStreamSource on ``s_axis`` and one AxiStreamSink on ``m_axis``."""

    def __init__(self, dut: Any, seed: int = 1) -> None:
        self.dut = dut
        self.log = logging.getLogger("cocotb.tb")
        self.log.setLevel(logging.INFO)
        self.rng = random.Random(seed)
        cocotb.start_soon(Clock(dut.clk, CLK_NS, unit="ns").start())
        self.source = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis"), dut.clk,
                                      dut.rst_n, reset_active_level=False, byte_lanes=1)
        self.sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis"), dut.clk,
                                  dut.rst_n, reset_active_level=False, byte_lanes=1)
        # Per-beat INFO logging of cocotbext-axi costs more than the simulation itself.
        self.source.log.setLevel(logging.WARNING)
        self.sink.log.setLevel(logging.WARNING)
        self._reset_cycle = 0
        self._first_in: int | None = None

    async def _watch_first_input(self) -> None:
        """Stamp the first input handshake after reset, then stop (saves a wakeup per cycle)."""
        dut = self.dut
        while True:
            await RisingEdge(dut.clk)
            if dut.s_axis_tvalid.value == 1 and dut.s_axis_tready.value == 1:
                self._first_in = self.now_cycles()
                return

    def stalls(self, src_idle: float, sink_stall: float, sink_block: int = 0) -> None:
        """Random source idles and sink backpressure (probabilities per cycle); with
        ``sink_block`` the sink first refuses everything for that many cycles, so that the
        module fills up and must hold its input back."""
        if src_idle > 0:
            self.source.set_pause_generator(random_pauses(self.rng, src_idle))
        else:
            self.source.clear_pause_generator()
        if sink_stall > 0 or sink_block > 0:
            self.sink.set_pause_generator(random_pauses(self.rng, sink_stall, sink_block))
        else:
            self.sink.clear_pause_generator()

    async def reset(self) -> None:
        self.dut.rst_n.value = 0
        await ClockCycles(self.dut.clk, 4)
        self.dut.rst_n.value = 1
        await RisingEdge(self.dut.clk)
        self._reset_cycle = self.now_cycles()
        self._first_in = None
        cocotb.start_soon(self._watch_first_input())

    def now_cycles(self) -> int:
        return int(get_sim_time(unit="ns")) // CLK_NS

    async def send(self, beats: Sequence[int]) -> None:
        """Queue one frame of beats (no tlast: the module sees one continuous stream)."""
        await self.source.send(AxiStreamFrame(list(beats)))

    async def recv(self, n: int, timeout_cycles: int) -> tuple[list[int], Timing]:
        """Collect ``n`` output beats (cycle-stamped); fail after ``timeout_cycles``."""
        beats: list[int] = []
        stamps: list[int] = []
        steps_per_cycle = float(get_sim_steps(CLK_NS, "ns"))

        async def collect() -> None:
            while len(beats) < n:
                frame = await self.sink.recv()
                # Without tlast every beat is its own frame; sim_time_end = handshake edge.
                for v in frame.tdata:
                    beats.append(int(v))
                    stamps.append(round(frame.sim_time_end / steps_per_cycle))

        await with_timeout(collect(), timeout_cycles * CLK_NS, "ns")
        await ClockCycles(self.dut.clk, 8)
        assert self.sink.empty(), "module produced more beats than expected"
        base = self._reset_cycle
        first_in = (self._first_in or base) - base
        return beats, Timing(first_in, [s - base for s in stamps])


async def clock_and_reset(dut: Any, **inputs: int) -> None:
    """For a testbench that drives the module by hand (no stream models): start the clock,
    set ``inputs`` (signal name -> value) and hold ``rst_n`` low for 4 cycles, as
    ``StreamTB.reset`` does; returns with reset just released."""
    cocotb.start_soon(Clock(dut.clk, CLK_NS, unit="ns").start())
    dut.rst_n.value = 0
    for name, value in inputs.items():
        getattr(dut, name).value = value
    await ClockCycles(dut.clk, 4)
    dut.rst_n.value = 1


def write_report(params: dict[str, Any], metrics: dict[str, Any]) -> None:
    """Write measured numbers to ``params["report"]`` (JSON) for the pytest side."""
    path = params.get("report")
    if path:
        with open(path, "w") as f:
            json.dump(metrics, f)


def check_equal(name: str, got: Any, exp: Any, log: logging.Logger) -> None:
    """Bit-exact comparison with a readable first-mismatch message."""
    import numpy as np

    got = np.asarray(got)
    exp = np.asarray(exp)
    if got.shape != exp.shape:
        raise AssertionError(f"{name}: shape {got.shape} != expected {exp.shape}")
    bad = np.argwhere(got != exp)
    if bad.size:
        i = tuple(bad[0])
        raise AssertionError(
            f"{name}: {len(bad)} mismatches, first at {i}: got {got[i]}, expected {exp[i]}"
        )
    log.info("%s: %d values match the golden model", name, got.size)
