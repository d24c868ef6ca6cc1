"""netfabric.files: a write that fails midway leaves the old file (or folder) whole and no
temporaries behind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from netfabric.files import atomic_copy, atomic_dir, atomic_path, atomic_write


def _names(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_atomic_write_replaces_and_leaves_no_temporaries(tmp_path):
    target = tmp_path / "sub" / "a.json"
    atomic_write(target, "old")
    atomic_write(target, b"new")
    assert target.read_text() == "new"
    assert _names(tmp_path) == ["sub", "sub/a.json"]
    assert target.stat().st_mode & 0o777 == 0o644  # readable by others, not mkstemp's 0600


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_a_writer_failing_midway_keeps_the_old_file(tmp_path, error):
    target = tmp_path / "model.pt"
    target.write_text("old checkpoint")
    with pytest.raises(error), atomic_path(target) as tmp:
        tmp.write_text("half a check")
        raise error("the writer died")
    assert target.read_text() == "old checkpoint"
    assert _names(tmp_path) == ["model.pt"]


def test_a_failed_first_write_leaves_nothing(tmp_path):
    with pytest.raises(ValueError), atomic_path(tmp_path / "hw_graph.onnx") as tmp:
        tmp.write_bytes(b"\x08\x01")
        raise ValueError("bad graph")
    assert _names(tmp_path) == []


def test_the_temporary_keeps_the_extension(tmp_path):
    """np.save appends .npy to a name without it; onnx.save picks the format by extension."""
    with atomic_path(tmp_path / "x.npy") as tmp:
        assert tmp.suffix == ".npy" and tmp.parent == tmp_path
        np.save(tmp, np.arange(3))
    assert np.load(tmp_path / "x.npy").tolist() == [0, 1, 2]
    assert _names(tmp_path) == ["x.npy"]


def test_atomic_copy(tmp_path):
    atomic_write(tmp_path / "a.bit", b"\x01\x02")
    atomic_copy(tmp_path / "a.bit", tmp_path / "out" / "b.bit")
    assert (tmp_path / "out" / "b.bit").read_bytes() == b"\x01\x02"
    assert _names(tmp_path) == ["a.bit", "out", "out/b.bit"]


def test_atomic_dir_replaces_the_whole_folder(tmp_path):
    project = tmp_path / "rtl"
    project.mkdir()
    (project / "stale.v").write_text("old")
    with atomic_dir(project) as tmp:
        (tmp / "top.v").write_text("module top; endmodule")
        (tmp / "mem").mkdir()
        (tmp / "mem" / "w.mem").write_text("00")
    assert _names(tmp_path) == ["rtl", "rtl/mem", "rtl/mem/w.mem", "rtl/top.v"]
    assert (project / "top.v").stat().st_mode & 0o777 == 0o644


def test_atomic_dir_failing_midway_keeps_the_old_folder(tmp_path):
    project = tmp_path / "rtl"
    project.mkdir()
    (project / "top.v").write_text("old")
    with pytest.raises(RuntimeError), atomic_dir(project) as tmp:
        (tmp / "top.v").write_text("half")
        raise RuntimeError("stitching failed")
    assert (project / "top.v").read_text() == "old"
    assert _names(tmp_path) == ["rtl", "rtl/top.v"]


def test_atomic_dir_first_write_failing_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError), atomic_dir(tmp_path / "rtl") as tmp:
        (tmp / "top.v").write_text("half")
        raise RuntimeError("stitching failed")
    assert _names(tmp_path) == []
