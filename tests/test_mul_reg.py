"""hw/rtl/mul_reg.v: the registered multiplier, generic ("*") and ECP5 (MULT18X18D with its own
input and output registers, define NF_ECP5_DSP) branches, bit-exact against numpy.

Yosys ships MULT18X18D only as a black box (share/ecp5/cells_bb.v, no simulation model), so
the ECP5 branch is simulated with tests/fixtures/mul_reg/MULT18X18D.v, a behavioural model
written from Lattice TN1267 that refuses any configuration it does not model. The ECP5 branch
is also synthesized (Yosys synth_ecp5): the DSP must keep its registers on CLK0 and no
flip-flop may be left in the fabric; and the MVAU runs its cocotb testbench on that branch.

Run: ``.venv/bin/python -m pytest tests/test_mul_reg.py``
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from netfabric.sim.runner import RTL_DIR, rtl_sources, run_cocotb

FIX = Path(__file__).parent / "fixtures" / "mul_reg"
MODEL = FIX / "MULT18X18D.v"
N = 400

# (AW, ASIGNED, BW, BSIGNED, PW, fits one DSP block)
CASES = [
    (8, 1, 8, 1, 18, True),    # the INT8 MLP's operands, mvau's PW = IBITS + WBITS + 2
    (8, 0, 8, 1, 18, True),    # unsigned activations x signed weights
    (8, 0, 8, 0, 16, True),
    (18, 1, 18, 1, 36, True),  # full-width signed
    (17, 0, 18, 1, 35, True),  # widest unsigned operand one block takes
    (5, 1, 3, 0, 12, True),    # PW wider than the product: sign-extended
    (8, 1, 8, 1, 6, True),     # PW narrower: low bits, two's complement wrap
    (18, 0, 8, 1, 26, False),  # 18 bits unsigned does not fit: generic even on ECP5
]


def _ids(c: tuple) -> str:
    aw, asg, bw, bsg, pw, _ = c
    return f"a{aw}{'s' if asg else 'u'}-b{bw}{'s' if bsg else 'u'}-p{pw}"


def _operands(rng: np.random.Generator, bits: int, signed: bool) -> np.ndarray:
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    v = rng.integers(lo, hi, size=N, endpoint=True, dtype=np.int64)
    v[:4] = [lo, hi, lo, hi]  # the corners: min*min, max*max, min*max
    v[4:6] = [0, -1 if signed else 1]
    return v


def _write_hex(path: Path, values: np.ndarray, bits: int) -> None:
    mask = (1 << bits) - 1
    path.write_text("".join(f"{int(v) & mask:x}\n" for v in values))


def _simulate(work: Path, case: tuple, ecp5: bool, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Icarus run of tb_mul_reg; the PW-bit products as unsigned integers, in input order."""
    if shutil.which("iverilog") is None or shutil.which("vvp") is None:
        pytest.skip("Icarus Verilog not installed (apt-get install -y iverilog)")
    aw, asg, bw, bsg, pw, fits = case
    work.mkdir(parents=True)
    _write_hex(work / "a.hex", a, aw)
    _write_hex(work / "b.hex", b, bw)
    params = dict(AW=aw, ASIGNED=asg, BW=bw, BSIGNED=bsg, PW=pw, N=N,
                  EXPECT_DSP=int(ecp5 and fits))
    srcs = [FIX / "tb_mul_reg.v", RTL_DIR / "mul_reg.v", *([MODEL] if ecp5 else [])]
    comp = subprocess.run(
        ["iverilog", "-g2012", "-s", "tb_mul_reg", "-o", "tb.vvp",
         *(["-DNF_ECP5_DSP"] if ecp5 else []),
         *[f"-Ptb_mul_reg.{k}={v}" for k, v in params.items()], *map(str, srcs)],
        cwd=work, capture_output=True, text=True, timeout=60)
    assert comp.returncode == 0, comp.stdout + comp.stderr
    run = subprocess.run(["vvp", "-n", "tb.vvp"], cwd=work, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0 and "FATAL" not in run.stdout, run.stdout + run.stderr
    words = (work / "p.hex").read_text().split()
    assert len(words) == N
    return np.array([int(w, 16) for w in words], dtype=object)


@pytest.mark.sim
@pytest.mark.parametrize("case", CASES, ids=[_ids(c) for c in CASES])
def test_mul_reg_bit_exact(case: tuple, tmp_path: Path) -> None:
    """Both branches give numpy's exact product modulo 2^PW, two cycles after the operands."""
    aw, asg, bw, bsg, pw, _ = case
    rng = np.random.default_rng(aw * 100 + bw + 7 * pw)
    a, b = _operands(rng, aw, bool(asg)), _operands(rng, bw, bool(bsg))
    want = np.array([(int(x) * int(y)) & ((1 << pw) - 1) for x, y in zip(a, b, strict=True)],
                    dtype=object)
    generic = _simulate(tmp_path / "generic", case, False, a, b)
    ecp5 = _simulate(tmp_path / "ecp5", case, True, a, b)
    assert list(generic) == list(want)
    assert list(ecp5) == list(want)


@pytest.mark.sim
@pytest.mark.parametrize("name", ["w8i8_acc_simd3_dsp", "w8i8_acc_wraps_12b"])
def test_mvau_on_ecp5_dsp_branch(name: str) -> None:
    """The MVAU's cocotb testbench (golden model: numpy matmul) passes with its multipliers on
    the ECP5 branch (Icarus, MULT18X18D model), with the generic branch's cycle counts."""
    if shutil.which("iverilog") is None:
        pytest.skip("Icarus Verilog not installed (apt-get install -y iverilog)")
    import test_rtl_modules as trm

    hdl, tb = trm._mvau_setup(name)
    case_dir = trm.DATA_ROOT / f"mvau_{name}_ecp5dsp"
    case_dir.mkdir(parents=True, exist_ok=True)
    report = case_dir / "report.json"
    report.unlink(missing_ok=True)
    tb_params = {**{k: v for k, v in hdl.items() if not isinstance(v, Path)}, **tb,
                 "report": str(report)}
    run_cocotb("mvau", [*rtl_sources(*trm.RTL_MODULES["mvau"]), MODEL], hdl,
               "netfabric.sim.tb.tb_mvau", simulator="icarus",
               extra_env={"TB_PARAMS": json.dumps(tb_params)}, name=f"mvau_{name}_ecp5dsp",
               build_args=["-DNF_ECP5_DSP"])
    rep = json.loads(report.read_text())
    assert rep["interval"] <= 1.05 * rep["ideal"], rep


@pytest.mark.slow  # Yosys (YoWASP): seconds warm, minutes while its WebAssembly first compiles
def test_ecp5_branch_maps_registers_into_the_dsp(tmp_path: Path) -> None:
    """synth_ecp5 with NF_ECP5_DSP: one MULT18X18D with input A/B and output registers on CLK0,
    and no fabric flip-flop left (the pipeline registers are the DSP's own)."""
    from netfabric.hw.flow.errors import ToolNotFoundError
    from netfabric.hw.flow.tools import find_tool, run_tool

    try:
        find_tool("yosys")
    except ToolNotFoundError as exc:
        pytest.skip(str(exc))
    from netfabric.hw.flow.synth import FAMILY_DEFINES

    shutil.copy(RTL_DIR / "mul_reg.v", tmp_path / "mul_reg.v")
    (tmp_path / "s.ys").write_text("\n".join([
        *[f"verilog_defines -D{d}" for d in FAMILY_DEFINES["ecp5"]],  # as the flow sets it
        "read_verilog -defer mul_reg.v",
        "chparam -set AW 8 -set ASIGNED 0 -set BW 8 -set BSIGNED 1 -set PW 18 mul_reg",
        "synth_ecp5 -top mul_reg", "tee -q -o stat.json stat -json",
        "write_json net.json", ""]))
    run_tool("yosys", ["-q", "-s", "s.ys"], cwd=tmp_path, log_name="y.log", timeout_s=600)
    cells = json.loads((tmp_path / "stat.json").read_text())["design"]["num_cells_by_type"]
    assert cells.get("MULT18X18D") == 1, cells
    assert not any("FF" in c for c in cells), cells
    net = json.loads((tmp_path / "net.json").read_text())
    (dsp,) = [c for m in net["modules"].values() for c in m["cells"].values()
              if c["type"] == "MULT18X18D"]
    for reg in ("REG_INPUTA_CLK", "REG_INPUTB_CLK", "REG_OUTPUT_CLK"):
        assert dsp["parameters"][reg] == "CLK0", dsp["parameters"]
