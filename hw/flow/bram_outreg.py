"""ECP5: move the flip-flop after a block RAM into the block RAM's own output register.

A DP16KD read without its output register (``REGMODE NOREG``, all that Yosys' memory mapping
produces) has a ~5.6 ns clock-to-out, and the fabric register that takes the data then sits at
the end of a route: on the INT8 MLP that was a critical path (MVAU weight ROM -> w_m, 8.1 ns on
ulx3s-85f). The block's output register (``REGMODE OUTREG``) is the same pipeline stage inside
the block, with a short clock-to-out. Yosys cannot use it (its ECP5 block RAM description has no
output-register option), so this pass rewrites the synthesized netlist before place and route.

A port's register is absorbed only where that is exactly the same circuit:
- every data-out bit of the port that is used drives one load and nothing else: the ``DI`` of
  a ``TRELLIS_FF``;
- that flip-flop is plain: always enabled (``CEMUX 1``), no set/reset (``LSR`` tied 0), reset
  value 0 (the block's output register starts at 0), clocked by the port's clock net with the
  same polarity as the port;
- the port's own reset (``RST``) is tied 0 and its output enable (``OCE``) and clock enable
  (``CE``) are 1, so the output register loads every cycle, like the flip-flop did. (No model
  here says whether ``CE``, the read enable, also holds the output register; a port read with
  an enable therefore keeps its fabric register.);
- in the 36-bit pseudo dual-port mode (Yosys' map of a wide memory: port A writes, port B
  reads 36 bits, the word spanning DOA and DOB) no model here says whether the half on DOA is
  registered by port A's or port B's clock and enables. The pass therefore takes such a
  block only where that cannot matter: both ports on the same clock net and polarity, both
  resets tied 0, both clock enables 1, and then both output enables set to 1 and both ports
  to ``OUTREG``. A 36-bit mode in any other arrangement (a 36-bit write beside a narrower
  read) is left alone.
The flip-flop is removed and the data-out bit drives the flip-flop's output net instead.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from netfabric.files import atomic_write

from .report import load_json

BRAM = "DP16KD"
FF = "TRELLIS_FF"
_WIDTH_36 = 36
_DATA_OUT_BITS = 18


def _param_str(value: Any) -> str:
    # Yosys' JSON writes string parameters made only of 0/1/x/z with a trailing space
    return str(value).rstrip(" ")


def _param_int(value: Any) -> int:
    text = _param_str(value)
    return int(text, 2) if text and set(text) <= {"0", "1"} else int(text)


def _top_module(netlist: dict[str, Any]) -> dict[str, Any]:
    tops = [m for m in netlist["modules"].values() if "top" in m.get("attributes", {})]
    if len(tops) != 1:
        raise ValueError(f"netlist has {len(tops)} top modules, expected 1 (a flattened design)")
    return tops[0]


def _loads(module: dict[str, Any]) -> dict[Any, list[tuple[str, str]]]:
    """Net bit -> every (cell, input port) it drives; the module's own outputs count too."""
    cells = module["cells"]
    loads: dict[Any, list[tuple[str, str]]] = defaultdict(list)
    for name, port in module.get("ports", {}).items():
        if port.get("direction") != "input":
            for bit in port["bits"]:
                loads[bit].append(("", name))
    for name, cell in cells.items():
        for port, bits in cell["connections"].items():
            if cell.get("port_directions", {}).get(port) != "output":
                for bit in bits:
                    loads[bit].append((name, port))
    return loads


def _one(cell: dict[str, Any], port: str) -> Any:
    bits = cell["connections"].get(port)
    return bits[0] if bits else None


def _plain_ff(ff: dict[str, Any], clock: Any, inverted: bool) -> bool:
    p = ff["parameters"]
    return (
        _param_str(p.get("CEMUX", "1")) == "1"
        and _one(ff, "LSR") in ("0", None)
        and _param_str(p.get("REGSET", "RESET")) == "RESET"
        and _one(ff, "CLK") == clock
        and (_param_str(p.get("CLKMUX", "CLK")) == "INV") == inverted
    )


def _clock(bram: dict[str, Any], side: str) -> tuple[Any, bool] | None:
    """The port's clock net and whether it is inverted; None for a constant clock."""
    clock = _one(bram, f"CLK{side}")
    if clock is None or clock in ("0", "1", "x"):
        return None
    mux = _param_str(bram["parameters"].get(f"CLK{side}MUX", f"CLK{side}"))
    return clock, mux == "INV"


def _absorbable_bits(cells: dict[str, Any], loads: dict[Any, list[tuple[str, str]]],
                     bram: dict[str, Any], side: str, clock: tuple[Any, bool],
                     ) -> list[tuple[str, str]] | None:
    """(data-out pin, flip-flop name) for every used bit of one side's data out, or None if
    one of them is not a plain flip-flop on ``clock``."""
    if _param_str(bram["parameters"].get(f"REGMODE_{side}", "NOREG")) != "NOREG":
        return None
    taken: list[tuple[str, str]] = []
    for i in range(_DATA_OUT_BITS):
        pin = f"DO{side}{i}"
        bits = bram["connections"].get(pin)
        if not bits or not loads.get(bits[0]):
            continue  # unused bit
        users = loads[bits[0]]
        if len(users) != 1 or users[0][1] != "DI" or users[0][0] not in cells:
            return None
        ff = cells[users[0][0]]
        if ff["type"] != FF or not _plain_ff(ff, *clock):
            return None
        taken.append((pin, users[0][0]))
    return taken


def _always_enabled(bram: dict[str, Any], side: str) -> bool:
    """Clock enable and output enable both tied 1."""
    return _one(bram, f"CE{side}") == "1" and _one(bram, f"OCE{side}") == "1"


def _reset_tied_off(bram: dict[str, Any], side: str) -> bool:
    return _one(bram, f"RST{side}") in ("0", None)


def _absorbable_port(cells: dict[str, Any], loads: dict[Any, list[tuple[str, str]]],
                     bram: dict[str, Any], side: str) -> list[tuple[str, str]] | None:
    """A port in the 9/18-bit modes: its used bits, or None if not exact."""
    clock = _clock(bram, side)
    if clock is None or not _reset_tied_off(bram, side) or not _always_enabled(bram, side):
        return None
    return _absorbable_bits(cells, loads, bram, side, clock) or None


def _absorbable_wide_read(cells: dict[str, Any], loads: dict[Any, list[tuple[str, str]]],
                          bram: dict[str, Any]) -> list[tuple[str, str]] | None:
    """The 36-bit read (port B, data on DOA and DOB): its used bits, or None if not exact
    whichever port's controls register which half (see the module docstring)."""
    clock = _clock(bram, "B")
    if clock is None or _clock(bram, "A") != clock or not _always_enabled(bram, "B"):
        return None
    if _one(bram, "CEA") != "1":
        return None
    if not (_reset_tied_off(bram, "A") and _reset_tied_off(bram, "B")):
        return None
    taken: list[tuple[str, str]] = []
    for side in "AB":
        half = _absorbable_bits(cells, loads, bram, side, clock)
        if half is None:
            return None
        taken += half
    return taken or None


def absorb_output_registers(netlist: dict[str, Any]) -> int:
    """Rewrite ``netlist`` (Yosys JSON, flattened ECP5 design) in place; returns the number of
    flip-flops moved into block RAM output registers."""
    module = _top_module(netlist)
    cells = module["cells"]
    loads = _loads(module)
    moved = 0
    for bram in [c for c in cells.values() if c["type"] == BRAM]:
        params = bram["parameters"]
        widths = {s: _param_int(params.get(f"DATA_WIDTH_{s}", 18)) for s in "AB"}
        if widths["B"] == _WIDTH_36:
            groups = [("AB", _absorbable_wide_read(cells, loads, bram))]
        elif widths["A"] == _WIDTH_36:
            continue
        else:
            groups = [(side, _absorbable_port(cells, loads, bram, side)) for side in "AB"]
        for sides, taken in groups:
            if not taken:
                continue
            for pin, ff_name in taken:
                ff = cells.pop(ff_name)
                bram["connections"][pin] = list(ff["connections"]["Q"])
            for side in sides:
                params[f"REGMODE_{side}"] = "OUTREG"
                bram["connections"][f"OCE{side}"] = ["1"]
            moved += len(taken)
    return moved


def absorb_in_file(path: Path) -> int:
    """``absorb_output_registers`` on a netlist file, rewritten atomically if anything moved."""
    netlist = load_json(path)
    moved = absorb_output_registers(netlist)
    if moved:
        atomic_write(path, json.dumps(netlist))
    return moved
