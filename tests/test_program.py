"""`netfabric program` (openFPGALoader): one-line errors for every way it cannot load a board."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from netfabric import program as prog
from netfabric.cli import main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _logs_in_tmp(tmp_path, monkeypatch):
    monkeypatch.delenv("NETFABRIC_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def invoke(*args):
    return CliRunner().invoke(main, ["program", *map(str, args)])


def _one_line_error(res) -> str:
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.output, res.output
    return lines[0]


def test_no_bitstream_built_yet(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    line = _one_line_error(invoke("--board", "ulx3s-85f"))
    assert "no bitstream for ulx3s-85f" in line and "netfabric bitstream --board" in line


def test_wrong_file_kind_and_vendor_board(tmp_path):
    bit = tmp_path / "x.bit"
    bit.write_bytes(b"\0")
    assert ".bin" in _one_line_error(invoke("--board", "icebreaker", "--bitstream", bit))
    assert "openFPGALoader" in _one_line_error(invoke("--board", "pynq-z2", "--bitstream", bit))


def test_loader_command_per_board(tmp_path):
    cmd = prog.loader_command("ulx3s-85f", tmp_path / "a.bit")
    assert cmd[1:] == ["--board", "ulx3s", str(tmp_path / "a.bit")]
    assert prog.loader_command("icebreaker", tmp_path / "a.bin", flash=True)[1:4] == [
        "--board", "ice40_generic", "--write-flash"]


@pytest.mark.parametrize("output, expect", [
    ("empty\nunable to open ftdi device: -3 (device not found)\nJTAG init failed with: unable "
     "to open ftdi device\n", "no ulx3s-85f board found on USB (unable to open ftdi device"),
    ("openFPGALoader: error while loading shared libraries: libusb-1.0.so.0: cannot open shared "
     "object file", "cannot start (libusb-1.0.so.0 missing): install libusb-1.0"),
    ("Error: something else\n", "failed to program the ulx3s-85f: Error: something else"),
])
def test_failures_are_explained(output, expect):
    assert expect in prog.explain_failure("ulx3s-85f", output)


def test_no_board_attached_is_one_line(tmp_path, monkeypatch):
    """The real loader where it can start; a recorded answer where it cannot run here."""
    bit = tmp_path / "nf_accel_ulx3s-85f.bit"
    bit.write_bytes(b"\xff" * 64)
    try:
        prog.find_loader()
    except prog.ProgramError:
        monkeypatch.setattr(prog, "find_loader", lambda: "openFPGALoader")
        monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(
            a, 1, "", "unable to open ftdi device: -3 (device not found)\n"))
    line = _one_line_error(invoke("--board", "ulx3s-85f", "--bitstream", bit))
    assert "no ulx3s-85f board found on USB" in line or "cannot start" in line


def test_make_program_calls_the_cli():
    recipe = (REPO / "Makefile").read_text().split("\nprogram:")[1].split("\n\n")[0]
    assert "/netfabric" in recipe and " program --board $(BOARD)" in recipe
