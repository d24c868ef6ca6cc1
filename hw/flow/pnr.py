"""nextpnr place and route (ECP5 / iCE40) with a JSON timing and utilisation report."""

from __future__ import annotations

from pathlib import Path

from .boards import Board
from .errors import DesignDoesNotFitError, FlowError, ToolFailedError
from .report import RESOURCE_KINDS, overused_resources
from .synth import NETLIST
from .tools import ToolRun, run_tool

REPORT = "pnr_report.json"
LOG = "pnr.log"
ECP5_CONFIG = "top.config"  # textual configuration for ecppack
ICE40_ASC = "top.asc"  # ASCII bitstream for icepack


def pnr_output(board: Board) -> str:
    return ECP5_CONFIG if board.family == "ecp5" else ICE40_ASC


def pnr_tool(board: Board) -> str:
    if not board.open_flow:
        raise FlowError(f"{board.name} ({board.family}) is not placed and routed with nextpnr")
    return f"nextpnr-{board.family}"


def output_names(board: Board, seed: int | None = None) -> dict[str, str]:
    """nextpnr's report, log and placed design file names; with ``seed``, the names of that
    seed's own copies (pnr_report_seed3.json, ...), so that seeds can run side by side."""
    names = {"report": REPORT, "log": LOG, "output": pnr_output(board)}
    if seed is None:
        return names
    out = {}
    for key, name in names.items():
        stem, dot, ext = name.rpartition(".")
        out[key] = f"{stem}_seed{seed}{dot}{ext}"
    return out


def pnr_args(board: Board, constraints: str, freq_mhz: float, seed: int = 1,
             names: dict[str, str] | None = None) -> list[str]:
    """nextpnr arguments; every path is relative to the build folder.

    The PLL output's constraint is derived by nextpnr from the oscillator's constraint in the
    board file; ``--freq`` only covers clocks nothing constrains (e.g. without a PLL).
    ``names`` (:func:`output_names`) redirects the report and the placed design.
    """
    pnr_tool(board)
    names = names or output_names(board)
    if board.family == "ecp5":
        io = ["--lpf", constraints, "--textcfg", names["output"]]
    else:
        io = ["--pcf", constraints, "--asc", names["output"]]
    return [
        *board.pnr_args,
        "--placer", board.placer,
        "--json", NETLIST,
        *io,
        "--report", names["report"],
        "--freq", f"{freq_mhz:g}",
        "--seed", str(seed),
        # Finish with a bitstream even when timing fails; the report says by how much.
        "--timing-allow-fail",
    ]  # fmt: skip


def run_pnr(
    work_dir: Path, board: Board, constraints: str, freq_mhz: float, seed: int = 1,
    names: dict[str, str] | None = None,
) -> ToolRun:
    """Run nextpnr (outputs under ``names``, default nextpnr's own); a design too large for
    the device raises DesignDoesNotFitError."""
    names = names or output_names(board)
    try:
        return run_tool(
            pnr_tool(board), pnr_args(board, constraints, freq_mhz, seed, names), work_dir,
            names["log"],
        )
    except ToolFailedError as exc:
        if exc.log is not None and exc.log.is_file():
            _raise_if_overused(exc.log.read_text(errors="replace"), board)
        raise


def _raise_if_overused(log_text: str, board: Board) -> None:
    over = overused_resources(log_text)
    if not over:
        return
    parts = [
        f"{RESOURCE_KINDS.get(cell, cell)} ({cell}): needs {used:,}, device has {avail:,}"
        for cell, used, avail in over
    ]
    cell, used, avail = over[0]
    raise DesignDoesNotFitError(
        f"design does not fit on {board.name} ({board.part}): " + "; ".join(parts),
        resource=RESOURCE_KINDS.get(cell, cell),
        used=used,
        available=avail,
    )
