"""Atomic writes, in one place: a file or folder appears whole under its name, or not at all.

Everything netfabric writes for a user (checkpoints, graphs, reports, project folders) goes
through these helpers: the data goes to a temporary sibling (same file system, so the final
``os.replace`` is atomic), and on any failure the temporary is removed and the old file, if
any, is left untouched.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _fsync(path: Path) -> None:
    """Flush the file's data to disk before the rename makes it visible (power-loss safe)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | Path, mode: int = 0o644) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; once the block ends without error, the file
    written there replaces ``path``. For writers that want a file name (``model.save``,
    ``torch.save``). The temporary keeps ``path``'s extension, for writers that pick the
    format from it (``onnx.save``) or append one when it is missing (``np.save``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                                    suffix=f".tmp{path.suffix}")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        _fsync(tmp)
        os.chmod(tmp, mode)  # mkstemp creates 0600; artefacts are meant to be shared
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: str | Path, data: str | bytes, mode: int = 0o644) -> Path:
    """Write text or bytes to ``path`` atomically; returns ``path``."""
    path = Path(path)
    with atomic_path(path, mode) as tmp:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data)
    return path


def atomic_copy(src: str | Path, dst: str | Path, mode: int = 0o644) -> Path:
    """Copy ``src`` to ``dst`` atomically (a reader of ``dst`` never sees half a copy)."""
    with atomic_path(dst, mode) as tmp:
        shutil.copyfile(src, tmp)
    return Path(dst)


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder next to ``path``; once the block ends without error it
    replaces ``path``. An existing folder of that name is moved aside first and deleted only
    after the new one is in place, so a failure at any point leaves one of the two whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    old: Path | None = None
    try:
        yield tmp
        for p in tmp.rglob("*"):
            os.chmod(p, 0o755 if p.is_dir() or os.access(p, os.X_OK) else 0o644)
        os.chmod(tmp, 0o755)
        if path.exists():
            old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.old."))
            os.replace(path, old / path.name)
        os.replace(tmp, path)
    except BaseException:
        if old is not None and not path.exists():
            os.replace(old / path.name, path)  # put the previous folder back
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
