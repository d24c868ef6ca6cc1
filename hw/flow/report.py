"""Turn tool outputs (nextpnr ``--report`` JSON, Yosys ``stat -json``) into one build report.

``Report`` is what ``build_bitstream`` returns; it is written as ``report.json`` (stable keys,
for scripts and CI) and ``report.md`` (for people).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from netfabric.files import atomic_write

# Device cell type (nextpnr utilisation key) -> the resource name reports use.
RESOURCE_KINDS: dict[str, str] = {
    # ECP5
    "TRELLIS_COMB": "LUT4",
    "TRELLIS_FF": "FF",
    "MULT18X18D": "DSP",
    "ALU54B": "DSP ALU",
    "DP16KD": "BRAM",
    "TRELLIS_RAMW": "LUTRAM",
    "TRELLIS_IO": "IO",
    "EHXPLLL": "PLL",
    # iCE40
    "ICESTORM_LC": "LC",
    "ICESTORM_DSP": "DSP",
    "ICESTORM_RAM": "BRAM",
    "ICESTORM_SPRAM": "SPRAM",
    "SB_IO": "IO",
    "ICESTORM_PLL": "PLL",
}
_ORDER = ["LUT4", "LC", "FF", "DSP", "DSP ALU", "BRAM", "SPRAM", "LUTRAM", "IO", "PLL"]
_ALWAYS_SHOWN = {"LUT4", "LC", "FF", "DSP", "BRAM"}  # shown even when 0 used

# Yosys cell types that are flip-flops on iCE40, where nextpnr only counts LCs.
_ICE40_FF = re.compile(r"^SB_DFF\w*$")


@dataclass
class Resource:
    kind: str  # LUT4, LC, FF, DSP, BRAM, SPRAM, LUTRAM, IO, PLL
    cell: str  # device cell type the count is of
    used: int
    available: int | None

    @property
    def percent(self) -> float | None:
        return 100.0 * self.used / self.available if self.available else None


@dataclass
class ClockResult:
    net: str
    achieved_mhz: float
    constraint_mhz: float

    @property
    def met(self) -> bool:
        return self.achieved_mhz >= self.constraint_mhz


@dataclass
class CriticalPath:
    clock: str
    delay_ns: float
    logic_ns: float
    routing_ns: float
    start: str  # cell.port
    end: str
    logic_levels: int  # cells passed through between the two registers
    cells: list[str] = field(default_factory=list)  # cells along the path, in order


@dataclass
class SeedRun:
    """One nextpnr placement seed: its worst clock's Fmax and whether every clock met."""

    seed: int
    fmax_mhz: float | None
    met: bool | None
    seconds: float  # wall
    cpu_seconds: float = 0.0
    # nextpnr's own timing of its phases (parse_pnr_phases), wall seconds
    phases: dict[str, float] = field(default_factory=dict)


@dataclass
class Report:
    board: str
    part: str
    family: str
    top: str
    requested_mhz: float  # what the user asked for
    clock_mhz: float  # what the clock actually is (PLL dividers): the timing target
    pll: dict[str, Any] | None
    clocks: list[ClockResult]
    resources: list[Resource]
    synth_cells: dict[str, int]
    critical_path: CriticalPath | None
    steps: dict[str, float]  # step name -> wall seconds
    bitstream: str | None = None
    bitstream_bytes: int | None = None
    notes: list[str] = field(default_factory=list)
    # fit.py's prediction made before synthesis vs what the tools reported, per resource:
    # {"LUT4": {"predicted": n, "reported": m, "error": (n - m) / m}, ...}
    predicted: dict[str, dict] = field(default_factory=dict)
    # Several nextpnr seeds (``--seeds N``): every seed's result; ``clocks``, the critical path
    # and the bitstream are those of the kept seed (the best Fmax).
    seed_runs: list[SeedRun] = field(default_factory=list)
    seed: int | None = None  # the kept seed
    # step name -> CPU seconds of its tool processes (place & route: every seed's, summed):
    # what a build costs whatever else shares the cores
    cpu_steps: dict[str, float] = field(default_factory=dict)
    pnr_phases: dict[str, float] = field(default_factory=dict)  # the kept seed's, see SeedRun

    @property
    def fmax_mhz(self) -> float | None:
        """Achieved Fmax of the slowest clock domain (None if timing was not analysed); of the
        kept seed with several seeds (see ``fmax_seeds`` for all of them)."""
        return min((c.achieved_mhz for c in self.clocks), default=None)

    @property
    def timing_met(self) -> bool | None:
        """Every clock met; with several seeds, on every seed (the worst one decides: a
        rebuild of the same design must not depend on a lucky placement)."""
        if not self.clocks:
            return None
        return all(c.met for c in self.clocks) and all(r.met for r in self.seed_runs)

    @property
    def fmax_seeds(self) -> dict[str, float] | None:
        """Fmax min / median / max over the seeds (None with fewer than two seeds)."""
        fs = sorted(r.fmax_mhz for r in self.seed_runs if r.fmax_mhz is not None)
        if len(fs) < 2:
            return None
        mid = len(fs) // 2
        median = fs[mid] if len(fs) % 2 else (fs[mid - 1] + fs[mid]) / 2
        return {"min": round(fs[0], 2), "median": round(median, 2), "max": round(fs[-1], 2)}

    def resource(self, kind: str) -> Resource | None:
        return next((r for r in self.resources if r.kind == kind), None)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["fmax_mhz"] = self.fmax_mhz
        d["timing_met"] = self.timing_met
        d["fmax_seeds"] = self.fmax_seeds
        for c, cd in zip(self.clocks, d["clocks"], strict=True):
            cd["met"] = c.met
        for r, rd in zip(self.resources, d["resources"], strict=True):
            rd["percent"] = None if r.percent is None else round(r.percent, 2)
        d["total_seconds"] = round(sum(self.steps.values()), 2)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def to_markdown(self) -> str:
        return _markdown(self)

    def write(self, out_dir: Path) -> tuple[Path, Path]:
        """Write report.json and report.md into ``out_dir`` (atomically)."""
        j, m = out_dir / "report.json", out_dir / "report.md"
        atomic_write(j, self.to_json())
        atomic_write(m, self.to_markdown())
        return j, m


# --- parsing -------------------------------------------------------------------------------------


def load_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def parse_synth_stat(stat: dict[str, Any]) -> dict[str, int]:
    """Cell counts by type from ``stat -json`` (the whole design, hierarchy flattened)."""
    cells = stat.get("design", {}).get("num_cells_by_type", {})
    return {k: int(v) for k, v in sorted(cells.items()) if not k.startswith("$scopeinfo")}


def parse_utilization(
    pnr: dict[str, Any], family: str, synth_cells: dict[str, int]
) -> list[Resource]:
    util = pnr.get("utilization", {})
    out: list[Resource] = []
    for cell, kind in RESOURCE_KINDS.items():
        if cell in util:
            used, avail = int(util[cell]["used"]), int(util[cell]["available"])
            if used or kind in _ALWAYS_SHOWN:
                out.append(Resource(kind, cell, used, avail))
    if family == "ice40":
        # An iCE40 LC is LUT4 + FF; report the FFs and LUTs Yosys mapped, out of the LCs.
        lcs = util.get("ICESTORM_LC", {}).get("available")
        ffs = sum(n for c, n in synth_cells.items() if _ICE40_FF.match(c))
        out.append(Resource("FF", "SB_DFF*", ffs, lcs))
        out.append(Resource("LUT4", "SB_LUT4", synth_cells.get("SB_LUT4", 0), lcs))
    out.sort(key=lambda r: _ORDER.index(r.kind) if r.kind in _ORDER else len(_ORDER))
    return out


def parse_clocks(pnr: dict[str, Any]) -> list[ClockResult]:
    return [
        ClockResult(_clock_name(net), float(v["achieved"]), float(v["constraint"]))
        for net, v in sorted(pnr.get("fmax", {}).items())
    ]


def _clock_name(net: str) -> str:
    # nextpnr names promoted clocks "$glbnet$<net>" (and "$glbnet$<net>$TRELLIS_IO_IN").
    m = re.match(r"^\$glbnet\$(.+?)(\$TRELLIS_IO_IN)?$", net)
    return m.group(1) if m else net


def parse_critical_path(pnr: dict[str, Any], clock: str | None) -> CriticalPath | None:
    """The reported critical path of ``clock`` (a register-to-register path), if any."""
    for entry in pnr.get("critical_paths", []):
        src, dst = entry.get("from", ""), entry.get("to", "")
        if "<async>" in (src, dst) or not src or not entry.get("path"):
            continue
        name = _clock_name(src.split()[-1])  # "posedge $glbnet$clk" -> "clk"
        if clock is not None and name != clock:
            continue
        steps = entry["path"]
        total = sum(float(s["delay"]) for s in steps)
        routing = sum(float(s["delay"]) for s in steps if s.get("type") == "routing")
        cells: list[str] = []
        for s in steps:
            for end in ("from", "to"):
                c = s.get(end, {}).get("cell")
                if c and (not cells or cells[-1] != c):
                    cells.append(c)
        return CriticalPath(
            clock=name,
            delay_ns=round(total, 3),
            logic_ns=round(total - routing, 3),
            routing_ns=round(routing, 3),
            start=_pin(steps[0].get("from", {})),
            end=_pin(steps[-1].get("to", {})),
            logic_levels=sum(1 for s in steps if s.get("type") == "logic"),
            cells=cells,
        )
    return None


def _pin(p: dict[str, Any]) -> str:
    return f"{p.get('cell', '?')}.{p.get('port', '?')}"


_UTIL_LINE = re.compile(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%")


# nextpnr's own timing lines: phase -> the pattern of its seconds
_PNR_PHASES = {
    "placement_analytic": re.compile(r"HeAP Placer Time: ([0-9.]+)s"),
    "placement_refine": re.compile(r"SA placement time ([0-9.]+)s"),
    "routing": re.compile(r"Router[12] time ([0-9.]+)s"),
}


def parse_pnr_phases(log_text: str) -> dict[str, float]:
    """Seconds nextpnr reports for analytic placement (HeAP), its annealing refinement and
    routing; the phases its log has (placer and router differ by option: the static placer
    reports no time of its own, so its runs have no ``placement_analytic``)."""
    out = {}
    for phase, pattern in _PNR_PHASES.items():
        m = pattern.search(log_text)
        if m:
            out[phase] = round(float(m.group(1)), 2)
    return out


def overused_resources(log_text: str) -> list[tuple[str, int, int]]:
    """(cell type, used, available) for every line of nextpnr's 'Device utilisation' over 100 %."""
    over = []
    for line in log_text.splitlines():
        m = _UTIL_LINE.match(line)
        if m and int(m.group(2)) > int(m.group(3)):
            over.append((m.group(1), int(m.group(2)), int(m.group(3))))
    return over


# --- markdown ------------------------------------------------------------------------------------


def _markdown(r: Report) -> str:
    fmax = r.fmax_mhz
    if fmax is None:
        timing = "not analysed"
    else:
        verdict = "met" if r.timing_met else "**NOT met**"
        timing = f"{fmax:.1f} MHz at a {r.clock_mhz:g} MHz target: timing {verdict}"
    clock = f"{r.requested_mhz:g} MHz requested"
    if r.pll:
        clock += f", {r.clock_mhz:g} MHz from the PLL ({_pll_text(r.pll)})"
    else:
        clock += f", {r.clock_mhz:g} MHz straight from the oscillator"
    bit = "not written"
    if r.bitstream:
        bit = f"`{Path(r.bitstream).name}` ({r.bitstream_bytes:,} bytes)"
    lines = [
        f"# Bitstream report: `{r.top}` on {r.board}",
        "",
        "| | |",
        "|---|---|",
        f"| Board | {r.board} ({r.part}) |",
        f"| Clock | {clock} |",
        f"| Fmax | {timing} |",
        *_seed_rows(r),
        f"| Bitstream | {bit} |",
        f"| Wall time | {sum(r.steps.values()):.1f} s |",
        *_cpu_rows(r),
        "",
        "## Resources",
        "",
        "| Resource | Cell | Used | Available | Use |",
        "|---|---|---:|---:|---:|",
    ]
    for res in r.resources:
        pct = "" if res.percent is None else f"{res.percent:.1f} %"
        avail = "" if res.available is None else f"{res.available:,}"
        lines.append(f"| {res.kind} | {res.cell} | {res.used:,} | {avail} | {pct} |")
    if r.predicted:
        lines += ["", "## Predicted before synthesis vs reported", "",
                  "| Resource | Predicted | Reported | Error |", "|---|---:|---:|---:|"]
        for kind, c in r.predicted.items():
            err = "" if c.get("error") is None else f"{100 * c['error']:+.1f} %"
            lines.append(f"| {kind} | {c['predicted']:,} | {c['reported']:,} | {err} |")
    if r.clocks:
        lines += [
            "",
            "## Clocks",
            "",
            "| Clock | Fmax (MHz) | Target (MHz) | Met |",
            "|---|---:|---:|---|",
        ]
        for c in r.clocks:
            lines.append(
                f"| {c.net} | {c.achieved_mhz:.2f} | {c.constraint_mhz:.2f} | {'yes' if c.met else 'NO'} |"
            )
    if r.critical_path:
        p = r.critical_path
        lines += [
            "",
            f"## Critical path ({p.clock})",
            "",
            f"{p.delay_ns:.2f} ns = logic {p.logic_ns:.2f} ns + routing {p.routing_ns:.2f} ns, "
            f"{p.logic_levels} logic levels (all {len(p.cells)} cells in report.json).",
            "",
            f"- from `{p.start}`",
            f"- to `{p.end}`",
        ]
    lines += ["", "## Steps", "", "| Step | Seconds |", "|---|---:|"]
    lines += [f"| {name} | {sec:.1f} |" for name, sec in r.steps.items()]
    if r.synth_cells:
        lines += ["", "## Cells after synthesis", "", "| Cell | Count |", "|---|---:|"]
        lines += [f"| {c} | {n:,} |" for c, n in r.synth_cells.items()]
    if r.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in r.notes]
    return "\n".join(lines) + "\n"


def _cpu_rows(r: Report) -> list[str]:
    if not r.cpu_steps:
        return []
    row = f"| CPU time | {sum(r.cpu_steps.values()):.1f} s ("
    row += ", ".join(f"{k} {v:.1f}" for k, v in r.cpu_steps.items()) + ")"
    if r.pnr_phases:
        row += "; nextpnr: " + ", ".join(f"{k.replace('_', ' ')} {v:.1f} s"
                                         for k, v in r.pnr_phases.items())
    return [row + " |"]


def _seed_rows(r: Report) -> list[str]:
    spread = r.fmax_seeds
    if spread is None:
        return []
    runs = ", ".join(
        f"{s.seed}: {s.fmax_mhz:.1f}" if s.fmax_mhz is not None else f"{s.seed}: -"
        for s in r.seed_runs
    )
    verdict = "met on every seed" if r.timing_met else "**NOT met** on every seed"
    return [
        f"| Seeds | {len(r.seed_runs)} (seed: MHz: {runs}); min {spread['min']:.1f} / median "
        f"{spread['median']:.1f} / max {spread['max']:.1f} MHz, {verdict}; "
        f"bitstream of seed {r.seed} |"
    ]


def _pll_text(pll: dict[str, Any]) -> str:
    params = ", ".join(f"{k}={v}" for k, v in pll.get("params", {}).items())
    return f"{pll['fin_mhz']:g} MHz in, VCO {pll['fvco_mhz']:g} MHz; {params}"
