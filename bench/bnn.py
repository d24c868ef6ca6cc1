"""BNN-PYNQ TFC-w1a1 and CNV-w1a1 folded like FINN's published builds, on the open ECP5 flow:
cycles per frame measured in RTL simulation (and FINN's estimate for the same folding), Fmax and
resources from the bitstream report, frames/s at the achieved clock. FINN's published
throughput is the anchor.

    python bench/bnn.py [--model tfc_1w1a|cnv_1w1a] [--frames N] [--freq MHZ] [--no-bitstream]

The networks are ``brevitas_examples.bnn_pynq``'s with random weights (calibrated
BatchNorm/TensorNorm statistics; the pretrained checkpoints need a download): throughput,
resources and Fmax do not depend on the weight values beyond the logic Yosys can simplify.
Both end in FINN's LabelSelect, as FINN builds them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "tests"))
from _report import BenchArgs, machine, own_output, say, write_json, write_section  # noqa: E402

# finn-examples build/bnn-pynq/folding_config/<model>_folding_config.json. Node names there are
# FINN's ``*_hls_N``, netfabric's ``*_N``; netfabric's Thresholding has no ram_style. FINN's CNV
# pools with StreamingMaxPool, netfabric's with a window generator + Pool at full channel
# parallelism (their defaults), so FINN's conv window generators 0..5 are netfabric's 0, 1, 3,
# 4, 6, 7.
FINN_FOLDING = {
    "tfc_1w1a": {
        "Defaults": {},
        "Thresholding_0": {"PE": 49},
        "MVAU_0": {"PE": 16, "SIMD": 49, "ram_style": "block"},
        "MVAU_1": {"PE": 8, "SIMD": 8, "ram_style": "auto"},
        "MVAU_2": {"PE": 8, "SIMD": 8, "ram_style": "auto"},
        "MVAU_3": {"PE": 10, "SIMD": 8, "ram_style": "distributed"},
        "LabelSelect_0": {"PE": 1},
    },
    "cnv_1w1a": {
        "Defaults": {},
        "Thresholding_0": {"PE": 1},
        "ConvolutionInputGenerator_0": {"SIMD": 3},
        "MVAU_0": {"PE": 16, "SIMD": 3},
        "ConvolutionInputGenerator_1": {"SIMD": 32},
        "MVAU_1": {"PE": 32, "SIMD": 32},
        "ConvolutionInputGenerator_3": {"SIMD": 32},
        "MVAU_2": {"PE": 16, "SIMD": 32},
        "ConvolutionInputGenerator_4": {"SIMD": 32},
        "MVAU_3": {"PE": 16, "SIMD": 32},
        "ConvolutionInputGenerator_6": {"SIMD": 32},
        "MVAU_4": {"PE": 4, "SIMD": 32},
        "ConvolutionInputGenerator_7": {"SIMD": 32},
        "MVAU_5": {"PE": 1, "SIMD": 32},
        "MVAU_6": {"PE": 1, "SIMD": 4},
        "MVAU_7": {"PE": 1, "SIMD": 8},
        "MVAU_8": {"PE": 5, "SIMD": 1},
        "LabelSelect_0": {"PE": 1},
    },
}
# FINN's published number (finn-examples, BNN-PYNQ TFC-w1a1 on the AUP-ZU3 board)
FINN_PUBLISHED = {"tfc_1w1a": {"board": "AUP-ZU3 (Zynq UltraScale+)", "images_per_s": 1.09e6}}


def finn_name(model: str) -> str:
    """brevitas_examples' ``tfc_1w1a`` is FINN's ``tfc-w1a1``."""
    net, bits = model.split("_")
    return f"{net}-w{bits[0]}a{bits[2]}"


def inputs(model: str, frames: int) -> np.ndarray:
    """MNIST test images for the FC networks; CIFAR-shaped random pixels for CNV (throughput
    and bit-exactness do not depend on the image content)."""
    if model.startswith("cnv"):
        from test_byom import cifar_like

        return cifar_like(frames)
    from netfabric.models.data import load_mnist

    return load_mnist("test")[0][:frames, None]


def simulate(graph: Path, work: Path, x: np.ndarray, simulator: str) -> dict:
    from netfabric.host.cpu_engine import CpuEngine
    from netfabric.host.sim_backend import SimBackend

    want = CpuEngine(graph).run(x)
    sim = SimBackend(graph, simulator=simulator, project_dir=work / "rtl_sim")
    t0 = time.perf_counter()
    out = sim.run(x)
    wall = time.perf_counter() - t0
    exact = bool(np.array_equal(np.asarray(out).reshape(-1), np.asarray(want).reshape(-1)))
    m = sim.last_metrics
    return {"simulator": simulator, "frames": len(x), "bit_exact_vs_cpu_engine": exact,
            "measured_cycles_per_frame": m["interval"],
            "ideal_cycles_per_frame": sim.manifest["ideal_cycles_per_frame"],
            "first_frame_latency": m["first_frame_latency"], "sim_wall_s": round(wall, 1)}


def build(graph: Path, work: Path, args, cycles: float) -> dict:
    """The bitstream (or the last one, with --reuse-bitstream): Fmax, resources, frames/s."""
    from netfabric import bitstream

    out = work / f"bit_{args.board}"
    t0 = time.perf_counter()
    if args.reuse_bitstream and (out / "summary.json").is_file():
        summary = json.loads((out / "summary.json").read_text())
    else:
        summary = bitstream.build(args.model, args.board, args.freq, out,
                                  graph=graph)
    row = {"board": args.board, "target_mhz": args.freq,
           "wall_s": summary.get("seconds_total", round(time.perf_counter() - t0, 1)),
           "fmax_mhz": summary.get("fmax_mhz"), "timing_met": summary.get("timing_met")}
    report = out / "bitstream" / "report.json"
    if report.is_file():
        rep = json.loads(report.read_text())
        row["resources"] = {r["kind"]: f"{r['used']}/{r['available']}"
                            for r in rep.get("resources", [])}
    fmax = row["fmax_mhz"]
    if fmax:
        # the design runs at min(Fmax, target) when timing is met at the target clock
        clock = min(fmax, args.freq) if row["timing_met"] else fmax
        row["clock_mhz_for_fps"] = round(clock, 2)
        row["frames_per_s"] = round(clock * 1e6 / cycles)
        row["frames_per_s_at_fmax"] = round(fmax * 1e6 / cycles)
    return row


def main() -> None:
    ap = BenchArgs(description=__doc__,
                   formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=sorted(FINN_FOLDING), default="tfc_1w1a")
    ap.add_argument("--frames", type=int, default=None,
                    help="images simulated (default: 50 for TFC, 4 for CNV)")
    ap.add_argument("--freq", type=float, default=100.0, help="target clock (MHz)")
    ap.add_argument("--board", default="ulx3s-85f")
    ap.add_argument("--simulator", default="verilator")
    ap.add_argument("--no-bitstream", action="store_true")
    ap.add_argument("--reuse-bitstream", action="store_true",
                    help="take Fmax/resources from the last build (build/bench_bnn_MODEL/bit_BOARD)")
    args = ap.parse_args()
    frames = args.frames or (4 if args.model.startswith("cnv") else 50)

    from test_byom import PIXELS, bnn_pynq_qonnx

    from netfabric import flow
    from netfabric.hls.frontend import CompileConfig

    folding_want = FINN_FOLDING[args.model]
    work = ROOT / "build" / f"bench_bnn_{args.model}"  # kept: the bitstream and its report
    work.mkdir(parents=True, exist_ok=True)
    folding = work / "folding_finn_examples.json"
    folding.write_text(json.dumps(folding_want, indent=2))
    qonnx = bnn_pynq_qonnx(args.model, work / f"{args.model}.onnx")
    t0 = time.perf_counter()
    graph = flow.compile_model(qonnx, work / "hw", CompileConfig(
        input_scale=PIXELS, clock_mhz=args.freq, folding_json=folding))
    compile_s = round(time.perf_counter() - t0, 1)
    est = json.loads((work / "hw" / "estimates.json").read_text())
    got_folding = json.loads((work / "hw" / "folding.json").read_text())
    for name, want in folding_want.items():
        for key in ("PE", "SIMD"):
            if key in want and got_folding.get(name, {}).get(key) != want[key]:
                raise SystemExit(f"{name}.{key}: folding not applied ({got_folding.get(name)})")
    row: dict = {"model": f"{args.model} (brevitas_examples.bnn_pynq, random weights)",
                 "folding": f"finn-examples {finn_name(args.model)}_folding_config.json",
                 "compile_s": compile_s,
                 "finn_bottleneck_cycles": est["finn_bottleneck_cycles"],
                 "netfabric_bottleneck_cycles": est["bottleneck_cycles"]}
    row.update(simulate(graph, work, inputs(args.model, frames), args.simulator))
    say(row)
    flow_row = {} if args.no_bitstream else build(graph, work, args,
                                                  row["measured_cycles_per_frame"])
    say(flow_row)

    cmd = "python bench/bnn.py" + \
        (f" --model {args.model}" if args.model != "tfc_1w1a" else "") + \
        (f" --frames {args.frames}" if args.frames else "") + \
        (f" --freq {args.freq:g}" if args.freq != 100.0 else "") + \
        (" --no-bitstream" if args.no_bitstream else "") + \
        (" --reuse-bitstream" if args.reuse_bitstream else "")
    write_json(f"bnn_{args.model}", {"command": cmd, "machine": machine(), "simulation": row,
                                     "open_flow": flow_row,
                                     "finn_published": FINN_PUBLISHED.get(args.model)})
    write_section(f"bnn_{args.model}", report(args, cmd, row, flow_row))


def report(args, cmd: str, row: dict, flow_row: dict) -> str:
    data = "MNIST test images" if args.model.startswith("tfc") else "random 32x32x3 pixel images"
    title = finn_name(args.model).upper().replace("-W", "-w").replace("A1", "a1")
    lines = [f"## BNN-PYNQ {title}, folded like FINN's build, on ECP5", "",
             f"Command: `{cmd}`. `{args.model}` from `brevitas_examples.bnn_pynq` (random "
             "weights, calibrated BatchNorm/TensorNorm), compiled with `--input-scale 1/255` and "
             f"FINN's folding from finn-examples ({row['folding'].split()[-1]}), ending in "
             "FINN's LabelSelect. Cycles per frame measured at steady state in "
             f"{row['simulator'].capitalize()} simulation over {row['frames']} {data} (labels "
             f"{'bit-exact' if row['bit_exact_vs_cpu_engine'] else 'NOT equal'} to the CPU "
             "engine's).", "",
             "| measured cycles/frame | ideal | FINN estimate (`finn_bottleneck_cycles`) | "
             "first-frame latency | Fmax MHz (1 seed) | target MHz | timing | "
             "frames/s at the built clock | frames/s at Fmax | resources (used/available) | "
             "QONNX -> bitstream s |",
             "|---:|---:|---:|---:|---:|---:|---|---:|---:|---|---:|"]
    fmax = flow_row.get("fmax_mhz")
    res = ", ".join(f"{k} {v}" for k, v in flow_row.get("resources", {}).items()) or "-"
    fps = flow_row.get("frames_per_s")
    lines.append(
        f"| {row['measured_cycles_per_frame']:.0f} | {row['ideal_cycles_per_frame']} | "
        f"{row['finn_bottleneck_cycles']} | {row['first_frame_latency']} | "
        f"{f'{fmax:.1f}' if fmax else '-'} | {args.freq:g} | "
        f"{('met' if flow_row.get('timing_met') else 'not met') if flow_row else '-'} | "
        f"{format(fps, ',') if fps else '-'} | "
        f"{format(flow_row['frames_per_s_at_fmax'], ',') if fps else '-'}"
        f" | {res} | {flow_row.get('wall_s', '-')} |")
    lines += ["", "frames/s = clock / measured cycles per frame; at the built clock (the target, "
              "when timing is met) and at the reported Fmax (one nextpnr seed; a rebuild at that "
              "clock is not guaranteed to close)."]
    anchor = FINN_PUBLISHED.get(args.model)
    if anchor:
        lines += ["", f"Anchor (FINN's published number, not measured here): {title} at "
                  f"{anchor['images_per_s'] / 1e6:.2f}M images/s on an {anchor['board']} board."]
    return "\n".join(lines)


if __name__ == "__main__":
    with own_output():
        main()
