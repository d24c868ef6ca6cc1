"""RTL library hygiene: illegal parameters stop elaboration/simulation with a clear message,
and every hw/rtl/*.v is wrapped in `default_nettype none ... `default_nettype wire.

The parameter checks (NF_PARAM_ERROR in each module, see hw/rtl/README.md) are
elaboration-time $error on Verilator/Yosys and a time-0 $error + $fatal on Icarus 11. The
Icarus cases compile the whole library (well under a second each); the Verilator cases only
lint (no C++ build).

Run: ``.venv/bin/python -m pytest tests/test_rtl_params.py``
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from netfabric.sim.runner import RTL_DIR, SimulatorNotFound, verilator_env

RTL_FILES = sorted(RTL_DIR.glob("*.v"))

# (toplevel, illegal parameter overrides, expected message)
BAD_PARAMS = [
    ("mvau", {"MW": 10, "SIMD": 4}, "mvau: MW (10) must be a multiple of SIMD (4)"),
    ("mvau", {"MH": 9, "PE": 2}, "mvau: MH (9) must be a multiple of PE (2)"),
    ("mvau", {"WBANK_AW": -1}, "mvau: WBANK_AW (-1) must be >= 0 (0: by word width)"),
    ("banked_rom", {"DEPTH": 4, "BANK_AW": 2}, "banked_rom: DEPTH (4) must exceed one bank of 2^2 words"),
    ("axis_out_credit", {"DEPTH": 1}, "axis_out_credit: DEPTH (1) must be >= 2"),
    ("thresholding", {"CHANNELS": 6, "PE": 4},
     "thresholding: CHANNELS (6) must be a multiple of PE (4)"),
    ("maxpool", {"IFM_H": 9, "K": 2}, "maxpool: IFM_H (9) must be a multiple of K (2)"),
    ("dwc", {"IN_WIDTH": 3, "OUT_WIDTH": 2},
     "dwc: one of IN_WIDTH (3) and OUT_WIDTH (2) must divide the other"),
    # reported from the submodule, with its instance path
    ("mvau", {"USE_ACT": 1, "OBITS": 12}, "thresh_search: OBITS (12) must be 1..10"),
    ("mvau", {"XNOR": 1, "WBITS": 4, "IBITS": 1},
     "mvau: XNOR needs WBITS = IBITS = 1, unsigned (4, 1, 1, 0)"),
    ("swg", {"PARALLEL_WINDOW": 1, "IFM_CH": 4, "SIMD": 2},
     "swg: PARALLEL_WINDOW=1 needs SIMD (2) == IFM_CH (4)"),
]
# Legal sets of the same modules: the checks must stay silent.
GOOD_PARAMS = [
    ("mvau", {"MW": 12, "SIMD": 4, "MH": 6, "PE": 3, "USE_ACT": 1, "OBITS": 2}),
    ("mvau", {"XNOR": 1, "WBITS": 1, "IBITS": 1, "WSIGNED": 0, "ACCBITS": 6, "MW": 16,
              "SIMD": 8}),
    ("thresholding", {"CHANNELS": 6, "PE": 3}),
    ("banked_rom", {"DEPTH": 9, "BANK_AW": 2}),
    ("axis_out_credit", {"DEPTH": 2}),
    ("maxpool", {"IFM_H": 9, "IFM_W": 6, "K": 3}),
    ("dwc", {"IN_WIDTH": 6, "OUT_WIDTH": 2}),
    ("swg", {"PARALLEL_WINDOW": 1, "IFM_CH": 4, "SIMD": 4}),
]


def _ids(cases: list[tuple]) -> list[str]:
    return [f"{c[0]}-" + "-".join(f"{k}{v}" for k, v in c[1].items()) for c in cases]


def _icarus(top: str, params: dict[str, int], tmp_path: Path) -> subprocess.CompletedProcess:
    """Compile the whole library with ``top`` as root and run it; the combined output."""
    if shutil.which("iverilog") is None or shutil.which("vvp") is None:
        pytest.skip("Icarus Verilog not installed (apt-get install -y iverilog)")
    vvp = tmp_path / f"{top}.vvp"
    # -g2012 as cocotb's Icarus runner uses
    comp = subprocess.run(
        ["iverilog", "-g2012", "-s", top, "-o", str(vvp),
         *[f"-P{top}.{k}={v}" for k, v in params.items()], *map(str, RTL_FILES)],
        capture_output=True, text=True, timeout=60)
    assert comp.returncode == 0, comp.stdout + comp.stderr
    # -n: $stop behaves like $finish (no interactive prompt)
    return subprocess.run(["vvp", "-n", str(vvp)], capture_output=True, text=True, timeout=60)


@pytest.mark.sim
@pytest.mark.parametrize(("top", "params", "message"), BAD_PARAMS, ids=_ids(BAD_PARAMS))
def test_icarus_rejects_bad_params(top: str, params: dict[str, int], message: str,
                                   tmp_path: Path) -> None:
    r = _icarus(top, params, tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    assert message in out, out
    assert "FATAL" in out, out


@pytest.mark.sim
@pytest.mark.parametrize(("top", "params"), GOOD_PARAMS, ids=_ids(GOOD_PARAMS))
def test_icarus_accepts_good_params(top: str, params: dict[str, int], tmp_path: Path) -> None:
    r = _icarus(top, params, tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "ERROR" not in out and "FATAL" not in out, out


def _verilator_lint(top: str, params: dict[str, int]) -> subprocess.CompletedProcess:
    try:
        env = {**os.environ, **verilator_env()}
    except SimulatorNotFound as e:
        pytest.skip(str(e))
    return subprocess.run(
        ["verilator", "--lint-only", "-Wall", "-Wno-UNUSEDSIGNAL", "--top-module", top,
         *[f"-G{k}={v}" for k, v in params.items()], *map(str, RTL_FILES)],
        env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.sim
@pytest.mark.parametrize(("top", "params", "message"), BAD_PARAMS[:3], ids=_ids(BAD_PARAMS[:3]))
def test_verilator_rejects_bad_params(top: str, params: dict[str, int], message: str) -> None:
    """Elaboration-time $error: the lint run itself fails with the message."""
    r = _verilator_lint(top, params)
    assert r.returncode != 0, r.stderr
    assert message in r.stderr, r.stderr


@pytest.mark.parametrize("path", RTL_FILES, ids=[p.name for p in RTL_FILES])
def test_rtl_file_hygiene(path: Path) -> None:
    """One module per file, named as the file; `default_nettype none for the file and
    restored to wire at its end; the check macro does not leak into other files."""
    text = path.read_text()
    modules = re.findall(r"^module\s+(\w+)", text, flags=re.M)
    assert modules == [path.stem]
    directives = re.findall(r"^\s*`default_nettype\s+(\w+)", text, flags=re.M)
    assert directives == ["none", "wire"]
    assert text.index("`default_nettype none") < text.index("\nmodule ")
    assert text.rstrip().endswith("`default_nettype wire")
    if "`define NF_PARAM_ERROR" in text:
        assert text.rindex("`undef NF_PARAM_ERROR") > text.rindex("endmodule")
