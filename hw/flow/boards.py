"""Board registry: the device, its tool flow, oscillator and LED pins for each supported board.

Pin assignments live in ``hw/boards/<board>.<lpf|pcf|xdc>``. They name the ports of the
generated board shell (``shell.py``): ``clk_osc`` (board oscillator), ``led[i]`` and, on the open
boards, ``uart_rx`` / ``uart_tx`` (the FPGA's side of the board's FTDI USB-serial port).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .errors import UnknownBoardError

Family = Literal["ecp5", "ice40", "xc7"]

BOARDS_DIR = Path(__file__).resolve().parent.parent / "boards"


@dataclass(frozen=True)
class Board:
    name: str
    description: str
    family: Family
    part: str  # the vendor's full part number, for reports
    osc_mhz: float  # on-board oscillator feeding the PLL
    leds: int  # number of led[] pins in the constraints file
    constraints: str  # file name in hw/boards/
    synth_args: tuple[str, ...] = ()  # extra synth_<family> options
    pnr_args: tuple[str, ...] = ()  # device selection for nextpnr
    # nextpnr's placer, chosen per family from measured builds (see the architecture doc):
    # on ECP5 the electrostatic "static" placer spreads cells to a target density, which left
    # router1 a fraction of the congestion HeAP's denser placement gave it.
    placer: Literal["heap", "static"] = "heap"
    default_freq_mhz: float = 100.0
    leds_active_low: bool = False
    # Host link (open boards): baud rate of the FTDI USB-serial port, 0 = no link in the shell.
    link_baud: int = 0
    programmer: str = ""  # openFPGALoader's --board name
    # What the fit check (fit.py) compares with: LUT4, FF, DSP, BRAM as the family counts
    # them (nextpnr's utilisation report); empty where the model has no primitives (xc7).
    capacity: tuple[tuple[str, int], ...] = ()

    @property
    def constraints_path(self) -> Path:
        return BOARDS_DIR / self.constraints

    @property
    def open_flow(self) -> bool:
        """True when Yosys + nextpnr can build it; False for the vendor (Vivado) flow."""
        return self.family in ("ecp5", "ice40")

    @property
    def bitstream_ext(self) -> str:
        return {"ecp5": "bit", "ice40": "bin", "xc7": "bit"}[self.family]


BOARDS: dict[str, Board] = {
    b.name: b
    for b in (
        Board(
            name="ulx3s-85f",
            description="Radiona ULX3S with ECP5 LFE5U-85F, 25 MHz oscillator, 8 LEDs",
            family="ecp5",
            part="LFE5U-85F-6BG381C",
            osc_mhz=25.0,
            leds=8,
            constraints="ulx3s-85f.lpf",
            pnr_args=("--85k", "--package", "CABGA381", "--speed", "6"),
            placer="static",
            default_freq_mhz=100.0,
            # FT231X: 3 Mbaud is its maximum (3 MHz / n, n >= 1).
            link_baud=3_000_000,
            programmer="ulx3s",
            capacity=(("LUT4", 83640), ("FF", 83640), ("DSP", 156), ("BRAM", 208)),
        ),
        Board(
            name="icebreaker",
            description="1BitSquared iCEBreaker with iCE40 UP5K, 12 MHz oscillator, 2 LEDs",
            family="ice40",
            part="iCE40UP5K-SG48",
            osc_mhz=12.0,
            leds=2,
            constraints="icebreaker.pcf",
            # The UP5K has 8 SB_MAC16 DSPs; without -dsp every multiplier becomes LUTs.
            synth_args=("-dsp",),
            pnr_args=("--up5k", "--package", "sg48"),
            default_freq_mhz=24.0,
            leds_active_low=True,
            # FT2232H channel B: 3 Mbaud = 24 MHz / 8 exactly.
            link_baud=3_000_000,
            programmer="ice40_generic",
            # an iCE40 logic cell is one LUT4 and one FF
            capacity=(("LUT4", 5280), ("FF", 5280), ("DSP", 8), ("BRAM", 30)),
        ),
        Board(
            name="pynq-z2",
            description="TUL PYNQ-Z2 with Zynq-7020 (Vivado flow), 125 MHz PL oscillator, 4 LEDs",
            family="xc7",
            part="xc7z020clg400-1",
            osc_mhz=125.0,
            leds=4,
            constraints="pynq-z2.xdc",
            default_freq_mhz=100.0,
        ),
    )
}


def known_boards() -> list[str]:
    return sorted(BOARDS)


def get_board(name: str) -> Board:
    """Look a board up by name; an unknown name lists the known ones."""
    try:
        return BOARDS[name]
    except KeyError:
        listing = "\n".join(f"  {b.name:<12} {b.description}" for b in BOARDS.values())
        raise UnknownBoardError(f"unknown board {name!r}; known boards:\n{listing}") from None
