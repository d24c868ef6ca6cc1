"""`netfabric bitstream` (what `make bitstream` runs): options, errors as one line, and the
Vivado boundary for pynq-z2 (no Vivado here)."""

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from netfabric.cli import main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _logs_in_tmp(tmp_path, monkeypatch):
    monkeypatch.delenv("NETFABRIC_CACHE", raising=False)  # it overrides XDG_CACHE_HOME
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def invoke(*args):
    return CliRunner().invoke(main, ["bitstream", *map(str, args)])


def test_help_lists_the_options():
    res = invoke("--help")
    assert res.exit_code == 0
    for option in ("--model", "--graph", "--board", "--freq", "--target-fps", "--out", "--seeds",
                   "--jobs"):
        assert option in res.output


def test_make_bitstream_calls_the_cli():
    recipe = (REPO / "Makefile").read_text().split("\nbitstream:")[1].split("\n\n")[0]
    assert "/netfabric" in recipe and " bitstream " in recipe
    assert "python -m netfabric.bitstream" not in recipe


def test_unknown_board_is_one_line_exit_2(tmp_path):
    res = invoke("--board", "de10-nano", "--out", tmp_path)
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "de10-nano" in lines[0] and "ulx3s-85f" in lines[0]
    assert "Traceback" not in res.output
    assert not (tmp_path / "hw").exists()  # rejected before exporting or compiling anything


def test_make_bitstream_passes_seeds():
    recipe = (REPO / "Makefile").read_text().split("\nbitstream:")[1].split("\n\n")[0]
    assert "$(if $(SEEDS),--seeds $(SEEDS))" in recipe
    assert "$(if $(JOBS),--jobs $(JOBS))" in recipe


@pytest.mark.parametrize("bad", ["0", "-2", "17", "three", "2.5", ""])
def test_bad_seed_count_is_one_line_exit_2(bad, tmp_path):
    res = invoke("--seeds", bad, "--out", tmp_path)
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "seeds" in lines[0] and "1 to 16" in lines[0], res.stderr
    assert "Traceback" not in res.output
    assert not (tmp_path / "hw").exists()  # rejected before exporting or compiling anything


def test_seeds_reach_the_build(monkeypatch, tmp_path):
    from netfabric import bitstream as bs

    seen = {}
    monkeypatch.setattr(bs, "build", lambda *a, **k: seen.update(k))
    assert invoke("--seeds", " 3", "--out", tmp_path).exit_code == 0
    assert seen == {"seeds": 3, "jobs": 1}
    assert invoke("--out", tmp_path).exit_code == 0 and seen == {"seeds": 1, "jobs": 1}
    assert invoke("--seeds", "3", "--jobs", "2", "--out", tmp_path).exit_code == 0
    assert seen == {"seeds": 3, "jobs": 2}


@pytest.mark.parametrize("bad", ["0", "17", "two", ""])
def test_bad_job_count_is_one_line_exit_2(bad, tmp_path):
    res = invoke("--seeds", "2", "--jobs", bad, "--out", tmp_path)
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "jobs" in lines[0] and "1 to 16" in lines[0], res.stderr
    assert not (tmp_path / "hw").exists()


def test_seeds_on_a_vivado_board_is_one_line_exit_2(tmp_path):
    res = invoke("--board", "pynq-z2", "--seeds", "2", "--out", tmp_path)
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "--seeds" in lines[0] and "Vivado" in lines[0], res.stderr
    assert not (tmp_path / "hw").exists()


def test_unknown_model_is_rejected_by_the_option():
    res = invoke("--model", "resnet")
    assert res.exit_code == 2 and "resnet" in res.stderr


@pytest.mark.skipif(shutil.which("vivado") is not None, reason="Vivado is installed here")
def test_pynq_z2_writes_hls_sources_then_names_what_is_missing(mlp_graph, tmp_path):
    res = invoke("--graph", mlp_graph, "--board", "pynq-z2", "--out", tmp_path)
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Vivado" in lines[0] and "Vitis HLS" in lines[0]
    assert "Traceback" not in res.output
    cpp = list((tmp_path / "hls").rglob("*.cpp"))
    assert len(cpp) >= 3  # one per HLS layer (MVAUs, LabelSelect)
