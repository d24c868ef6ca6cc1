"""The simulator build cache stays under its cap: least recently used builds go first, builds
in use (locked) and the shared runtime objects stay (sim/build_cache.py)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from netfabric.errors import SimulationError
from netfabric.sim import build_cache, runner
from netfabric.sim.build_cache import (
    LOCK,
    STAMP,
    cap_bytes,
    claim,
    evict,
    evict_after_build,
    in_use,
    mark_used,
)

MB = 1 << 20


def _build(root: Path, name: str, megabytes: int, used_ago_s: float) -> Path:
    """A finished build folder of ``megabytes`` whose last use was ``used_ago_s`` ago."""
    folder = root / name
    (folder / "obj").mkdir(parents=True)
    (folder / "obj" / "model.o").write_bytes(os.urandom(megabytes * MB))
    (folder / LOCK).touch()
    stamp = folder / STAMP
    stamp.write_text("{}")
    when = time.time() - used_ago_s
    os.utime(stamp, (when, when))
    return folder


def test_least_recently_used_builds_are_evicted_down_to_the_cap(tmp_path):
    old = _build(tmp_path, "old", 2, used_ago_s=300)
    middle = _build(tmp_path, "middle", 2, used_ago_s=200)
    new = _build(tmp_path, "new", 2, used_ago_s=100)
    runtime = tmp_path / "_verilator_runtime" / "k"
    runtime.mkdir(parents=True)
    (runtime / "verilated.o").write_bytes(os.urandom(MB))

    gone = evict(tmp_path, cap=int(5.5 * MB))
    assert not old.exists() and middle.exists() and new.exists()
    assert runtime.is_dir()  # shared by every build: never evicted
    assert gone.folders == 1 and gone.bytes_freed >= 2 * MB
    assert gone.bytes_left <= 5.5 * MB

    # a use moves a build to the back of the queue
    mark_used(middle)
    evict(tmp_path, cap=int(3.5 * MB))
    assert middle.exists() and not new.exists()


def test_a_build_in_use_or_just_built_is_never_evicted(tmp_path):
    running = _build(tmp_path, "running", 2, used_ago_s=300)
    built = _build(tmp_path, "built", 2, used_ago_s=200)
    idle = _build(tmp_path, "idle", 2, used_ago_s=100)
    with claim(running) as held:
        held.share()  # running: shared lock, as run_cocotb holds it while the tests run
        gone = evict(tmp_path, cap=0, keep=built)
        assert running.exists() and built.exists() and not idle.exists()
    assert gone.folders == 1
    evict(tmp_path, cap=0, keep=built)
    assert not running.exists() and built.exists()
    assert not list(tmp_path.glob(".evicted-*"))  # removed, not left renamed


def test_a_harness_run_holds_its_build_and_evictions_are_logged(tmp_path, monkeypatch, caplog):
    """run_harness holds its build folder with in_use while the executable runs; the eviction
    after another new build (both engines call evict_after_build) spares it and logs the rest."""
    monkeypatch.setenv(build_cache.CAP_ENV, str(1 * MB / 1e9))
    running = _build(tmp_path, "harness_running", 2, used_ago_s=300)
    idle = _build(tmp_path, "harness_idle", 2, used_ago_s=200)
    built = _build(tmp_path, "harness_built", 2, used_ago_s=0)
    with in_use(running), caplog.at_level("INFO", logger=build_cache.__name__):
        gone = evict_after_build(tmp_path, built)
    assert running.exists() and built.exists() and not idle.exists()
    assert gone.folders == 1
    assert "evicted 1 least recently used builds" in caplog.text
    with in_use(tmp_path / "not_a_cached_build"):  # an executable outside the cache: no lock
        pass


def test_a_folder_without_lock_is_removed_only_when_old(tmp_path):
    fresh = tmp_path / "being_created"
    fresh.mkdir()
    (fresh / "cmds.f").write_text("fifo.v\n")
    stale = tmp_path / "left_over"
    (stale / "obj").mkdir(parents=True)
    (stale / "obj" / "model.o").write_bytes(os.urandom(MB))
    long_ago = time.time() - 2 * build_cache.ORPHAN_AGE_S
    os.utime(stale, (long_ago, long_ago))
    evict(tmp_path, cap=0)
    assert fresh.exists() and not stale.exists()


def test_cap_from_the_environment(monkeypatch):
    monkeypatch.delenv(build_cache.CAP_ENV, raising=False)
    assert cap_bytes() == int(build_cache.DEFAULT_CAP_GB * 1e9)
    monkeypatch.setenv(build_cache.CAP_ENV, "0.5")
    assert cap_bytes() == 500_000_000
    for bad in ("lots", "0", "-3"):
        monkeypatch.setenv(build_cache.CAP_ENV, bad)
        with pytest.raises(SimulationError, match=build_cache.CAP_ENV) as err:
            cap_bytes()
        assert "\n" not in str(err.value)


@pytest.mark.sim
def test_run_cocotb_evicts_the_oldest_build_past_the_cap(tmp_path, monkeypatch):
    """Two real Icarus builds of fifo.v in a private cache capped below two builds: the
    second build evicts the first, and reruns the kept one from the cache."""
    if not runner.shutil.which("iverilog"):
        pytest.skip("Icarus Verilog is not installed")
    monkeypatch.setattr(runner, "BUILD_ROOT", tmp_path)
    src = runner.rtl_sources("fifo.v")

    def run(depth: int) -> runner.SimResult:
        hdl = {"WIDTH": 8, "DEPTH": depth, "RAM_STYLE": 1}
        tb = {"TB_PARAMS": json.dumps({**hdl, "seed": 2, "beats": 20})}
        return runner.run_cocotb("fifo", src, hdl, "netfabric.sim.tb.tb_fifo",
                                 simulator="icarus", extra_env=tb)

    first = run(2)
    one_build = build_cache.folder_bytes(first.build_dir)
    monkeypatch.setenv(build_cache.CAP_ENV, str(1.5 * one_build / 1e9))
    second = run(3)
    assert second.built and not first.build_dir.exists()
    again = run(3)
    assert not again.built and again.build_dir == second.build_dir
