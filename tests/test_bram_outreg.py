"""hw/flow/bram_outreg.py on netlists Yosys synthesizes here (synth_ecp5): a plain register after
a block RAM moves into the block's output register; anything that would change the circuit
(an enable, a reset, a second load, a read enable on the block, a 36-bit ROM) stays as it is."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from hw.flow import bram_outreg, tools

ROM = """
module rom_top #(parameter ENABLE = 0, parameter FANOUT = 0, parameter RESET = 0,
                 parameter W = 16, parameter DEPTH = 1024, parameter RAM = 0,
                 parameter READ_EN = 0) (
    input wire clk, input wire rst, input wire en, input wire [$clog2(DEPTH)-1:0] addr,
    input wire we, input wire [$clog2(DEPTH)-1:0] waddr, input wire [W-1:0] wdata,
    output reg [W-1:0] q, output reg [W-1:0] q2
);
    (* no_rw_check *) reg [W-1:0] rom [0:DEPTH-1];  // no bypass mux for the RAM case
    integer i;
    initial for (i = 0; i < DEPTH; i = i + 1) rom[i] = (i * 40503) ^ (i << 22) ^ (i >> 3);
    always @(posedge clk) if (RAM != 0 && we) rom[waddr] <= wdata;  // RAM: a write port
    reg [W-1:0] d;
    always @(posedge clk) if (READ_EN == 0 || en) d <= rom[addr];  // the block RAM's read latch
    always @(posedge clk) begin
        if (RESET != 0 && rst) q <= 0;
        else if (ENABLE == 0 || en) q <= d;      // the register after it
        q2 <= (FANOUT != 0) ? d ^ {W{en}} : ~q;   // FANOUT: a second load on the data
    end
endmodule
"""


def _synth(tmp_path: Path, **params: int) -> dict:
    (tmp_path / "rom_top.v").write_text(ROM)
    chparam = " ".join(f"-set {k} {v}" for k, v in params.items())
    script = (f"read_verilog rom_top.v; {'chparam ' + chparam + ' rom_top; ' if chparam else ''}"
              "synth_ecp5 -top rom_top -json net.json")
    tools.run_tool("yosys", ["-p", script], cwd=tmp_path, log_name="yosys.log")
    return json.loads((tmp_path / "net.json").read_text())


def _cells(netlist: dict) -> dict:
    return bram_outreg._top_module(netlist)["cells"]


def _count(netlist: dict, kind: str) -> int:
    return sum(c["type"] == kind for c in _cells(netlist).values())


def test_plain_register_moves_into_the_block(tmp_path: Path):
    netlist = _synth(tmp_path)
    before = copy.deepcopy(netlist)
    ram = [c for c in _cells(before).values() if c["type"] == "DP16KD"]
    assert len(ram) == 1, "the 1024 x 16 ROM is one DP16KD"
    q_bits = bram_outreg._top_module(before)["ports"]["q"]["bits"]

    moved = bram_outreg.absorb_output_registers(netlist)

    assert moved == 16
    assert _count(netlist, "TRELLIS_FF") == _count(before, "TRELLIS_FF") - 16
    (block,) = [c for c in _cells(netlist).values() if c["type"] == "DP16KD"]
    side = "A" if block["parameters"]["REGMODE_A"] == "OUTREG" else "B"
    assert block["parameters"][f"REGMODE_{side}"] == "OUTREG"
    driven = [block["connections"][f"DO{side}{i}"][0] for i in range(18)]
    # every bit of the output port q is now driven straight by the block's data out
    assert set(q_bits) <= set(driven)
    # a second pass finds nothing more to do
    assert bram_outreg.absorb_output_registers(netlist) == 0


@pytest.mark.parametrize("params", [{"ENABLE": 1}, {"RESET": 1}, {"FANOUT": 1}, {"READ_EN": 1}],
                         ids=["enable", "reset", "second-load", "read-enable"])
def test_register_that_is_not_plain_stays(tmp_path: Path, params: dict):
    netlist = _synth(tmp_path, **params)
    before = copy.deepcopy(netlist)
    assert bram_outreg.absorb_output_registers(netlist) == 0
    assert netlist == before


def test_36_bit_read_moves_into_both_ports_registers(tmp_path: Path):
    # one block in the 512 x 36 mode, written on port A, read on port B, one clock
    netlist = _synth(tmp_path, W=32, DEPTH=512, RAM=1)
    (block,) = [c for c in _cells(netlist).values() if c["type"] == "DP16KD"]
    assert bram_outreg._param_int(block["parameters"]["DATA_WIDTH_B"]) == 36
    q_bits = bram_outreg._top_module(netlist)["ports"]["q"]["bits"]
    ffs = _count(netlist, "TRELLIS_FF")

    assert bram_outreg.absorb_output_registers(netlist) == 32
    assert _count(netlist, "TRELLIS_FF") == ffs - 32
    # the word spans both ports' data outs; both registers on, loading every cycle, on the
    # one clock, never reset
    conn, params = block["connections"], block["parameters"]
    for side in "AB":
        assert params[f"REGMODE_{side}"] == "OUTREG"
        assert conn[f"OCE{side}"] == ["1"]
        assert conn[f"RST{side}"] == ["0"]
    assert conn["CLKA"] == conn["CLKB"]
    driven = [conn[f"DO{side}{i}"][0] for side in "AB" for i in range(18)]
    assert set(q_bits) <= set(driven)
    assert bram_outreg.absorb_output_registers(netlist) == 0


@pytest.mark.parametrize("params", [{"ENABLE": 1, "RAM": 1}, {"READ_EN": 1, "RAM": 1}, {"RAM": 0}],
                         ids=["enable", "read-enable", "rom-without-port-a-clock"])
def test_36_bit_read_stays_unless_exact(tmp_path: Path, params: dict):
    # a ROM has no clock on port A: which port's controls register the half on DOA is not
    # known, so nothing moves
    netlist = _synth(tmp_path, W=32, DEPTH=512, **params)
    (block,) = [c for c in _cells(netlist).values() if c["type"] == "DP16KD"]
    assert bram_outreg._param_int(block["parameters"]["DATA_WIDTH_B"]) == 36
    before = copy.deepcopy(netlist)
    assert bram_outreg.absorb_output_registers(netlist) == 0
    assert netlist == before


def test_file_rewritten_only_when_something_moved(tmp_path: Path):
    _synth(tmp_path, ENABLE=1)
    path = tmp_path / "net.json"
    stamp = path.stat().st_mtime_ns
    assert bram_outreg.absorb_in_file(path) == 0
    assert path.stat().st_mtime_ns == stamp
    _synth(tmp_path)
    assert bram_outreg.absorb_in_file(path) == 16
    assert bram_outreg.absorb_in_file(path) == 0
