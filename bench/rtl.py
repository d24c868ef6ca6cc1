"""RTL backend measurements for every shipped model: cycles per frame measured in simulation
beside the registry's model and FINN's estimate, the simulators' speed, and the open flow from
the model to a bitstream (Fmax per nextpnr seed, resources predicted before synthesis vs
reported by nextpnr, block RAM beside FINN's estimate, wall time).

    python bench/rtl.py [--quick] [--no-bitstream] [--only MODEL ...] [--jobs N]

Peers: FINN's `exp_cycles_per_layer` and its BRAM_18K/LUT estimates for the same folding
(FINN's ops only: the transformer's Segment* ops are netfabric's), nextpnr's utilisation and
timing report. "ideal" and "registry model" are netfabric's own formulas, shown for context.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import multiprocessing
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import (  # noqa: E402
    BENCH,
    BenchArgs,
    machine,
    own_output,
    provenance,
    say,
    write_json,
    write_section,
)

# name: (checkpoint, target frames/s at 100 MHz, frames to simulate)
MODELS = {
    "mlp": ("mlp_w8a8.pt", 100_000, 100),
    "cnn": ("cnn_w8a8.pt", 20_000, 20),
    "transformer": ("transformer_int8.pt", 2_000, 20),
}
# (board, model, MHz, seeds): the open boards' bitstreams; folded for the board (fit-checked)
BITSTREAMS = [("ulx3s-85f", "mlp", 100.0, 3), ("ulx3s-85f", "cnn", 100.0, 3),
              ("ulx3s-85f", "transformer", 100.0, 3), ("icebreaker", "digits", 24.0, 1)]
# longest first when builds run side by side (--jobs): the larger designs place and route longest
BUILD_ORDER = ("transformer", "cnn", "mlp", "digits")
SIM_SEED = 0  # the compiled harness's idle/backpressure seed (no stalls in these runs)


def _compile(name: str, work: Path) -> tuple[Path, dict]:
    from netfabric import flow
    from netfabric.hls.frontend import CompileConfig

    ckpt, fps, _ = MODELS[name]
    out = work / f"{name}_hw"
    if name == "transformer":
        from netfabric.hls.transformer import compile_transformer

        graph = compile_transformer(flow.PRETRAINED / ckpt, out,
                                    CompileConfig(target_fps=fps, label_select=False))
    else:
        qonnx = flow.export_checkpoint(flow.PRETRAINED / ckpt, work / f"{name}.qonnx.onnx")
        graph = flow.compile_model(qonnx, out, CompileConfig(target_fps=fps))
    return graph, json.loads((out / "estimates.json").read_text())


def cycles_and_speed(name: str, work: Path, quick: bool) -> dict:
    from netfabric.host.sim_backend import SimBackend
    from netfabric.models.data import load_mnist

    _, fps, frames = MODELS[name]
    frames = max(5, frames // 5) if quick else frames
    graph, est = _compile(name, work)
    x = load_mnist("test")[0][:frames, None]
    finn_res = est.get("finn_total_resources") or {}
    row: dict = {"model": name, "frames": frames, "target_fps": fps,
                 "registry_cycles": est["bottleneck_cycles"],
                 "finn_estimate": est.get("finn_bottleneck_cycles"),
                 "finn_covers_all_ops": name != "transformer",
                 "finn_bram_18k": finn_res.get("BRAM_18K"), "finn_lut": finn_res.get("LUT")}
    engines = [("compiled", "verilator")] + ([("cocotb", "verilator")] if name == "mlp" else [])
    if shutil.which("iverilog") and name == "mlp":  # Icarus takes minutes a frame on the others
        engines.append(("cocotb", "icarus"))
    for engine, simulator in engines:
        n = frames if simulator == "verilator" else min(frames, 10)
        sim = SimBackend(graph, simulator=simulator, engine=engine, seed=SIM_SEED,
                         project_dir=work / f"{name}_rtl_{engine}_{simulator}")
        t0 = time.perf_counter()
        out = sim.run(x[:n])
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        sim.run(x[:n])  # build cached: this is simulation (plus a fixed start-up)
        run = time.perf_counter() - t0
        key = f"{engine}_{simulator}"
        row[f"{key}_build_s"] = round(first - run, 1)
        row[f"{key}_cycles_per_s"] = round(sim.last_metrics["latency_total"] / run)
        if engine == "compiled":
            row["measured"] = sim.last_metrics["interval"]
            row["ideal"] = sim.manifest["ideal_cycles_per_frame"]
            row["first_frame_latency"] = sim.last_metrics["first_frame_latency"]
            compiled_out = out
        elif not _same(out, compiled_out[:n]):
            raise SystemExit(f"{name}: {key} differs from the compiled harness")
    from netfabric.host.cpu_engine import CpuEngine

    row["bit_exact_vs_cpu_engine"] = _same(compiled_out, CpuEngine(graph).run(x))
    say({k: v for k, v in row.items()})
    return row


def _same(a, b) -> bool:
    import numpy as np

    return np.array_equal(np.asarray(a).reshape(np.asarray(b).shape), np.asarray(b))


def open_flow(board: str, model: str, mhz: float, seeds: int, work: Path,
              collect: bool = False, seed_jobs: int = 1) -> dict:
    """Build one bitstream and its row; with ``collect``, the row of the build already in its
    folder (an interrupted run of this command: the row says so). ``seed_jobs``: nextpnr
    seeds placed and routed side by side."""
    from netfabric import bitstream
    from netfabric.errors import NetfabricError

    out = work / f"bit_{model}_{board}"
    t0 = time.perf_counter()
    row: dict = {"board": board, "model": model, "target_mhz": mhz, "seeds": seeds}
    rep = None
    if collect:
        report = out / "bitstream" / "report.json"
        row["collected"] = True
        rep = json.loads(report.read_text()) if report.is_file() else _finished_seeds(out, board)
        if rep is None:
            row["error"] = "no finished build in " + str(out)
            row["wall_s"] = 0.0
        else:
            row["wall_s"] = round(sum(rep.get("steps", {}).values()), 1)
            row["seeds_finished"] = len(rep.get("seed_runs") or [1])
    else:
        try:
            rep = bitstream.build(model, board, mhz, out, seeds=seeds,
                                  jobs=min(seed_jobs, seeds))["report"]
        except NetfabricError as exc:  # e.g. refused before synthesis: the numbers are the result
            row["error"] = str(exc).splitlines()[0]
        row["wall_s"] = round(time.perf_counter() - t0, 1)
    if rep is not None:
        row["fmax_mhz"] = rep.get("fmax_mhz")
        runs = rep.get("seed_runs") or [{"seed": rep.get("seed", 1), "fmax_mhz": rep.get("fmax_mhz")}]
        row["fmax_per_seed"] = {str(r["seed"]): r["fmax_mhz"] for r in runs}
        fs = [r["fmax_mhz"] for r in runs if r["fmax_mhz"] is not None]
        if fs:
            row["fmax_min"], row["fmax_median"], row["fmax_max"] = \
                min(fs), statistics.median(fs), max(fs)
        row["timing_met"] = rep.get("timing_met")
        if row.get("seeds_finished", seeds) < seeds:  # unknown: a seed never finished
            row["timing_met_on_finished_seeds"] = row.pop("timing_met")
            row["timing_met"] = None
        row["resources"] = {r["kind"]: f"{r['used']}/{r['available']}"
                            for r in rep.get("resources", [])}
        row["bram"] = next((r["used"] for r in rep.get("resources", []) if r["kind"] == "BRAM"), None)
        row["predicted_vs_reported"] = rep.get("predicted") or {}
        if collect:
            # the fit model of this commit on the build's own layers: a model improved after
            # the build is judged on it, not the build-time prediction in its report
            row["predicted_vs_reported"] = (_predict_now(out, board, rep)
                                            or row["predicted_vs_reported"])
        steps = rep.get("steps", {})
        row["steps_s"] = {k: round(float(v), 1) for k, v in steps.items()}
        # CPU seconds of the tools (reports since 78b69a0): the cost whatever shares the cores
        row["cpu_steps_s"] = {k: round(float(v), 1) for k, v in (rep.get("cpu_steps") or {}).items()}
        row["pnr_per_seed"] = {str(r["seed"]): {"cpu_s": r.get("cpu_seconds"), **r.get("phases", {})}
                               for r in rep.get("seed_runs") or [] if r.get("cpu_seconds")}
    est = out / "hw" / "estimates.json"
    if est.is_file():
        e = json.loads(est.read_text())
        row["cycles_per_frame"] = e.get("bottleneck_cycles")
        row["finn_bram_18k"] = (e.get("finn_total_resources") or {}).get("BRAM_18K")
    say(row)
    return row


def _predict_now(out: Path, board: str, rep: dict) -> dict:
    """hw/flow/fit.py's prediction at this commit for the build's stitched layers, beside
    what nextpnr reported for it; {} without the build's manifest."""
    from netfabric.hw.flow.fit import compare, predict

    manifest = out / "rtl" / "manifest.json"
    if not manifest.is_file():
        return {}
    layers = json.loads(manifest.read_text())["layers"]
    return compare(predict(layers, board), {r["kind"]: r["used"] for r in rep.get("resources", [])})


def _finished_seeds(out: Path, board: str) -> dict | None:
    """A report (as report.json) from the seeds a stopped build finished: Fmax per seed and
    nextpnr's utilisation of the last; None when no seed finished."""
    from netfabric.hw.flow import get_board
    from netfabric.hw.flow.fit import compare
    from netfabric.hw.flow.report import parse_clocks, parse_synth_stat, parse_utilization

    work = out / "bitstream" / "work"
    runs, last = [], None
    for f in sorted(work.glob("pnr_report_seed*.json"),
                    key=lambda f: int(f.stem.rsplit("seed", 1)[1])):
        last = json.loads(f.read_text())
        clocks = parse_clocks(last)
        worst = min((c.achieved_mhz for c in clocks), default=None)
        runs.append({"seed": int(f.stem.rsplit("seed", 1)[1]), "fmax_mhz": worst,
                     "met": bool(clocks) and all(c.met for c in clocks)})
    if last is None:
        return None
    stat = work / "synth_stat.json"
    cells = parse_synth_stat(json.loads(stat.read_text())) if stat.is_file() else {}
    res = parse_utilization(last, get_board(board).family, cells)
    est = out / "hw" / "estimates.json"
    pred = (json.loads(est.read_text()).get("folding", {}).get("board") or {}).get(
        "predicted", {}) if est.is_file() else {}
    return {"fmax_mhz": max(r["fmax_mhz"] for r in runs), "seed_runs": runs,
            "timing_met": all(r["met"] for r in runs),
            "resources": [{"kind": r.kind, "used": r.used, "available": r.available} for r in res],
            "predicted": compare(pred, {r.kind: r.used for r in res})}


def _previous_rows(part: str = "open_flow") -> dict:
    """The rows of the last recorded run (bench/results/rtl.json), each with the commit it was
    measured at (``reused_from``): ``part`` "open_flow" keyed by (board, model), what --collect
    keeps, marked, for a bitstream with no build folder here; "simulation" keyed by model."""
    path = BENCH / "results" / "rtl.json"
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    found = re.search(r"commit (\S+)", data.get("provenance", ""))
    commit = found.group(1) if found else "an earlier commit"
    rows = [{**r, "reused_from": r.get("reused_from", commit)}
            for r in data.get(part, []) if "error" not in r]
    if part == "simulation":
        return {r["model"]: r for r in rows}
    return {(r["board"], r["model"]): r for r in rows}


def keep_other_rows(sims: list[dict], flows: list[dict],
                    bitstreams: bool) -> tuple[list[dict], list[dict]]:
    """With --only: the other models' rows of the last recorded run, marked with the commit
    they were measured at, in the tables' usual order (a partial run rewrites the section
    without losing them)."""
    old_sims, old_flows = _previous_rows("simulation"), _previous_rows("open_flow")
    sims = [next((r for r in sims if r["model"] == m), None) or old_sims.get(m)
            for m in MODELS]
    if bitstreams:
        flows = [next((r for r in flows if (r["board"], r["model"]) == b[:2]), None)
                 or old_flows.get(b[:2]) for b in BITSTREAMS]
    return [r for r in sims if r], [r for r in flows if r]


def build_all(builds: list[tuple], work: Path, jobs: int, collect: bool = False) -> list[dict]:
    """open_flow for each (board, model, MHz, seeds), ``jobs`` at a time in fresh processes
    (spawned: the parent has run torch and the simulators); rows in the order given. With
    ``collect``, a bitstream with no build folder keeps its row of the last recorded run,
    marked with the commit it was measured at."""
    if collect:
        previous = _previous_rows()
        rows = [open_flow(*b, work, collect=True) for b in builds]
        return [previous.get((b[0], b[1]), r) if "error" in r else r
                for b, r in zip(builds, rows, strict=True)]
    if jobs <= 1 or len(builds) == 1:  # one build: its seeds side by side instead
        return [open_flow(*b, work, seed_jobs=jobs) for b in builds]
    order = sorted(builds, key=lambda b: BUILD_ORDER.index(b[1]))
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
        futures = {b: pool.submit(open_flow, *b, work) for b in order}
        return [futures[b].result() for b in builds]


def plot_fmax(flows: list[dict], path: Path) -> bool:
    """Fmax of every nextpnr seed beside each bitstream's target clock; False if no build has
    one (nothing written)."""
    rows = [r for r in flows if r.get("fmax_per_seed")]
    if not rows:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.6 + 1.6 * len(rows), 4.0))
    for i, r in enumerate(rows):
        seeds = sorted(((int(k), f) for k, f in r["fmax_per_seed"].items() if f is not None))
        for k, (seed, f) in enumerate(seeds):
            x = i + (k - (len(seeds) - 1) / 2) * 0.22  # seeds side by side
            ratio = f / r["target_mhz"]
            ax.scatter([x], [ratio], color="tab:green" if ratio >= 1 else "tab:red", zorder=3,
                       s=36)
            ax.annotate(f"{f:.1f}\ns{seed}", (x, ratio), xytext=(0, 6), ha="center",
                        textcoords="offset points", fontsize=7)
    ax.axhline(1.0, color="black", linestyle="--", zorder=2, label="target clock")
    ax.set_xticks(range(len(rows)),
                  [f"{r['model']}\n{r['board']}\n{r['target_mhz']:g} MHz target" for r in rows])
    ax.set_xlim(-0.6, len(rows) - 0.4)
    ax.set_ylabel("Fmax / target clock")
    ax.set_title("Fmax per nextpnr seed (MHz and seed above each dot)")
    ax.margins(y=0.2)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _fmt(v, spec: str = ",") -> str:
    return "-" if v is None else format(v, spec)


def markdown(cmd: str, sims: list[dict], flows: list[dict], note: str = "") -> str:
    lines = ["## RTL backend: cycles per frame, simulator speed, open flow", "",
             f"Command: `{cmd}`. Cycles at steady state between frame completions, measured "
             "in the compiled Verilator harness (no stalls) and bit-exact with the CPU engine on "
             "the same frames; FINN estimate = FINN's `exp_cycles_per_layer` bottleneck for the "
             "same folding (the transformer's: FINN's ops only, its attention ops are "
             "netfabric's); ideal and registry model are netfabric's own formulas. Simulator "
             "cycles/s are whole `SimBackend.run` calls with the build cached, so short runs "
             "(20 frames) include the simulator's fixed start-up.", "",
             "| model | frames | measured | FINN estimate | registry model | ideal | first-frame "
             "latency | = CPU engine | compiled cycles/s | cocotb cycles/s | Icarus cycles/s |",
             "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|"]
    for r in sims:
        finn = _fmt(r["finn_estimate"]) + ("" if r["finn_covers_all_ops"] else " (FINN ops)")
        model = r["model"] + (f" (not rerun: row of {r['reused_from']})"
                              if r.get("reused_from") else "")
        lines.append(
            f"| {model} | {r['frames']} | {r['measured']:,.0f} | {finn} | "
            f"{r['registry_cycles']:,} | {r['ideal']:,} | {r['first_frame_latency']:,} | "
            f"{'yes' if r['bit_exact_vs_cpu_engine'] else 'NO'} | "
            f"{_fmt(r.get('compiled_verilator_cycles_per_s'))} | "
            f"{_fmt(r.get('cocotb_verilator_cycles_per_s'))} | "
            f"{_fmt(r.get('cocotb_icarus_cycles_per_s'))} |")
    if flows:
        lines += ["", "Open flow, shipped model -> bitstream (Yosys + nextpnr via YoWASP, 2 cores), "
                  "folded for the board; Fmax per nextpnr seed, timing met only if every seed "
                  "met it; predicted = hw/flow/fit.py before synthesis (on a collected row: the "
                  "model of the commit below, on the build's own layers):", "",
                  "| board | model | cycles/frame | target MHz | Fmax min / median / max (seeds) | "
                  "timing | BRAM (FINN BRAM_18K est.) | resources (used/available) | "
                  "predicted vs reported | wall s (CPU s) |",
                  "|---|---|---:|---:|---|---|---|---|---|---:|"]
        for r in flows:
            if "error" in r:
                lines.append(f"| {r['board']} | {r['model']} | {_fmt(r.get('cycles_per_frame'))} | "
                             f"{r['target_mhz']:g} | - | {'' if r.get('collected') else 'refused: '}"
                             f"{r['error']} | - | - | - | "
                             f"{r['wall_s']} |")
                continue
            fmax = (f"{r['fmax_min']:.1f} / {r['fmax_median']:.1f} / {r['fmax_max']:.1f} "
                    f"({len(r['fmax_per_seed'])})" if r.get("fmax_min") else "-")
            res = ", ".join(f"{k} {v}" for k, v in r.get("resources", {}).items())
            pvr = ", ".join(f"{k} {round(c['predicted']):,}/{c['reported']:,}"
                            + (f" ({100 * c['error']:+.0f}%)" if c.get("error") is not None else "")
                            for k, c in r.get("predicted_vs_reported", {}).items())
            wall = f"{r['wall_s']}" + (" (collected)" if r.get("collected") else "")
            if r.get("collected") and r.get("seeds_finished", r["seeds"]) < r["seeds"]:
                wall = f"- (stopped: {r['seeds_finished']} of {r['seeds']} seeds finished)"
            if r.get("reused_from"):
                wall = f"- (not rebuilt: row of {r['reused_from']})"
            cpu = r.get("cpu_steps_s") or {}
            if cpu and not r.get("reused_from"):
                seeds = max(1, len(r.get("fmax_per_seed") or {}))
                wall += (f"; CPU s: synth {cpu.get('synth', 0):,.0f}, nextpnr "
                         f"{cpu.get('pnr', 0) / seeds:,.0f} per seed")
            timing = "met" if r.get("timing_met") else "NOT met"
            if "timing_met_on_finished_seeds" in r:
                timing = (f"{'met' if r['timing_met_on_finished_seeds'] else 'NOT met'} on the "
                          f"{r['seeds_finished']} finished seeds of {r['seeds']}")
            lines.append(
                f"| {r['board']} | {r['model']} | {_fmt(r.get('cycles_per_frame'))} | "
                f"{r['target_mhz']:g} | {fmax} | {timing} | "
                f"{_fmt(r.get('bram'))} ({_fmt(r.get('finn_bram_18k'))}) | {res} | {pvr or '-'} | "
                f"{wall} |")
    if note:
        lines += ["", note]
    return "\n".join(lines)


def main() -> None:
    ap = BenchArgs(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer frames")
    ap.add_argument("--no-bitstream", action="store_true")
    ap.add_argument("--only", nargs="+", choices=sorted(MODELS) + ["digits"],
                    help="these models only")
    ap.add_argument("--collect", action="store_true",
                    help="no builds: the rows of the bitstreams already built in build/bench_rtl "
                         "(a run stopped after its builds finished; each row is marked)")
    ap.add_argument("--note", default="",
                    help="a paragraph printed under the tables (e.g. which commit each collected "
                         "build was made at)")
    ap.add_argument("--jobs", type=int, default=1,
                    help="bitstreams built side by side (Yosys and nextpnr use one core each)")
    args = ap.parse_args()
    work = Path("build") / "bench_rtl"  # kept: the bitstreams and reports are worth opening
    work.mkdir(parents=True, exist_ok=True)
    wanted = set(args.only or [*MODELS, "digits"])
    with tempfile.TemporaryDirectory(prefix="sim-", dir=work) as tmp:
        sims = [cycles_and_speed(m, Path(tmp), args.quick) for m in MODELS if m in wanted]
    flows = [] if args.no_bitstream else build_all(
        [b for b in BITSTREAMS if b[1] in wanted], work, args.jobs, args.collect)
    if args.only:
        sims, flows = keep_other_rows(sims, flows, not args.no_bitstream)
    argv = sys.argv[1:]
    if "--note" in argv:  # the note is printed under the tables, not in the command line
        i = argv.index("--note")
        argv = argv[:i] + argv[i + 2:]
    cmd = "python bench/rtl.py" + "".join(f" {a}" for a in argv)
    named = {r["model"]: {"measured_cycles": r["measured"], "finn_estimate_cycles": r["finn_estimate"],
                          "compiled_cycles_per_s": r.get("compiled_verilator_cycles_per_s")}
             for r in sims}
    for r in flows:
        named.setdefault(r["model"], {}).update(
            {f"{r['board']}_fmax_per_seed": r.get("fmax_per_seed"),
             f"{r['board']}_bram": r.get("bram"), "finn_bram_18k": r.get("finn_bram_18k")})
    write_json("rtl", {"command": cmd, "provenance": provenance(), "machine": machine(),
                       "sim_seed": SIM_SEED, "named": named, "simulation": sims,
                       "open_flow": flows})
    section = markdown(cmd, sims, flows, args.note)
    if plot_fmax(flows, BENCH / "results" / "rtl_fmax.png"):
        section += "\n\n![Fmax per seed](results/rtl_fmax.png)"
    write_section("rtl", section)


if __name__ == "__main__":
    with own_output():
        main()
