"""RTL backend measurements: cycles per frame (measured in simulation, ideal for the folding,
FINN's estimate), simulator speed (Verilator vs Icarus), and the open flow from QONNX to
bitstream (wall time, resources, Fmax per board).

    python bench/rtl.py [--quick] [--no-bitstream]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine, write_json, write_section  # noqa: E402

MODELS = {  # name: (checkpoint, target frames/s at 100 MHz, frames to simulate)
    "mlp": ("mlp_w8a8.pt", 100_000, 100),
    "cnn": ("cnn_w8a8.pt", 20_000, 20),
}
BOARDS = [("ulx3s-85f", "mlp", 100.0), ("icebreaker", "digits", 24.0)]


def cycles_and_speed(name: str, work: Path, quick: bool) -> dict:
    from netfabric import flow
    from netfabric.hls.frontend import CompileConfig
    from netfabric.host.sim_backend import SimBackend
    from netfabric.models.data import load_mnist

    ckpt, fps, frames = MODELS[name]
    frames = max(5, frames // 5) if quick else frames
    qonnx = flow.export_checkpoint(flow.PRETRAINED / ckpt, work / f"{name}.qonnx.onnx")
    graph = flow.compile_model(qonnx, work / f"{name}_hw", CompileConfig(target_fps=fps))
    est = json.loads((work / f"{name}_hw" / "estimates.json").read_text())
    x = load_mnist("test")[0][:frames, None]
    row: dict = {"model": name, "frames": frames, "finn_estimate": est["finn_bottleneck_cycles"]}
    for simulator in ("verilator", "icarus"):
        if simulator == "icarus" and (shutil.which("iverilog") is None or name != "mlp"):
            continue  # Icarus: the MLP only (the CNN takes minutes per frame there)
        n = frames if simulator == "verilator" else min(frames, 10)
        sim = SimBackend(graph, simulator=simulator, project_dir=work / f"{name}_rtl")
        t0 = time.perf_counter()
        sim.run(x[:n])
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        sim.run(x[:n])  # build cached: this is simulation (plus a fixed cocotb start-up)
        run = time.perf_counter() - t0
        cycles = sim.last_metrics["latency_total"]
        row[f"{simulator}_build_s"] = round(first - run, 1)
        row[f"{simulator}_cycles_per_s"] = round(cycles / run)
        if simulator == "verilator":
            row["measured"] = sim.last_metrics["interval"]
            row["ideal"] = sim.manifest["ideal_cycles_per_frame"]
            row["first_frame_latency"] = sim.last_metrics["first_frame_latency"]
    print(row)
    return row


def open_flow(board: str, model: str, mhz: float, work: Path) -> dict:
    from netfabric import bitstream

    out = work / f"bit_{board}"
    t0 = time.perf_counter()
    rc = bitstream.build(model, board, mhz, out)
    row = {"board": board, "model": model, "target_mhz": mhz, "ok": rc == 0,
           "wall_s": round(time.perf_counter() - t0, 1)}
    report = out / "bitstream" / "report.json"
    if report.is_file():
        rep = json.loads(report.read_text())
        row["fmax_mhz"] = rep.get("fmax_mhz")
        row["timing_met"] = rep.get("timing_met")
        row["resources"] = {r["kind"]: f"{r['used']}/{r['available']}" for r in rep.get("resources", [])}
        steps = rep.get("steps", {})
        items = steps.items() if isinstance(steps, dict) else ((st["name"], st["seconds"]) for st in steps)
        row["steps_s"] = {k: round(float(v if not isinstance(v, dict) else v.get("seconds", 0)), 1)
                          for k, v in items}
    print(row)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-bitstream", action="store_true")
    ap.add_argument("--reuse-sims", action="store_true",
                    help="take the simulation rows from the last run (build/bench_rtl/sims.json)")
    args = ap.parse_args()
    work = Path("build") / "bench_rtl"  # kept: the bitstreams and reports are worth opening
    work.mkdir(parents=True, exist_ok=True)
    cache = work / "sims.json"
    if args.reuse_sims and cache.is_file():
        sims = json.loads(cache.read_text())
    else:
        with tempfile.TemporaryDirectory(prefix="sim-", dir=work) as tmp:
            sims = [cycles_and_speed(m, Path(tmp), args.quick) for m in MODELS]
        cache.write_text(json.dumps(sims))
    flows = [] if args.no_bitstream else [open_flow(b, m, f, work) for b, m, f in BOARDS]
    cmd = "python bench/rtl.py" + (" --quick" if args.quick else "") + \
        (" --no-bitstream" if args.no_bitstream else "")
    write_json("rtl", {"command": cmd, "machine": machine(), "simulation": sims, "open_flow": flows})
    lines = ["## RTL backend: cycles per frame, simulator speed, open flow", "",
             f"Command: `{cmd}`. Cycles at steady state between frame completions (Verilator, "
             "no stalls); ideal = the slowest layer's cycles for its folding; FINN estimate = "
             "FINN's `exp_cycles_per_layer` bottleneck for the same folding.", "",
             "| model | frames | measured | ideal | measured/ideal | FINN estimate | "
             "first-frame latency | Verilator cycles/s | Icarus cycles/s | Verilator build s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in sims:
        lines.append(f"| {r['model']} | {r['frames']} | {r['measured']:.0f} | {r['ideal']} | "
                     f"{r['measured'] / r['ideal']:.3f} | {r['finn_estimate']} | "
                     f"{r['first_frame_latency']} | {r.get('verilator_cycles_per_s', '-'):,} | "
                     f"{r.get('icarus_cycles_per_s', '-') if 'icarus_cycles_per_s' not in r else format(r['icarus_cycles_per_s'], ',')} | "
                     f"{r.get('verilator_build_s', '-')} |")
    if flows:
        lines += ["", "Open flow, QONNX -> bitstream (Yosys + nextpnr via YoWASP, 2 cores):", "",
                  "| board | model | target MHz | Fmax MHz | timing | resources (used/available) | "
                  "wall s (all steps) | synth / pnr / pack s |",
                  "|---|---|---:|---:|---|---|---:|---|"]
        for r in flows:
            res = ", ".join(f"{k} {v}" for k, v in r.get("resources", {}).items())
            steps = " / ".join(str(v) for v in r.get("steps_s", {}).values())
            fmax = f"{r['fmax_mhz']:.1f}" if r.get("fmax_mhz") else "-"
            met = "met" if r.get("timing_met") else "not met"
            lines.append(f"| {r['board']} | {r['model']} | {r['target_mhz']:g} | {fmax} | {met} | "
                         f"{res} | {r['wall_s']} | {steps} |")
    write_section("rtl", "\n".join(lines))


if __name__ == "__main__":
    main()
