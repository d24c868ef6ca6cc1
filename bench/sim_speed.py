"""Simulator speed on the stitched MLP: simulated cycles per second of the cocotb testbench on
Verilator vs the compiled harness (Verilator + C++ testbench, no Python per cycle), builds
cached (each engine runs once untimed first), each timed run repeated (the table holds the
median run, the JSON every run). Wall-clock rates depend on what else the machine runs; the
CPU-time rates (the simulator process's user time) less so, though a neighbour on the same
physical core slows both.

    python bench/sim_speed.py [--cocotb-frames 200] [--compiled-frames 10000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import BenchArgs, machine, own_output, say, write_json, write_section  # noqa: E402


def measure(graph: Path, project: Path, engine: str, x, repeats: int) -> dict:
    """The median of ``repeats`` timed runs (by wall-clock rate), with every run's rates."""
    from netfabric.host.sim_backend import SimBackend

    sim = SimBackend(graph, project_dir=project, engine=engine)
    t0 = time.perf_counter()
    sim.run(x[:3])  # builds (or finds the cached build)
    build = time.perf_counter() - t0
    runs, outs = [], []
    for _ in range(repeats):
        cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime
        t0 = time.perf_counter()
        outs.append(sim.run(x))
        wall = time.perf_counter() - t0
        cpu = resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime - cpu0
        m = sim.last_metrics
        runs.append({"frames": len(x), "cycles": m["cycles"], "interval": m["interval"],
                     "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
                     "cycles_per_s": round(m["cycles"] / wall),
                     "cycles_per_cpu_s": round(m["cycles"] / cpu),
                     "load_avg": round(os.getloadavg()[0], 2)})
        say({**runs[-1], "engine": engine})
    if any(not np.array_equal(out, outs[0]) for out in outs[1:]):
        raise AssertionError(f"{engine}: repeated runs disagree")
    rates = [r["cycles_per_s"] for r in runs]
    median = sorted(runs, key=lambda r: r["cycles_per_s"])[len(runs) // 2]
    return {"engine": engine, **median, "first_run_s": round(build, 1),
            "cycles_per_s_min": min(rates), "cycles_per_s_max": max(rates), "runs": runs,
            "_out": outs[0]}


def main() -> None:
    ap = BenchArgs(description=__doc__,
                   formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cocotb-frames", type=int, default=200)
    ap.add_argument("--compiled-frames", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per engine (median)")
    args = ap.parse_args()
    if args.repeats < 1 or args.cocotb_frames < 3 or args.compiled_frames < 3:
        ap.error("--repeats must be at least 1, and each --*-frames at least 3 (the steady "
                 "interval needs 3 frames)")

    from netfabric import flow
    from netfabric.hls.frontend import CompileConfig
    from netfabric.models.data import load_mnist

    x = load_mnist("test")[0][:, None]
    with tempfile.TemporaryDirectory(prefix="nf-sim-speed-") as tmp:
        work = Path(tmp)
        qonnx = flow.export_checkpoint(flow.DEFAULT_CHECKPOINT, work / "mlp.qonnx.onnx")
        graph = flow.compile_model(qonnx, work / "mlp_hw", CompileConfig(target_fps=100_000))
        rows = [measure(graph, work / "rtl", "cocotb", x[:args.cocotb_frames], args.repeats),
                measure(graph, work / "rtl", "compiled", x[:args.compiled_frames], args.repeats)]
    n = min(r["frames"] for r in rows)
    assert np.array_equal(rows[0].pop("_out")[:n], rows[1].pop("_out")[:n]), "engines disagree"
    speedup = rows[1]["cycles_per_s"] / rows[0]["cycles_per_s"]
    cmd = (f"python bench/sim_speed.py --cocotb-frames {args.cocotb_frames} "
           f"--compiled-frames {args.compiled_frames} --repeats {args.repeats}")
    write_json("sim_speed", {"command": cmd, "machine": machine(), "model": "mlp (100k fps)",
                             "runs": rows, "speedup_wall": round(speedup, 1)})
    lines = ["## Simulator speed: cocotb vs the compiled harness (stitched MLP, Verilator)", "",
             f"Command: `{cmd}`. Simulated cycles per second of wall time (the whole "
             "`SimBackend.run`, build cached) and per second of the simulator's CPU time, the "
             f"median of {args.repeats} runs (by wall rate) with the range of the wall rate over "
             "them; the machine's 1-minute load average at the end of the median run for "
             f"context. Both engines' outputs agree bit for bit on the first {n} frames, and "
             "every run of an engine with its others.", "",
             "| engine | frames | cycles | cycles/frame | wall s | cycles/s (wall) | "
             "range (wall) | cycles/s (CPU) | load |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['engine']} | {r['frames']:,} | {r['cycles']:,} | {r['interval']:.0f} "
                     f"| {r['wall_s']} | {r['cycles_per_s']:,} | {r['cycles_per_s_min']:,} – "
                     f"{r['cycles_per_s_max']:,} | {r['cycles_per_cpu_s']:,} | {r['load_avg']} |")
    lines += ["", f"Compiled harness: {speedup:.1f}x the cocotb testbench's rate (wall)."]
    write_section("sim_speed", "\n".join(lines))


if __name__ == "__main__":
    with own_output():
        main()
