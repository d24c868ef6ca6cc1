"""Open FPGA flow: a stitched netfabric project folder -> board bitstream + report.

``build_bitstream(project_dir, board, out_dir, freq_mhz)`` is the entry point; the CLI is
``python -m netfabric.hw.flow``. See README.md in this folder for the manifest schema.
"""

from .bitstream import build_bitstream
from .boards import BOARDS, Board, get_board, known_boards
from .errors import (
    DesignDoesNotFitError,
    FlowError,
    ManifestError,
    PllError,
    ToolFailedError,
    ToolNotFoundError,
    UnknownBoardError,
)
from .manifest import Manifest, load_manifest
from .report import Report

__all__ = [
    "BOARDS",
    "Board",
    "DesignDoesNotFitError",
    "FlowError",
    "Manifest",
    "ManifestError",
    "PllError",
    "Report",
    "ToolFailedError",
    "ToolNotFoundError",
    "UnknownBoardError",
    "build_bitstream",
    "get_board",
    "known_boards",
    "load_manifest",
]
