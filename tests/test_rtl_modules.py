"""RTL module library (hw/rtl) against the numpy golden models, through cocotb.

Every case builds one parameter set (cached under netfabric.sim.runner.BUILD_ROOT, in the
user cache folder) and runs four cocotb tests, all compared bit-exactly with the golden model:
random source idles + sink backpressure, a sink blocked for 400 cycles (internal buffers fill,
the input must be held back), an idle source with an eager sink (read-before-write hazards),
and a no-stall run that measures the steady-state cycles per frame and asserts <= 1.05 x the
ideal.
Verilator is the default simulator; one case per module also runs on Icarus, and every
module is linted with verilator -Wall.

Run: ``.venv/bin/python -m pytest tests/test_rtl_modules.py -m sim -x``
Measured numbers are appended to BUILD_ROOT/data/perf_log.jsonl.
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

from hw.rtl_ops import Port, fifo_stage
from netfabric.sim import golden
from netfabric.sim.runner import BUILD_ROOT, RTL_DIR, rtl_sources, run_cocotb, verilator_env

DATA_ROOT = BUILD_ROOT / "data"
PERF_LOG = DATA_ROOT / "perf_log.jsonl"

RTL_MODULES = {
    # toplevel: sources (dependencies included)
    "mvau": ("mvau.v", "mul_reg.v", "requant_act.v", "requant.v", "thresh_search.v",
             "banked_rom.v", "axis_out_credit.v", "fifo.v"),
    "thresholding": ("thresholding.v", "mul_reg.v", "requant_act.v", "requant.v", "thresh_search.v",
                     "banked_rom.v", "axis_out_credit.v", "fifo.v"),
    "swg": ("swg.v",),
    "maxpool": ("maxpool.v", "axis_out_credit.v", "fifo.v"),
    "fifo": ("fifo.v",),
    "dwc": ("dwc.v",),
    "label_select": ("label_select.v", "axis_out_credit.v", "fifo.v"),
    "axis_out_credit": ("axis_out_credit.v", "fifo.v"),
    "thresh_search": ("thresh_search.v", "banked_rom.v"),
    "banked_rom": ("banked_rom.v",),
}


def _with_icarus(cases: dict[str, Any], icarus_case: str) -> list[Any]:
    """(name, simulator) parameters: every case on Verilator, one representative on Icarus
    (Icarus is slower and mainly guards against Verilator-only constructs)."""
    assert icarus_case in cases
    return [pytest.param(n, "verilator", id=f"{n}-verilator") for n in cases] + [
        pytest.param(icarus_case, "icarus", id=f"{icarus_case}-icarus")]


def _icarus_or_skip(simulator: str) -> None:
    if simulator == "icarus" and shutil.which("iverilog") is None:
        pytest.skip("Icarus Verilog not installed (apt-get install -y iverilog)")


def _run(
    toplevel: str, case_id: str, hdl: dict[str, Any], tb: dict[str, Any], simulator: str
) -> dict[str, Any]:
    """Build+run one case; return the testbench's report merged with build/run times."""
    _icarus_or_skip(simulator)
    case_dir = DATA_ROOT / case_id
    case_dir.mkdir(parents=True, exist_ok=True)
    report = case_dir / f"report_{simulator}.json"
    report.unlink(missing_ok=True)
    tb_params = {
        **{k: v for k, v in hdl.items() if not isinstance(v, Path)},
        **tb,
        "report": str(report),
    }
    res = run_cocotb(
        toplevel,
        rtl_sources(*RTL_MODULES[toplevel]),
        hdl,
        f"netfabric.sim.tb.tb_{toplevel}",
        simulator=simulator,
        extra_env={"TB_PARAMS": json.dumps(tb_params)},
        name=case_id,
    )
    out: dict[str, Any] = json.loads(report.read_text()) if report.is_file() else {}
    out.update(
        case=case_id,
        simulator=simulator,
        built=res.built,
        build_s=round(res.build_seconds, 1),
        run_s=round(res.run_seconds, 1),
    )
    with PERF_LOG.open("a") as f:
        f.write(json.dumps(out) + "\n")
    print(json.dumps(out))
    return out


# ----------------------------------------------------------------------------- MVAU

def _mv(mw: int, mh: int, pe: int, simd: int, wbits: int, wsigned: int, ibits: int,
        isigned: int, nvec: int, obits: int = 0, bias: int = 0, nt: int | None = None,
        mul_style: int = 0, accbits: int | None = None, xnor: int = 0,
        wbank_aw: int | None = None) -> dict[str, Any]:
    """One MVAU case; obits = 0 means no activation (accumulator output); nt < 2**obits-1
    gives fewer thresholds, exercising the padding; accbits overrides the safe width (a
    narrower one makes the sums wrap, as the golden model does too); xnor = 1: binary
    XNOR-popcount lanes (1-bit unsigned operands standing for -1/+1); wbank_aw splits the
    weight ROM into banks of 2^wbank_aw words."""
    return dict(mw=mw, mh=mh, pe=pe, simd=simd, wbits=wbits, wsigned=wsigned, ibits=ibits,
                isigned=isigned, nvec=nvec, obits=obits, bias=bias, nt=nt,
                mul_style=mul_style, accbits=accbits, xnor=xnor, wbank_aw=wbank_aw)


MVAU_CASES = {
    "w4i4_acc": _mv(16, 8, 2, 4, 4, 1, 4, 0, nvec=4),
    "w8i8_acc_simd3_dsp": _mv(12, 6, 3, 3, 8, 1, 8, 1, nvec=3),
    "w4i4_act4": _mv(16, 8, 4, 8, 4, 1, 4, 0, nvec=4, obits=4),
    "w2i2_act2_bias_folded": _mv(6, 4, 1, 1, 2, 1, 2, 1, nvec=2, obits=2, bias=-2),
    "w1i8_act3_pad_parallel": _mv(8, 4, 4, 8, 1, 0, 8, 0, nvec=8, obits=3, nt=5),
    "w8i3s_lutmul_acc": _mv(10, 4, 2, 5, 8, 1, 3, 1, nvec=3, mul_style=1),
    "w8i8_acc_wraps_12b": _mv(16, 4, 2, 8, 8, 1, 8, 0, nvec=2, accbits=12),
    # 8-bit activation: long threshold pipeline, block-RAM output FIFO (64 entries)
    "w8i8_act8_dsp_blockfifo": _mv(32, 8, 2, 8, 8, 1, 8, 0, nvec=4, obits=8),
}

# Weight ROMs split into banks (mvau.v WBANK_AW; 16384-word banks in real designs): 4 full
# banks, and 3 banks of which the last is partly used. Each has a one-bank twin below.
BANKED_CASES = {
    "w4i4_acc_4banks": _mv(16, 8, 2, 4, 4, 1, 4, 0, nvec=4, wbank_aw=2),
    "w8i8_act4_3banks_dsp": _mv(12, 8, 2, 4, 8, 1, 8, 1, nvec=3, obits=4, wbank_aw=2),
}
ONE_BANK_TWINS = {f"{n}_onebank": {**c, "wbank_aw": None} for n, c in BANKED_CASES.items()}

# Binary (XNOR-popcount) MVAUs, FINN's binaryXnorMode: the sign activation of BNN layers (one
# threshold, 1-bit out), the popcount itself, a 2-bit activation with padded thresholds.
XNOR_CASES = {
    "xnor_act1_bnn": _mv(64, 8, 2, 16, 1, 0, 1, 0, nvec=4, obits=1, xnor=1),
    "xnor_acc_folded": _mv(12, 4, 1, 3, 1, 0, 1, 0, nvec=3, xnor=1),
    "xnor_act2_pad_simd1": _mv(10, 6, 3, 1, 1, 0, 1, 0, nvec=2, obits=2, nt=2, xnor=1),
}
MVAU_CASES.update(XNOR_CASES)


def _mvau_setup(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    c = {**MVAU_CASES, **BANKED_CASES, **ONE_BANK_TWINS}[name]
    mw, mh, pe, simd = c["mw"], c["mh"], c["pe"], c["simd"]
    wbits, wsigned, ibits, isigned = c["wbits"], c["wsigned"], c["ibits"], c["isigned"]
    obits, bias = c["obits"], c["bias"]
    use_act = int(obits > 0)
    # stable across runs; a banked case and its one-bank twin get the same data
    rng = np.random.default_rng(sum(map(ord, name.removesuffix("_onebank"))))
    case_dir = DATA_ROOT / f"mvau_{name}"
    w = golden.random_ints(rng, (mh, mw), wbits, bool(wsigned))
    # Accumulator width from the worst case, plus one spare bit so that the largest value
    # (used to pad missing thresholds) is never reached.
    xlo, xhi = golden.int_range(ibits, bool(isigned))
    wlo, whi = golden.int_range(wbits, bool(wsigned))
    amax = mw * max(abs(a * b) for a in (xlo, xhi) for b in (wlo, whi))
    accbits = c["accbits"] or int(amax).bit_length() + 2
    xnor = bool(c["xnor"])
    hdl: dict[str, Any] = dict(MW=mw, MH=mh, PE=pe, SIMD=simd, WBITS=wbits, WSIGNED=wsigned,
                               IBITS=ibits, ISIGNED=isigned, ACCBITS=accbits, NVEC=c["nvec"],
                               USE_ACT=use_act, OBITS=obits if use_act else 4,
                               OSIGNED=int(bias < 0), ACT_BIAS=bias, MUL_STYLE=c["mul_style"])
    if xnor:
        hdl["XNOR"] = 1
    if c["wbank_aw"] is not None:  # one file per bank, WEIGHT_FILE their prefix
        hdl["WBANK_AW"] = c["wbank_aw"]
        golden.write_mvau_weight_banks(case_dir / "weights", w, pe, simd, wbits,
                                       1 << c["wbank_aw"])
        hdl["WEIGHT_FILE"] = case_dir / "weights"
    else:
        hdl["WEIGHT_FILE"] = golden.write_mvau_weights(case_dir / "weights.hex", w, pe, simd,
                                                       wbits)
    np.save(case_dir / "weights.npy", w)
    tb: dict[str, Any] = {"weights_npy": str(case_dir / "weights.npy"), "seed": 5, "frames": 4}
    if use_act:
        # Thresholds spread over the accumulator values random inputs actually produce,
        # plus a few beyond them (never / always reached).
        xs = golden.random_ints(rng, (64, mw), ibits, bool(isigned))
        acc = golden.xnor_popcount(xs, w) if xnor else golden.matmul(xs, w)
        lo, hi = int(acc.min()) - 2, int(acc.max()) + 2
        n = c["nt"] if c["nt"] is not None else (1 << obits) - 1
        t = golden.random_thresholds(rng, mh, n, lo, hi)
        prefix = case_dir / "thresh"
        golden.write_thresholds(prefix, t, pe, obits, accbits)
        np.save(case_dir / "thresholds.npy", t)
        hdl["THRESH_FILE"] = prefix
        tb["thresholds_npy"] = str(case_dir / "thresholds.npy")
    return hdl, tb


@pytest.mark.sim
@pytest.mark.parametrize(("name", "simulator"), _with_icarus(MVAU_CASES, "w4i4_act4")
                         + [pytest.param("xnor_act1_bnn", "icarus", id="xnor_act1_bnn-icarus")])
def test_mvau(name: str, simulator: str) -> None:
    hdl, tb = _mvau_setup(name)
    rep = _run("mvau", f"mvau_{name}", hdl, tb, simulator)
    assert rep["interval"] <= 1.05 * rep["ideal"]
    if name in XNOR_CASES:  # the XNOR lanes keep the pipeline: exactly one step per cycle
        assert rep["interval"] == rep["ideal"], rep


@pytest.mark.sim
@pytest.mark.parametrize("name", list(BANKED_CASES))
def test_mvau_weight_banks_keep_the_timing(name: str) -> None:
    """Banks change where the weight word is registered, not when it arrives: the banked MVAU
    is bit-exact (the testbench checks every output against numpy) with the one-bank MVAU's
    total cycles and interval on the same data and stalls."""
    banked = _run("mvau", f"mvau_{name}", *_mvau_setup(name), "verilator")
    one = _run("mvau", f"mvau_{name}_onebank", *_mvau_setup(f"{name}_onebank"), "verilator")
    assert (banked["latency_total"], banked["interval"]) == (one["latency_total"], one["interval"])


def _synth_ecp5_cells(work: Path, params: dict[str, Any]) -> dict[str, int]:
    """Yosys synth_ecp5 of one mvau parameter set (YoWASP, run in ``work`` with relative
    paths only, see hw/flow/tools.py); the mapped cell counts."""
    from netfabric.hw.flow.errors import ToolNotFoundError
    from netfabric.hw.flow.tools import find_tool, run_tool

    try:
        find_tool("yosys")
    except ToolNotFoundError as exc:
        pytest.skip(str(exc))
    srcs = RTL_MODULES["mvau"]
    for src in srcs:
        shutil.copy(RTL_DIR / src, work / src)
    sets = " ".join(f'-set {k} "{v}"' if isinstance(v, str) else f"-set {k} {v}"
                    for k, v in params.items())
    (work / "synth.ys").write_text("\n".join([
        f"read_verilog -defer {' '.join(srcs)}", f"chparam {sets} mvau",
        "synth_ecp5 -top mvau", "tee -q -o stat.json stat -json", ""]))
    run_tool("yosys", ["-q", "-s", "synth.ys"], cwd=work, log_name="synth.log", timeout_s=600)
    stat = json.loads((work / "stat.json").read_text())
    return stat["design"]["num_cells_by_type"]


@pytest.mark.slow  # Yosys (YoWASP): ~7 s warm, minutes while its WebAssembly first compiles
def test_mvau_xnor_synthesizes_without_multipliers(tmp_path: Path) -> None:
    """Binary layers use no DSP blocks: the XNOR mode (a BNN layer, 64 x 8, 32 lanes) maps to
    LUTs and carry chains only, while the multiplying mode with 8-bit operands on "*" (the
    control: the check does see DSP blocks) gets MULT18X18D."""
    rng = np.random.default_rng(3)
    xnor_dir, ctrl_dir = tmp_path / "xnor", tmp_path / "mul8"
    xnor_dir.mkdir()
    ctrl_dir.mkdir()
    golden.write_mvau_weights(xnor_dir / "w.hex", rng.integers(0, 2, (8, 64)), 2, 16, 1)
    golden.write_thresholds(xnor_dir / "t", np.sort(rng.integers(0, 65, (8, 1)), axis=1), 2, 1, 9)
    cells = _synth_ecp5_cells(xnor_dir, dict(
        MW=64, MH=8, PE=2, SIMD=16, WBITS=1, WSIGNED=0, IBITS=1, ISIGNED=0, ACCBITS=9,
        USE_ACT=1, OBITS=1, XNOR=1, WEIGHT_FILE="w.hex", THRESH_FILE="t"))
    assert cells.get("MULT18X18D", 0) == 0 and not any("mul" in c.lower() for c in cells), cells
    assert cells.get("LUT4", 0) > 0, cells
    golden.write_mvau_weights(ctrl_dir / "w.hex", golden.random_ints(rng, (2, 4), 8, True), 1, 2, 8)
    ctrl = _synth_ecp5_cells(ctrl_dir, dict(
        MW=4, MH=2, PE=1, SIMD=2, WBITS=8, WSIGNED=1, IBITS=8, ISIGNED=1, ACCBITS=19,
        USE_ACT=0, MUL_STYLE=2, WEIGHT_FILE="w.hex"))
    assert ctrl.get("MULT18X18D", 0) == 2, ctrl


# ----------------------------------------------------------------------------- lint


LINT_PARAMS: list[tuple[str, dict[str, int]]] = [
    *[(top, {}) for top in RTL_MODULES],
    ("mvau", {"USE_ACT": 1, "OBITS": 2, "SIMD": 3, "MW": 9, "MH": 6, "PE": 3}),
    ("mvau", {"WBITS": 8, "IBITS": 8, "SIMD": 1, "PE": 1, "MW": 4, "MH": 4}),
    ("mvau", {"WBANK_AW": 2, "MW": 12, "SIMD": 4, "MH": 8, "PE": 2}),  # 3 weight banks
    ("banked_rom", {"DEPTH": 9, "BANK_AW": 2}),  # the last bank one word
    ("mvau", {"XNOR": 1, "WBITS": 1, "IBITS": 1, "WSIGNED": 0, "ACCBITS": 6, "USE_ACT": 1,
              "OBITS": 1, "SIMD": 4, "MW": 16, "MH": 4}),
    ("swg", {"K": 1, "S": 2, "SIMD": 4}),
    ("swg", {"PARALLEL_WINDOW": 1, "K": 3, "SIMD": 4, "IFM_CH": 4}),
    ("swg", {"PARALLEL_WINDOW": 1, "K": 1, "SIMD": 4, "IFM_CH": 4}),
    ("dwc", {"IN_WIDTH": 6, "OUT_WIDTH": 2}),
    ("label_select", {"NLABELS": 7, "PE": 1}),
    ("axis_out_credit", {"WIDTH": 16, "DEPTH": 64}),
    ("thresh_search", {"NF": 3, "PE": 2, "OBITS": 1}),
]


@pytest.mark.sim
@pytest.mark.parametrize(("toplevel", "params"), LINT_PARAMS,
                         ids=[f"{t}-{i}" for i, (t, _) in enumerate(LINT_PARAMS)])
def test_verilator_lint(toplevel: str, params: dict[str, int]) -> None:
    """Verilator -Wall lint (unused signals of corner-case parameterizations allowed)."""
    env = {**os.environ, **verilator_env()}
    srcs = [str(RTL_DIR / s) for s in RTL_MODULES[toplevel]]
    gens = [f"-G{k}={v}" for k, v in params.items()]
    r = subprocess.run(["verilator", "--lint-only", "-Wall", "-Wno-UNUSEDSIGNAL",
                        "--top-module", toplevel, *gens, *srcs], env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr


# ----------------------------------------------------------------------------- SWG

SWG_CASES = {
    # name: (IFM_H, IFM_W, IFM_CH, SIMD, K, S, BITS)
    "k3s1_c4_simd2": (8, 8, 4, 2, 3, 1, 4),
    "k3s2_odd": (9, 7, 3, 3, 3, 2, 8),
    "k2s2_c2": (6, 6, 2, 1, 2, 2, 2),
    "k1s1_pointwise": (4, 5, 8, 4, 1, 1, 8),
    "k5s1_wide": (7, 9, 2, 2, 5, 1, 4),
}
# PARALLEL_WINDOW=1 (a whole window a beat, SIMD = IFM_CH): line buffers of IFM_W - K pixels
# (K = 1 and more shapes: the op's conformance samples, tests/test_op_conformance.py)
SWG_PAR_CASES = {
    "par_k3s2_odd": (9, 7, 3, 3, 3, 2, 8),    # RAM line buffers (4 deep), stride 2, skipped
                                              # last column and row
    "par_k2s1_lb1": (5, 3, 1, 1, 2, 1, 8),    # one-pixel line buffer (a register)
    "par_k3_kw": (5, 3, 2, 2, 3, 1, 4),       # K = IFM_W: no line buffer
}


@pytest.mark.sim
@pytest.mark.parametrize(("name", "simulator"), _with_icarus(SWG_CASES, "k3s2_odd"))
def test_swg(name: str, simulator: str) -> None:
    h, w, c, simd, k, s, bits = SWG_CASES[name]
    hdl = dict(IFM_H=h, IFM_W=w, IFM_CH=c, SIMD=simd, K=k, S=s, BITS=bits)
    rep = _run("swg", f"swg_{name}", hdl, {"seed": 3, "frames": 4}, simulator)
    assert rep["interval"] <= 1.05 * rep["ideal"]


@pytest.mark.sim
@pytest.mark.parametrize(("name", "simulator"), _with_icarus(SWG_PAR_CASES, "par_k3s2_odd"))
def test_swg_parallel_window(name: str, simulator: str) -> None:
    """A window a beat: IFM_H*IFM_W cycles per frame (FINN's estimate: that + 2)."""
    h, w, c, simd, k, s, bits = SWG_PAR_CASES[name]
    hdl = dict(IFM_H=h, IFM_W=w, IFM_CH=c, SIMD=simd, K=k, S=s, BITS=bits, PARALLEL_WINDOW=1)
    rep = _run("swg", f"swg_{name}", hdl, {"seed": 3, "frames": 4}, simulator)
    assert rep["interval"] <= h * w + 2


# ----------------------------------------------------------------------------- max-pool

MAXPOOL_CASES = {
    # name: (CHANNELS, PE, BITS, SIGNED, IFM_H, IFM_W, K)
    "k2_c4_pe2_u4": (4, 2, 4, 0, 8, 8, 2),
    "k3_c3_pe1_s8": (3, 1, 8, 1, 6, 9, 3),
    "k2_c8_pe8_cf1": (8, 8, 2, 0, 4, 6, 2),
}


@pytest.mark.sim
@pytest.mark.parametrize(("name", "simulator"), _with_icarus(MAXPOOL_CASES, "k3_c3_pe1_s8"))
def test_maxpool(name: str, simulator: str) -> None:
    c, pe, bits, signed, h, w, k = MAXPOOL_CASES[name]
    hdl = dict(CHANNELS=c, PE=pe, BITS=bits, SIGNED=signed, IFM_H=h, IFM_W=w, K=k)
    rep = _run("maxpool", f"maxpool_{name}", hdl, {"seed": 4, "frames": 3}, simulator)
    assert rep["interval"] <= 1.05 * rep["ideal"]


# ----------------------------------------------------------------------------- Thresholding

THRESH_CASES = {
    # name: (CHANNELS, PE, IBITS, ISIGNED, OBITS, ACT_BIAS, NVEC, NT)
    "u8_to_u4_pe2": (8, 2, 8, 0, 4, 0, 3, None),
    "s6_to_s3_bias_pe3": (6, 3, 6, 1, 3, -4, 4, None),
    "u4_to_u2_pad_pe1": (4, 1, 4, 0, 2, 0, 4, 2),
    # NF=40: stage 7 has 5120 words (3 block-RAM banks, the last partial), stage 6 2 banks
    "u8_to_u8_banked_pe2": (80, 2, 8, 0, 8, 0, 2, None),
}


@pytest.mark.sim
@pytest.mark.parametrize(("name", "simulator"), _with_icarus(THRESH_CASES, "s6_to_s3_bias_pe3"))
def test_thresholding(name: str, simulator: str) -> None:
    c, pe, ibits, isigned, obits, bias, nvec, nt = THRESH_CASES[name]
    rng = np.random.default_rng(sum(map(ord, name)))
    tbits = ibits + (1 if isigned else 2)   # top value unreachable by inputs (padding)
    lo, hi = golden.int_range(ibits, bool(isigned))
    # Some thresholds beyond the input range: never / always reached.
    t = golden.random_thresholds(rng, c, nt or (1 << obits) - 1, lo - 1, hi + 1)
    case_dir = DATA_ROOT / f"thresholding_{name}"
    golden.write_thresholds(case_dir / "thresh", t, pe, obits, tbits)
    np.save(case_dir / "thresholds.npy", t)
    hdl = dict(CHANNELS=c, PE=pe, IBITS=ibits, ISIGNED=isigned, TBITS=tbits, OBITS=obits,
               OSIGNED=int(bias < 0), ACT_BIAS=bias, NVEC=nvec, THRESH_FILE=case_dir / "thresh")
    tb = {"thresholds_npy": str(case_dir / "thresholds.npy"), "seed": 6, "frames": 4}
    rep = _run("thresholding", f"thresholding_{name}", hdl, tb, simulator)
    assert rep["interval"] <= 1.05 * rep["ideal"]


# ----------------------------------------------------------------------------- FIFO

FIFO_CASES = {
    # name: (WIDTH, DEPTH, RAM_STYLE)
    "w12_d4_regs": (12, 4, 0),
    "w8_d1": (8, 1, 1),
    "w20_d128_block": (20, 128, 0),
    "w5_d6_block": (5, 6, 2),
}


@pytest.mark.sim
@pytest.mark.parametrize(("name", "simulator"), _with_icarus(FIFO_CASES, "w20_d128_block"))
def test_fifo(name: str, simulator: str) -> None:
    width, depth, style = FIFO_CASES[name]
    hdl = dict(WIDTH=width, DEPTH=depth, RAM_STYLE=style)
    rep = _run("fifo", f"fifo_{name}", hdl, {"seed": 2, "beats": 300}, simulator)
    assert rep["interval"] <= rep["ideal"]
    # the stitcher sizes FIFOs and pipelines by these: its latency model and fifo.v's
    # documented capacity (three beats after a block RAM array)
    block = style == 2 or (style == 0 and depth >= 64)
    stage = fifo_stage("f", Port(1, width, False), depth)
    if style == 0:
        assert rep["latency"] == stage.latency
    assert rep["latency"] == (4 if block else 1)
    assert rep["capacity"] == depth + (3 if block else 0)


# ----------------------------------------------------------------------------- DWC

DWC_CASES = {
    # name: (IN_WIDTH, OUT_WIDTH, BITS)
    "up_2to6_b4": (2, 6, 4),
    "up_1to2_b8": (1, 2, 8),
    "down_8to2_b3": (8, 2, 3),
    "down_2to1_b8": (2, 1, 8),
    "same_3to3_b5": (3, 3, 5),
}


@pytest.mark.sim
@pytest.mark.parametrize(("name", "simulator"), _with_icarus(DWC_CASES, "down_8to2_b3"))
def test_dwc(name: str, simulator: str) -> None:
    iw, ow, bits = DWC_CASES[name]
    hdl = dict(IN_WIDTH=iw, OUT_WIDTH=ow, BITS=bits)
    rep = _run("dwc", f"dwc_{name}", hdl, {"seed": 8, "beats": 96}, simulator)
    assert rep["interval"] <= rep["ideal"] + 4


# ----------------------------------------------------------------------------- label select

LABEL_CASES = {
    # name: (NLABELS, PE, BITS, SIGNED, NVEC)
    "n10_pe2_s8": (10, 2, 8, 1, 3),
    "n12_pe4_u4": (12, 4, 4, 0, 2),
    "n5_pe5_s16": (5, 5, 16, 1, 4),
    "n7_pe1_u8": (7, 1, 8, 0, 2),
    # few distinct values, many ties: NF = 2 (the two-step lookahead crosses vectors), PE = 1
    "n4_pe2_s2": (4, 2, 2, 1, 5),
    "n6_pe1_u1": (6, 1, 1, 0, 3),
}


@pytest.mark.sim
@pytest.mark.parametrize(("name", "simulator"), _with_icarus(LABEL_CASES, "n10_pe2_s8"))
def test_label_select(name: str, simulator: str) -> None:
    n, pe, bits, signed, nvec = LABEL_CASES[name]
    hdl = dict(NLABELS=n, PE=pe, BITS=bits, SIGNED=signed, NVEC=nvec)
    rep = _run("label_select", f"label_select_{name}", hdl, {"seed": 9, "frames": 4},
               simulator)
    assert rep["interval"] <= 1.05 * rep["ideal"]
    assert rep["latency"] == 5 + (pe - 1).bit_length()  # LabelSelect's latency, hw/rtl_ops.py


# ----------------------------------------------------------------------------- output credits

# FIFO latency from in_valid to m_axis (axis_out_credit.v): distributed 1, block RAM 4.
CREDIT_FIFO_LATENCY = {1: 1, 2: 4}
CREDIT_CASES = {
    # name: (DEPTH, RAM_STYLE, LAT = reserve -> in_valid)
    "d2_dist_lat0": (2, 1, 0),
    "d8_dist_lat6": (8, 1, 6),
    "d16_dist_lat3": (16, 1, 3),
    "d16_block_lat11": (16, 2, 11),
}


@pytest.mark.sim
@pytest.mark.parametrize(("name", "simulator"), _with_icarus(CREDIT_CASES, "d8_dist_lat6"))
def test_axis_out_credit(name: str, simulator: str) -> None:
    """No result lost, reordered or over DEPTH in flight under backpressure; behind an
    always-ready sink no start is held back once DEPTH >= LAT + FIFO latency + 1 (the round
    trip the units size their FIFOs for), and one cycle less of DEPTH holds starts back."""
    depth, style, lat = CREDIT_CASES[name]
    tight = lat + CREDIT_FIFO_LATENCY[style] + 1
    assert depth >= tight
    hdl = dict(WIDTH=7, DEPTH=depth, RAM_STYLE=style)
    rep = _run("axis_out_credit", f"credit_{name}", hdl, {**hdl, "LAT": lat, "seed": 3},
               simulator)
    assert rep["held_starts"] == 0 and rep["max_in_flight"] <= depth
    if depth == tight:  # the bound is tight: with a longer pipeline the credits run out
        rep = _run("axis_out_credit", f"credit_{name}", hdl, {**hdl, "LAT": lat + 1, "seed": 3},
                   simulator)
        assert rep["held_starts"] > 0
