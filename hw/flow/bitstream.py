"""``build_bitstream``: project folder -> board shell -> synth -> place & route -> bitstream.

Layout of ``out_dir``::

    <top>_<board>.bit|.bin   the bitstream (written atomically, only after a successful build)
    report.json, report.md   utilisation, Fmax vs target, critical path, step times
    work/                    everything the tools read and wrote (sources, shell, logs, netlist;
                             with several seeds also pnr_seed<S>.log / pnr_report_seed<S>.json)
"""

from __future__ import annotations

import concurrent.futures
import shutil
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from netfabric.files import atomic_copy

from . import bram_outreg, pnr, synth, vivado
from .boards import Board, get_board
from .errors import FlowError, ManifestError
from .fit import check_fit, compare
from .manifest import Manifest, load_manifest
from .pack import pack_tool, run_pack
from .pll import PllPlan, plan_clock
from .progress import Progress
from .report import (
    Report,
    SeedRun,
    load_json,
    parse_clocks,
    parse_critical_path,
    parse_pnr_phases,
    parse_synth_stat,
    parse_utilization,
)
from .shell import SHELL_FILE, SHELL_TOP, generate_shell, plan_link, shell_sources
from .tools import find_tool, stop_running_tools

WORK = "work"
MAX_SEEDS = 16  # nextpnr runs are minutes each on a large design: a typo must not mean hours


def build_bitstream(
    project_dir: str | Path,
    board: str | Board,
    out_dir: str | Path,
    freq_mhz: float | None = None,
    *,
    seed: int = 1,
    seeds: int = 1,
    jobs: int = 1,
    progress: Progress | None = None,
) -> Report:
    """Build a bitstream for the stitched project in ``project_dir`` on ``board``.

    ``freq_mhz`` is the core clock (default: the board's); the PLL gets as close as its
    dividers allow and the report's target is the frequency actually produced. A timing
    failure still yields a bitstream; ``Report.timing_met`` says whether it is trustworthy.
    ``seeds`` > 1 places and routes with seeds ``seed .. seed + seeds - 1``, ``jobs`` at a
    time (each nextpnr is one process and holds its own copy of the design in memory), and
    keeps the best-placed result (highest Fmax relative to its target) for the bitstream;
    the report lists every seed, and timing counts as met only when every seed met it.
    Raises FlowError subclasses for everything a user can fix (see errors.py).
    """
    check_seeds(seeds)
    check_jobs(jobs)
    b = get_board(board) if isinstance(board, str) else board
    if b.family == "xc7":
        vivado.require_vivado(b)  # before any work: nothing else can build this board
    manifest = load_manifest(project_dir)
    # refused in seconds, before any tool runs, when the prediction does not fit the board
    predicted = check_fit(manifest.layers, b) if manifest.layers and b.capacity else None
    freq = float(freq_mhz) if freq_mhz is not None else b.default_freq_mhz
    progress = progress or Progress()
    out = Path(out_dir).resolve()
    if b.family == "xc7":
        if seeds != 1:
            raise FlowError(f"several placement seeds are an open-flow (nextpnr) option; "
                            f"{b.name} is built with Vivado")
        return _build_vivado(manifest, b, out, freq, progress)
    pnr_tool, packer = pnr.pnr_tool(b), pack_tool(b)
    for tool in ("yosys", pnr_tool, packer):
        find_tool(tool)  # fail now rather than after minutes of synthesis
    clock = plan_clock(b, freq)
    work = _stage(manifest, b, clock, out)
    bit_name = f"{manifest.top}_{b.name}.{b.bitstream_ext}"
    progress.total = 2 + (seeds if jobs == 1 else 1)
    steps: dict[str, float] = {}
    cpu: dict[str, float] = {}

    with progress.step("synth (yosys)") as note:
        script = synth.synth_script(_top_sources(manifest, b), SHELL_TOP, b)
        run = synth.run_synth(work, script, manifest)
        steps["synth"] = round(run.seconds, 2)
        cpu["synth"] = round(run.cpu_seconds, 2)
        cells = parse_synth_stat(load_json(work / synth.STAT))
        note.detail = _cells_summary(cells)
        notes: list[str] = []
        if b.family == "ecp5":
            moved = bram_outreg.absorb_in_file(work / synth.NETLIST)
            if moved:
                notes.append(f"{moved:,} flip-flops moved into block RAM output registers "
                             "(hw/flow/bram_outreg.py)")
                note.detail += f" ({moved:,} FFs into BRAM output registers)"

    target = clock.fout_mhz if clock else freq
    pnr_start = time.monotonic()
    placed: list[_Placed] = []
    if seeds == 1:
        with progress.step(f"place & route ({pnr_tool})") as note:
            placed.append(_place_and_route(work, b, target, seed, own_files=False))
            note.detail = placed[0].detail()
    elif jobs == 1:
        for s in range(seed, seed + seeds):
            with progress.step(f"place & route ({pnr_tool}, seed {s})") as note:
                placed.append(_place_and_route(work, b, target, s, own_files=True))
                note.detail = placed[-1].detail()
    else:
        last = seed + seeds - 1
        with progress.step(f"place & route ({pnr_tool}, seeds {seed}-{last}, "
                           f"{min(jobs, seeds)} at a time)") as note:
            placed = _place_side_by_side(work, b, target, range(seed, last + 1), jobs)
            note.detail = "Fmax " + " / ".join(
                f"{p.run.fmax_mhz:.1f}" if p.run.fmax_mhz else "-" for p in placed) + " MHz"
    # the best-placed seed (highest Fmax relative to its target; the first on a tie) gives
    # the bitstream
    kept = max(placed, key=lambda p: p.score).run.seed
    if seeds > 1:
        _restore_seed_outputs(work, b, kept)
    runs = [p.run for p in placed]
    steps["pnr"] = round(time.monotonic() - pnr_start, 2)  # wall time: seeds may overlap
    cpu["pnr"] = round(sum(r.cpu_seconds for r in runs), 2)
    kept_phases = next(r.phases for r in runs if r.seed == kept)
    data = load_json(work / pnr.REPORT)
    clocks = parse_clocks(data)
    resources = parse_utilization(data, b.family, cells)
    worst = min(clocks, key=lambda c: c.achieved_mhz / c.constraint_mhz, default=None)
    path = parse_critical_path(data, worst.net if worst else None)

    with progress.step(f"pack ({packer})") as note:
        run = run_pack(work, b, bit_name)
        steps["pack"] = round(run.seconds, 2)
        cpu["pack"] = round(run.cpu_seconds, 2)
        size = (work / bit_name).stat().st_size
        note.detail = f"{bit_name}, {size:,} bytes"

    atomic_copy(work / bit_name, out / bit_name)
    report = Report(
        board=b.name,
        part=b.part,
        family=b.family,
        top=manifest.top,
        requested_mhz=freq,
        clock_mhz=clock.fout_mhz if clock else b.osc_mhz,
        pll=asdict(clock) if clock else None,
        clocks=clocks,
        resources=resources,
        synth_cells=cells,
        critical_path=path,
        steps=steps,
        bitstream=str(out / bit_name),
        bitstream_bytes=size,
        seed_runs=runs if seeds > 1 else [],
        seed=kept,
        notes=notes,
        cpu_steps=cpu,
        pnr_phases=kept_phases,
    )
    if predicted is not None:
        report.predicted = compare(predicted, {r.kind: r.used for r in resources})
    report.notes += _notes(report)
    report.write(out)
    return report


def check_jobs(jobs: object) -> int:
    """``jobs`` as a count of nextpnr runs side by side, 1 .. MAX_SEEDS, or FlowError."""
    return _check_count(jobs, "place-and-route jobs")


def check_seeds(seeds: object) -> int:
    """``seeds`` as a count of nextpnr seeds, 1 .. MAX_SEEDS, or FlowError (one line)."""
    return _check_count(seeds, "placement seeds")


def _check_count(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_SEEDS:
        raise FlowError(f"the number of {what} must be a whole number from 1 to {MAX_SEEDS}, "
                        f"not {value!r}")
    return value


@dataclass
class _Placed:
    """One nextpnr run: its row of the report and how it ranks among seeds."""

    run: SeedRun
    target_mhz: float | None
    score: float  # Fmax / target of the worst clock (0 without a clock)

    def detail(self) -> str:
        if self.run.fmax_mhz is None or self.target_mhz is None:
            return ""
        return (f"Fmax {self.run.fmax_mhz:.1f} MHz, target {self.target_mhz:.1f}: "
                f"{'met' if self.run.met else 'NOT met'}")


def _place_side_by_side(work: Path, b: Board, target: float, seeds: range,
                        jobs: int) -> list[_Placed]:
    """Place and route ``seeds``, ``jobs`` at a time, in seed order. The first failure (or
    Ctrl-C) ends the build at once: queued seeds are dropped and the running seeds' tools
    killed, instead of waiting out their routing (the pool waits for its threads on exit)."""
    workers: set[int] = set()

    def place(s: int) -> _Placed:
        workers.add(threading.get_ident())
        return _place_and_route(work, b, target, s, own_files=True)

    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        runs = [pool.submit(place, s) for s in seeds]
        try:
            for done in concurrent.futures.as_completed(runs):
                done.result()  # raises for the first seed that fails, whichever it is
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            # repeated: a worker that took the next seed as the queue was cancelled may start
            # its tool after a kill
            while not all(r.done() for r in runs):
                stop_running_tools(workers)
                time.sleep(0.05)
            raise
        return [r.result() for r in runs]


def _place_and_route(work: Path, board: Board, target_mhz: float, seed: int, *,
                     own_files: bool) -> _Placed:
    """nextpnr with ``seed``; with ``own_files`` its outputs carry the seed in their names
    (several seeds, possibly side by side, in one folder)."""
    names = pnr.output_names(board, seed if own_files else None)
    run = pnr.run_pnr(work, board, board.constraints, target_mhz, seed, names)
    clocks = parse_clocks(load_json(work / names["report"]))
    worst = min(clocks, key=lambda c: c.achieved_mhz / c.constraint_mhz, default=None)
    row = SeedRun(seed, worst.achieved_mhz if worst else None,
                  all(c.met for c in clocks) if clocks else None, round(run.seconds, 2),
                  round(run.cpu_seconds, 2),
                  parse_pnr_phases((work / names["log"]).read_text(errors="replace")))
    if worst is None:
        return _Placed(row, None, 0.0)
    return _Placed(row, worst.constraint_mhz, worst.achieved_mhz / worst.constraint_mhz)


def _restore_seed_outputs(work: Path, board: Board, seed: int) -> None:
    """Put the chosen seed's outputs under nextpnr's own names (pack reads them there)."""
    plain, own = pnr.output_names(board), pnr.output_names(board, seed)
    for key, name in plain.items():
        shutil.copy2(work / own[key], work / name)


def stage_board_top(project_dir: str | Path, board: str | Board, out_dir: str | Path,
                    freq_mhz: float | None = None) -> tuple[Path, list[str]]:
    """Write ``out_dir/work`` exactly as a bitstream build does (sources, memory files, the
    board shell), run no tool; returns that folder and the Verilog files in read order, whose
    top is ``nf_board_top``. The full-system simulation runs this very folder."""
    b = get_board(board) if isinstance(board, str) else board
    manifest = load_manifest(project_dir)
    freq = float(freq_mhz) if freq_mhz is not None else b.default_freq_mhz
    work = _stage(manifest, b, plan_clock(b, freq), Path(out_dir).resolve())
    return work, _top_sources(manifest, b)


def _top_sources(manifest: Manifest, board: Board) -> list[str]:
    return [*manifest.sources, *(s.name for s in shell_sources(board)), SHELL_FILE]


def _stage(manifest: Manifest, board: Board, clock: PllPlan | None, out: Path) -> Path:
    """Fresh ``out/work`` holding flat copies of every input plus the generated shell.

    The tools run inside it with relative paths (YoWASP cannot see absolute /tmp paths), and
    $readmemh files resolve next to the sources as they do in simulation.
    """
    generated = {SHELL_FILE, board.constraints, synth.SCRIPT, synth.NETLIST, vivado.TCL,
                 *(s.name for s in shell_sources(board))}
    clash = generated & {*manifest.sources, *manifest.mem_files}
    if clash:
        raise ManifestError(f"project files {sorted(clash)} clash with files the flow generates")
    work = out / WORK
    if work.exists():
        shutil.rmtree(work)
    # A failed build must not leave an older bitstream/report looking like its result.
    stale = [out / "report.json", out / "report.md", *out.glob(f"{manifest.top}_{board.name}.*")]
    for path in stale:
        path.unlink(missing_ok=True)
    work.mkdir(parents=True)
    for src in [*manifest.source_paths(), *manifest.mem_paths(), board.constraints_path,
                *shell_sources(board)]:
        shutil.copy2(src, work / src.name)
    (work / SHELL_FILE).write_text(generate_shell(manifest, board, clock))
    return work


def _build_vivado(
    manifest: Manifest, b: Board, out: Path, freq: float, progress: Progress
) -> Report:
    clock = plan_clock(b, freq)
    work = _stage(manifest, b, clock, out)
    bit_name = f"{manifest.top}_{b.name}.bit"
    tcl = vivado.vivado_tcl(
        [*manifest.sources, SHELL_FILE], list(manifest.mem_files), b, SHELL_TOP, bit_name
    )
    (work / vivado.TCL).write_text(tcl)
    progress.total = 1
    with progress.step("synth + impl + bitstream (vivado)"):
        run = vivado.run_vivado(work)
    clocks, resources = vivado.parse_vivado_summary(load_json(work / vivado.SUMMARY), b)
    if not (work / bit_name).is_file():
        raise FlowError(f"vivado finished without writing {bit_name} (log: {run.log})")
    atomic_copy(work / bit_name, out / bit_name)
    report = Report(
        board=b.name,
        part=b.part,
        family=b.family,
        top=manifest.top,
        requested_mhz=freq,
        clock_mhz=clock.fout_mhz if clock else b.osc_mhz,
        pll=asdict(clock) if clock else None,
        clocks=clocks,
        resources=resources,
        synth_cells={},
        critical_path=None,
        steps={"vivado": round(run.seconds, 2)},
        bitstream=str(out / bit_name),
        bitstream_bytes=(out / bit_name).stat().st_size,
    )
    report.notes += _notes(report)
    report.write(out)
    return report


def _cells_summary(cells: dict[str, int]) -> str:
    groups = {
        "LUT4": ("LUT4", "SB_LUT4"),
        "FF": ("TRELLIS_FF",),
        "DSP": ("MULT18X18D", "SB_MAC16"),
        "BRAM": ("DP16KD", "SB_RAM40_4K"),
        "SPRAM": ("SB_SPRAM256KA",),
    }
    parts = []
    for name, types in groups.items():
        n = sum(cells.get(t, 0) for t in types)
        if name == "FF":
            n += sum(v for k, v in cells.items() if k.startswith("SB_DFF"))
        if n or name in ("LUT4", "FF"):
            parts.append(f"{name} {n:,}")
    return ", ".join(parts)


def _timing_note(r: Report) -> str | None:
    """What to do when timing failed; with several seeds, the worst seed sets the clock to ask
    for (a rebuild places anew, and the best seed's Fmax is the lucky one)."""
    if r.timing_met is not False or not r.fmax_mhz:
        return None
    failed = [s for s in r.seed_runs if s.met is False]
    worst = min((s.fmax_mhz for s in r.seed_runs if s.fmax_mhz), default=r.fmax_mhz)
    kept_met = all(c.met for c in r.clocks)
    if kept_met and failed:
        names = ", ".join(str(s.seed) for s in failed)
        return (f"Timing NOT met on every seed: the bitstream kept (seed {r.seed}, "
                f"{r.fmax_mhz:.1f} MHz) meets {r.clock_mhz:g} MHz, but seed(s) {names} did not "
                f"(worst {worst:.1f} MHz): the clock is marginal for this design. Rebuild with "
                f"--freq {int(worst)} for a clock every placement meets, or pipeline the critical "
                "path.")
    return (f"Timing NOT met: the bitstream was written but is not reliable at "
            f"{r.clock_mhz:g} MHz. Rebuild with --freq {int(worst)} or pipeline the critical "
            "path.")


def _notes(r: Report) -> list[str]:
    notes = []
    if r.pll and abs(r.clock_mhz - r.requested_mhz) > 1e-3:
        notes.append(
            f"The PLL cannot make exactly {r.requested_mhz:g} MHz; it runs at {r.clock_mhz:g} MHz."
        )
    timing = _timing_note(r)
    if timing:
        notes.append(timing)
    link = plan_link(get_board(r.board), plan_clock(get_board(r.board), r.requested_mhz))
    if link is None:
        notes.append(
            "The board shell drives the accelerator's streams from an LFSR and shows a signature "
            "of its output on the LEDs: the bitstream proves timing and resources, not host I/O."
        )
    else:
        notes.append(
            f"Host link: UART on the board's USB-serial port at {link.baud:,} baud "
            f"({link.actual_baud:,.0f} on the FPGA, {link.baud_error:+.2%}); load it with "
            f"`netfabric program --board {r.board}`, run it with "
            "`netfabric run GRAPH --backend fpga --port PORT`."
        )
    return notes
