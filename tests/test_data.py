import gzip

import numpy as np
import pytest

from netfabric.models import data


def test_mnist_is_the_original_dataset(mnist_test):
    x, y = mnist_test
    assert x.shape == (10000, 28, 28) and x.dtype == np.uint8
    assert y.shape == (10000,) and set(np.unique(y)) == set(range(10))
    # the first labels of the original t10k set
    assert y[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]


def test_corrupt_cached_file_is_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("NETFABRIC_DATA", str(tmp_path))
    folder = data.cache_dir()
    folder.mkdir(parents=True)
    for name in data.MNIST_FILES:
        (folder / name).write_bytes(b"not mnist")
    with pytest.raises(data.DataError, match="corrupt"):
        data.load_mnist("test")


def test_truncated_idx_file_is_reported(tmp_path):
    path = tmp_path / "broken-idx3-ubyte.gz"
    header = bytes([0, 0, 8, 3]) + (10).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    path.write_bytes(gzip.compress(header + b"\0" * 100))
    with pytest.raises(data.DataError, match="truncated"):
        data.read_idx(path)


def test_bad_magic_is_reported(tmp_path):
    path = tmp_path / "x.idx"
    path.write_bytes(b"\x12\x34\x56\x78")
    with pytest.raises(data.DataError, match="magic"):
        data.read_idx(path)


def test_unknown_split_and_dataset():
    with pytest.raises(ValueError, match="split"):
        data.load_mnist("validation")
    with pytest.raises(ValueError, match="known"):
        data.load_dataset("cifar", "test")


def test_digits_split_is_disjoint_and_deterministic():
    xa, ya = data.load_digits("train")
    xb, yb = data.load_digits("test")
    assert xa.shape[1:] == (8, 8) and xa.dtype == np.uint8
    assert len(ya) + len(yb) == 1797
    x2, _ = data.load_digits("train")
    assert np.array_equal(xa, x2)
