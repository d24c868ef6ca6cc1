"""Bitstream packing: ecppack (ECP5 textual config -> .bit), icepack (iCE40 .asc -> .bin)."""

from __future__ import annotations

from pathlib import Path

from .boards import Board
from .errors import FlowError
from .pnr import ECP5_CONFIG, ICE40_ASC
from .tools import ToolRun, run_tool

LOG = "pack.log"


def pack_tool(board: Board) -> str:
    if board.family == "ecp5":
        return "ecppack"
    if board.family == "ice40":
        return "icepack"
    raise FlowError(f"{board.name} ({board.family}) is not packed by the open flow")


def pack_args(board: Board, bitstream: str) -> list[str]:
    # Compression is requested by the LPF (SYSCONFIG COMPRESS_CONFIG=ON), not here.
    if board.family == "ecp5":
        return ["--input", ECP5_CONFIG, "--bit", bitstream]
    pack_tool(board)
    return [ICE40_ASC, bitstream]


def run_pack(work_dir: Path, board: Board, bitstream: str) -> ToolRun:
    run = run_tool(pack_tool(board), pack_args(board, bitstream), work_dir, LOG)
    out = work_dir / bitstream
    if not out.is_file() or out.stat().st_size == 0:
        raise FlowError(f"{run.tool} finished but wrote no bitstream {out} (log: {run.log})")
    return run
