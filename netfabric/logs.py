"""netfabric's own output on the terminal, everyone else's in a log file.

A `netfabric` command drives FINN, qonnx, onnx, brevitas, torch, cocotb and Verilator, which
between them print hundreds of warnings, log lines and build logs. Those bury the few lines a
user needs (progress, results, errors), so the CLI sends them to a log file
(``$XDG_CACHE_HOME/netfabric/logs/netfabric-<time>-<pid>.log``, default ``~/.cache``) whose
path it prints at the end; ``netfabric -v`` shows everything on the terminal instead.

Three channels are redirected while a command runs (:func:`start` .. :func:`finish`):

* the :mod:`logging` tree (a file handler on the root logger),
* :mod:`warnings`, through :func:`logging.captureWarnings`,
* file descriptors 1 and 2 inside :func:`captured`, so that prints of third-party code and the
  output of subprocesses (simulator builds and runs) land in the file too. This only happens
  when ``sys.stdout`` / ``sys.stderr`` really are those descriptors (not under click's
  ``CliRunner``, whose streams are Python objects).

netfabric's own output goes through :func:`echo`, :func:`stream` and :func:`console`, which
write to the terminal even while the descriptors are redirected. Outside the CLI (library
use, tests calling functions directly) nothing is redirected and these write to
``sys.stdout`` / ``sys.stderr``.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import click

if TYPE_CHECKING:
    from rich.console import Console

KEEP_LOGS = 20  # older log files are deleted when a new one starts
log = logging.getLogger("netfabric")


@dataclass
class _Session:
    verbose: bool
    path: Path | None
    handlers: list[logging.Handler] = field(default_factory=list)
    root_level: int = logging.WARNING
    captured_warnings: bool = False
    # while captured(): the terminal's stdout / stderr, on duplicates of the original fds
    out: TextIO | None = None
    err: TextIO | None = None


_session: _Session | None = None


def log_dir() -> Path:
    """Where log files go: ``logs/`` in netfabric's cache folder (``netfabric.paths``)."""
    from netfabric.paths import cache_dir

    return cache_dir("logs", create=False)


def log_path() -> Path | None:
    """The current command's log file (None with ``-v`` or outside the CLI)."""
    return _session.path if _session else None


def start(verbose: bool = False) -> None:
    """Route logging and warnings for one CLI command: to a log file, or with ``verbose`` to
    the terminal. Undone by :func:`finish`."""
    global _session
    finish()
    root = logging.getLogger()
    session = _Session(verbose=verbose, path=None, root_level=root.level)
    if verbose:
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
        handler.setLevel(logging.INFO)
    else:
        session.path = _new_log_file()
        handler = logging.FileHandler(session.path, delay=True, encoding="utf-8")
        handler.setLevel(logging.DEBUG)
    logging.captureWarnings(True)  # warnings become log records: one route for both
    session.captured_warnings = True
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    session.handlers.append(handler)
    root.setLevel(logging.INFO)
    log.setLevel(logging.DEBUG)  # netfabric's own details (error tracebacks) reach the file
    _session = session


def finish() -> None:
    """Undo :func:`start`; print the log file's path if anything was written to it."""
    global _session
    session, _session = _session, None
    if session is None:
        return
    root = logging.getLogger()
    for handler in session.handlers:
        root.removeHandler(handler)
        handler.close()
    root.setLevel(session.root_level)
    log.setLevel(logging.NOTSET)
    if session.captured_warnings:
        logging.captureWarnings(False)
    path = session.path
    if path is not None and path.is_file():
        if path.stat().st_size:
            click.echo(f"(full log: {path})")
        else:
            path.unlink(missing_ok=True)


def _new_log_file() -> Path:
    folder = log_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:  # read-only home: the temp folder will do
        import tempfile

        folder = Path(tempfile.gettempdir()) / "netfabric-logs"
        folder.mkdir(parents=True, exist_ok=True)
    old = sorted(folder.glob("netfabric-*.log"), key=lambda p: p.stat().st_mtime)
    for p in old[: max(0, len(old) - KEEP_LOGS + 1)]:
        p.unlink(missing_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return folder / f"netfabric-{stamp}-{os.getpid()}.log"


def _fd_backed(stream: TextIO, fd: int) -> bool:
    try:
        return stream.fileno() == fd
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError
        return False


@contextmanager
def captured() -> Iterator[None]:
    """Send fds 1 and 2 (third-party prints, subprocess output) to the log file for the
    duration; netfabric's own output keeps reaching the terminal through :func:`stream`."""
    session = _session
    if (session is None or session.path is None or session.out is not None
            or not (_fd_backed(sys.stdout, 1) and _fd_backed(sys.stderr, 2))):
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    session.out = os.fdopen(os.dup(saved[0]), "w", buffering=1, encoding=sys.stdout.encoding,
                            errors="replace")
    session.err = os.fdopen(os.dup(saved[1]), "w", buffering=1, encoding=sys.stderr.encoding,
                            errors="replace")
    target = os.open(session.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.dup2(target, 1)
        os.dup2(target, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, target):
            os.close(fd)
        session.out.close()
        session.err.close()
        session.out = session.err = None


def stream(err: bool = False) -> TextIO:
    """The terminal's stdout (or stderr), also while :func:`captured` redirects fds 1 and 2."""
    session = _session
    if session is not None and session.out is not None and session.err is not None:
        return session.err if err else session.out
    return sys.stderr if err else sys.stdout


def echo(message: str = "", err: bool = False, nl: bool = True) -> None:
    """:func:`click.echo` to the terminal: netfabric's own progress and results."""
    click.echo(message, file=stream(err), nl=nl)


def console(err: bool = False) -> Console:
    """A rich console on the terminal (see :func:`stream`)."""
    from rich.console import Console

    if _session is not None and _session.out is not None:
        return Console(file=stream(err))
    return Console(stderr=err)  # follows sys.stdout, as rich does by default
