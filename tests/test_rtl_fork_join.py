"""The fork and join modules of hw/rtl (dup_streams.v, eltwise_add.v) against numpy, through
cocotb: random idles and backpressure (per output lane / per input), a blocked lane or sink,
full rate without stalls; Verilator for every case, one case each on Icarus; verilator -Wall
lint. Their sources (with fifo.v, which both instantiate) come from the stitcher's dependency
scan, so these tests also check it.

Run: ``.venv/bin/python -m pytest tests/test_rtl_fork_join.py -m sim``
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from netfabric.hw.stitch import RTL_DIR, rtl_dependencies
from netfabric.sim import golden
from netfabric.sim.runner import BUILD_ROOT, run_cocotb, verilator_env

pytestmark = pytest.mark.sim
DATA_ROOT = BUILD_ROOT / "data"


def _sources(top: str) -> list[Path]:
    return [RTL_DIR / s for s in rtl_dependencies([f"{top}.v"])]


def test_dependency_scan_finds_the_buffers():
    assert rtl_dependencies(["dup_streams.v"]) == ["dup_streams.v", "fifo.v"]
    assert rtl_dependencies(["eltwise_add.v"]) == ["eltwise_add.v", "fifo.v"]
    assert {"thresh_search.v", "fifo.v"} <= set(rtl_dependencies(["mvau.v"]))


def _run(top: str, case: str, hdl: dict[str, Any], tb: dict[str, Any], simulator: str) -> dict:
    if simulator == "icarus" and shutil.which("iverilog") is None:
        pytest.skip("Icarus Verilog not installed")
    case_dir = DATA_ROOT / f"{top}_{case}"
    case_dir.mkdir(parents=True, exist_ok=True)
    report = case_dir / f"report_{simulator}.json"
    report.unlink(missing_ok=True)
    params = {**{k: v for k, v in hdl.items() if not isinstance(v, Path)}, **tb, "report": str(report)}
    run_cocotb(top, _sources(top), hdl, f"netfabric.sim.tb.tb_{top}", simulator=simulator,
               extra_env={"TB_PARAMS": json.dumps(params)}, name=f"{top}_{case}")
    out = json.loads(report.read_text())
    print(json.dumps({"case": case, "simulator": simulator, **out}))
    return out


DUP_CASES = {
    # name: (NOUT, PE, BITS)
    "n2_pe1_b8": (2, 1, 8),
    "n3_pe3_b5": (3, 3, 5),
    "n2_pe4_b4": (2, 4, 4),
}


@pytest.mark.parametrize(("name", "simulator"), [
    *[pytest.param(n, "verilator", id=f"{n}-verilator") for n in DUP_CASES],
    pytest.param("n3_pe3_b5", "icarus", id="n3_pe3_b5-icarus")])
def test_dup_streams(name: str, simulator: str) -> None:
    nout, pe, bits = DUP_CASES[name]
    rep = _run("dup_streams", name, dict(NOUT=nout, PE=pe, BITS=bits), {"seed": 11, "beats": 200},
               simulator)
    assert rep["interval"] <= rep["ideal"]


ADD_CASES = {
    # name: (PE, LBITS, LSIGNED, RBITS, RSIGNED, OBITS, OSIGNED, const ROM words or 0)
    "u4_u4_to_u5_pe2": (2, 4, 0, 4, 0, 5, 0, 0),
    "s8_u3_to_s10_pe3": (3, 8, 1, 3, 0, 10, 1, 0),
    "s4_s6_wraps_to_s5_pe1": (1, 4, 1, 6, 1, 5, 1, 0),   # OBITS too narrow: sums wrap
    "u8_const_s8_rom7_pe2": (2, 8, 0, 8, 1, 10, 1, 7),   # position-table style constant
}


@pytest.mark.parametrize(("name", "simulator"), [
    *[pytest.param(n, "verilator", id=f"{n}-verilator") for n in ADD_CASES],
    pytest.param("s8_u3_to_s10_pe3", "icarus", id="s8_u3_to_s10_pe3-icarus"),
    pytest.param("u8_const_s8_rom7_pe2", "icarus", id="u8_const_s8_rom7_pe2-icarus")])
def test_eltwise_add(name: str, simulator: str) -> None:
    pe, lb, ls, rb, rs, ob, os_, words = ADD_CASES[name]
    hdl: dict[str, Any] = dict(PE=pe, LBITS=lb, LSIGNED=ls, RBITS=rb, RSIGNED=rs, OBITS=ob, OSIGNED=os_)
    tb: dict[str, Any] = {"seed": 12, "beats": 200}
    if words:
        case_dir = DATA_ROOT / f"eltwise_add_{name}"
        table = golden.random_ints(np.random.default_rng(3), (words, pe), rb, bool(rs))
        case_dir.mkdir(parents=True, exist_ok=True)
        np.save(case_dir / "rhs.npy", table)
        hdl.update(CONST_RHS=1, RHS_WORDS=words,
                   RHS_FILE=golden.write_hex(case_dir / "rhs.hex", golden.pack_beats(table, pe, rb), pe * rb))
        tb["rhs_npy"] = str(case_dir / "rhs.npy")
    rep = _run("eltwise_add", name, hdl, tb, simulator)
    assert rep["interval"] <= rep["ideal"]


LINT = [("dup_streams", {}), ("dup_streams", {"NOUT": 3, "PE": 3, "BITS": 5}),
        ("dup_streams", {"NOUT": 1}), ("eltwise_add", {}),
        ("eltwise_add", {"PE": 2, "LBITS": 4, "LSIGNED": 0, "RBITS": 3, "OBITS": 6}),
        ("eltwise_add", {"CONST_RHS": 1, "RHS_WORDS": 7}),
        ("eltwise_add", {"PE": 4, "LBITS": 2, "RBITS": 2, "OBITS": 2, "CONST_RHS": 1})]


@pytest.mark.parametrize(("top", "params"), LINT, ids=[f"{t}-{i}" for i, (t, _) in enumerate(LINT)])
def test_verilator_lint(top: str, params: dict[str, int]) -> None:
    env = {**os.environ, **verilator_env()}
    gens = [f"-G{k}={v}" for k, v in params.items()]
    r = subprocess.run(["verilator", "--lint-only", "-Wall", "-Wno-UNUSEDSIGNAL", "--top-module", top,
                        *gens, *map(str, _sources(top))], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
