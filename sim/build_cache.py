"""Size cap for the simulator build cache: least recently used builds are evicted.

Every Verilator build (a cocotb testbench's, a compiled harness's) keeps a folder under
``<cache>/sim`` so that the next run of the same design skips the minutes of C++ compile. The
key of a build includes the Python environment and the sources, so a new virtual environment or
an edited module starts new folders and the old ones are never used again: without a cap, the
cache grows with every checkout (one machine reached 2,577 builds, 36 GB, and a full disk).

Each use of a build touches its stamp file; after a new build, :func:`evict` removes the least
recently used folders until the cache fits ``NETFABRIC_SIM_CACHE_GB`` (default
:data:`DEFAULT_CAP_GB`). A folder another process holds (its ``.lock`` taken, shared while it
runs, exclusive while it builds: :func:`claim`) is never removed.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from netfabric.errors import SimulationError

_log = logging.getLogger(__name__)

DEFAULT_CAP_GB = 8.0
# A folder without a lock file is either left over or being created this instant (mkdir,
# then the lock): only the first kind, older than this, is removed.
ORPHAN_AGE_S = 3600.0
CAP_ENV = "NETFABRIC_SIM_CACHE_GB"
STAMP = "netfabric_build.json"
LOCK = ".lock"
# Shared runtime objects, reused by every build: small, and never stale for a live install.
KEEP_DIRS = frozenset({"_verilator_runtime"})


@dataclass(frozen=True)
class Evicted:
    """What one :func:`evict` call removed."""

    folders: int
    bytes_freed: int
    bytes_left: int


def cap_bytes() -> int:
    """The cache cap from ``NETFABRIC_SIM_CACHE_GB`` (a positive number of GB), or the default."""
    raw = os.environ.get(CAP_ENV, "").strip()
    if not raw:
        return int(DEFAULT_CAP_GB * 1e9)
    try:
        gb = float(raw)
    except ValueError:
        gb = -1.0
    if not gb > 0:
        raise SimulationError(f"{CAP_ENV}={raw!r}: expected a positive number of gigabytes")
    return int(gb * 1e9)


def mark_used(build_dir: Path) -> None:
    """Record a use of ``build_dir`` (the stamp's mtime is its last use)."""
    with contextlib.suppress(FileNotFoundError):
        os.utime(build_dir / STAMP)


def last_used(build_dir: Path) -> float:
    """When ``build_dir`` was last used: its stamp's mtime, else (unfinished) the folder's."""
    for path in (build_dir / STAMP, build_dir):
        with contextlib.suppress(FileNotFoundError):
            return path.stat().st_mtime
    return 0.0


def folder_bytes(folder: Path) -> int:
    """Bytes on disk under ``folder`` (files only, links not followed)."""
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total


class Claim:
    """A held build folder lock (see :func:`claim`)."""

    def __init__(self, lock_file: IO[str]) -> None:
        self._lock_file = lock_file

    def share(self) -> None:
        """From building to using: other processes may now use the folder too."""
        fcntl.flock(self._lock_file, fcntl.LOCK_SH)


@contextlib.contextmanager
def claim(build_dir: Path) -> Iterator[Claim]:
    """Hold ``build_dir``'s lock, exclusive (to build it; concurrent runs of one design wait)
    until :meth:`Claim.share` (to run it). Either keeps :func:`evict`, of this process or any
    other, away from the folder."""
    build_dir.mkdir(parents=True, exist_ok=True)
    with (build_dir / LOCK).open("a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        yield Claim(lock_file)


def evict(root: Path, cap: int | None = None, keep: Path | None = None) -> Evicted:
    """Remove the least recently used build folders under ``root`` until the rest fits ``cap``
    bytes. ``keep`` (the build just made) and folders in use elsewhere stay."""
    cap = cap_bytes() if cap is None else cap
    if not root.is_dir():
        return Evicted(0, 0, 0)
    keep = keep.resolve() if keep is not None else None
    folders = [p for p in root.iterdir() if p.is_dir() and p.name not in KEEP_DIRS]
    sizes = {p: folder_bytes(p) for p in folders}
    total = sum(sizes.values()) + sum(folder_bytes(root / d) for d in KEEP_DIRS)
    removed = freed = 0
    for folder in sorted(folders, key=last_used):
        if total <= cap:
            break
        if folder.resolve() == keep or not _remove_if_idle(folder):
            continue
        removed += 1
        freed += sizes[folder]
        total -= sizes[folder]
    return Evicted(removed, freed, total)


def evict_after_build(root: Path, just_built: Path) -> Evicted:
    """After a new build: keep ``root`` under its cap, sparing ``just_built``, and log what went
    (to the log file: the user's console shows netfabric's own progress)."""
    gone = evict(root, keep=just_built)
    if gone.folders:
        _log.info("simulator build cache: evicted %d least recently used builds (%.1f GB), "
                  "%.1f GB left", gone.folders, gone.bytes_freed / 1e9, gone.bytes_left / 1e9)
    return gone


@contextlib.contextmanager
def in_use(build_dir: Path) -> Iterator[None]:
    """Hold ``build_dir``'s lock shared while its build runs (no :func:`evict` removes it then);
    a folder outside the cache (no lock file) is used as it is."""
    try:
        lock_file = (build_dir / LOCK).open("r")
    except FileNotFoundError:
        yield
        return
    with lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_SH)
        yield


def _remove_if_idle(folder: Path) -> bool:
    """Delete ``folder`` unless another process holds its lock; True if it was deleted."""
    lock_path = folder / LOCK
    if not lock_path.is_file():
        if time.time() - last_used(folder) < ORPHAN_AGE_S:
            return False
        shutil.rmtree(folder, ignore_errors=True)
        return not folder.exists()
    try:
        lock = lock_path.open("a")
    except FileNotFoundError:  # removed meanwhile by another process
        return False
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        # Rename first: a process that opens the old path afterwards starts a fresh build
        # instead of finding half a folder.
        trash = folder.with_name(f".evicted-{folder.name}-{os.getpid()}")
        try:
            folder.rename(trash)
        except OSError:
            return False
    shutil.rmtree(trash, ignore_errors=True)
    return True
