"""BNN-PYNQ TFC-w1a1 folded like FINN's published build, on the open ECP5 flow: cycles per frame
measured in RTL simulation (and FINN's estimate for the same folding), Fmax and resources from
the bitstream report, frames/s at the achieved clock. FINN's published throughput is the anchor.

    python bench/bnn.py [--frames N] [--freq MHZ] [--no-bitstream]

The network is ``brevitas_examples.bnn_pynq`` ``tfc_1w1a`` with random weights (calibrated
BatchNorm/TensorNorm statistics; the pretrained checkpoint needs a download): throughput,
resources and Fmax do not depend on the weight values beyond the logic Yosys can simplify.
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
from _report import machine, write_json, write_section  # noqa: E402

# finn-examples build/bnn-pynq/folding_config/tfc-w1a1_folding_config.json (node names there are
# FINN's ``*_hls_N``; netfabric's are ``*_N``; netfabric's Thresholding has no ram_style, FINN's
# is "distributed")
FINN_TFC_W1A1_FOLDING = {
    "Defaults": {},
    "Thresholding_0": {"PE": 49},
    "MVAU_0": {"PE": 16, "SIMD": 49, "ram_style": "block"},
    "MVAU_1": {"PE": 8, "SIMD": 8, "ram_style": "auto"},
    "MVAU_2": {"PE": 8, "SIMD": 8, "ram_style": "auto"},
    "MVAU_3": {"PE": 10, "SIMD": 8, "ram_style": "distributed"},
}  # finn-examples ends with LabelSelect (PE 1, 10 cycles/frame): left out, see LABEL_SELECT
# With LabelSelect the last (XNOR, noActivation) MVAU keeps FINN's too-narrow outputDataType INT7
# for a popcount up to MW = 64 and the stitcher refuses the graph (StitchError, "needs UINT7 or
# INT8"); without it the accelerator outputs the 10 integer logits. LabelSelect (10 cycles/frame)
# is not the bottleneck (64 cycles/frame), so the throughput is the same.
LABEL_SELECT = False
# FINN's published number (finn-examples, BNN-PYNQ TFC-w1a1 on the AUP-ZU3 board)
FINN_PUBLISHED = {"model": "tfc-w1a1", "board": "AUP-ZU3 (Zynq UltraScale+)",
                  "images_per_s": 1.09e6, "source": "FINN / finn-examples published throughput"}


def simulate(graph: Path, work: Path, frames: int, simulator: str) -> dict:
    from netfabric.host.cpu_engine import CpuEngine
    from netfabric.host.sim_backend import SimBackend
    from netfabric.models.data import load_mnist

    x = load_mnist("test")[0][:frames, None]
    want = CpuEngine(graph).run(x)
    sim = SimBackend(graph, simulator=simulator, project_dir=work / "rtl_sim")
    t0 = time.perf_counter()
    out = sim.run(x)
    wall = time.perf_counter() - t0
    exact = bool(np.array_equal(np.asarray(out).reshape(-1), np.asarray(want).reshape(-1)))
    m = sim.last_metrics
    return {"simulator": simulator, "frames": frames, "bit_exact_vs_cpu_engine": exact,
            "measured_cycles_per_frame": m["interval"],
            "ideal_cycles_per_frame": sim.manifest["ideal_cycles_per_frame"],
            "first_frame_latency": m["first_frame_latency"], "sim_wall_s": round(wall, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=50)
    ap.add_argument("--freq", type=float, default=100.0, help="target clock (MHz)")
    ap.add_argument("--board", default="ulx3s-85f")
    ap.add_argument("--simulator", default="verilator")
    ap.add_argument("--no-bitstream", action="store_true")
    ap.add_argument("--reuse-bitstream", action="store_true",
                    help="take Fmax/resources from the last build (build/bench_bnn/bit_BOARD)")
    args = ap.parse_args()

    from test_byom import PIXELS, bnn_pynq_qonnx

    from netfabric import bitstream, flow
    from netfabric.hls.frontend import CompileConfig

    work = ROOT / "build" / "bench_bnn"  # kept: the bitstream and its report are worth opening
    work.mkdir(parents=True, exist_ok=True)
    folding = work / "tfc_w1a1_folding.json"
    folding.write_text(json.dumps(FINN_TFC_W1A1_FOLDING, indent=2))
    qonnx = bnn_pynq_qonnx("tfc_1w1a", work / "tfc_1w1a.onnx")
    t0 = time.perf_counter()
    graph = flow.compile_model(qonnx, work / "hw", CompileConfig(
        input_scale=PIXELS, clock_mhz=args.freq, folding_json=folding,
        label_select=LABEL_SELECT))
    compile_s = round(time.perf_counter() - t0, 1)
    est = json.loads((work / "hw" / "estimates.json").read_text())
    got_folding = json.loads((work / "hw" / "folding.json").read_text())
    for name, want in FINN_TFC_W1A1_FOLDING.items():
        for key in ("PE", "SIMD"):
            if key in want and got_folding.get(name, {}).get(key) != want[key]:
                raise SystemExit(f"{name}.{key}: folding not applied ({got_folding.get(name)})")
    row: dict = {"model": "tfc_1w1a (brevitas_examples.bnn_pynq, random weights)",
                 "folding": "finn-examples tfc-w1a1_folding_config.json", "compile_s": compile_s,
                 "finn_bottleneck_cycles": est["finn_bottleneck_cycles"],
                 "netfabric_bottleneck_cycles": est["bottleneck_cycles"]}
    row.update(simulate(graph, work, args.frames, args.simulator))
    print(row)

    flow_row: dict = {}
    if not args.no_bitstream:
        out = work / f"bit_{args.board}"
        t0 = time.perf_counter()
        if args.reuse_bitstream and (out / "summary.json").is_file():
            summary = json.loads((out / "summary.json").read_text())
        else:
            summary = bitstream.build("tfc_w1a1", args.board, args.freq, out, graph=graph)
        flow_row = {"board": args.board, "target_mhz": args.freq,
                    "wall_s": summary.get("seconds_total", round(time.perf_counter() - t0, 1)),
                    "fmax_mhz": summary.get("fmax_mhz"), "timing_met": summary.get("timing_met")}
        report = out / "bitstream" / "report.json"
        if report.is_file():
            rep = json.loads(report.read_text())
            flow_row["resources"] = {r["kind"]: f"{r['used']}/{r['available']}"
                                     for r in rep.get("resources", [])}
        fmax = flow_row["fmax_mhz"]
        if fmax:
            # the design runs at min(Fmax, target) when timing is met at the target clock
            clock = min(fmax, args.freq) if flow_row["timing_met"] else fmax
            flow_row["clock_mhz_for_fps"] = round(clock, 2)
            flow_row["frames_per_s"] = round(clock * 1e6 / row["measured_cycles_per_frame"])
            flow_row["frames_per_s_at_fmax"] = round(fmax * 1e6 / row["measured_cycles_per_frame"])
        print(flow_row)

    cmd = "python bench/bnn.py" + (f" --frames {args.frames}" if args.frames != 50 else "") + \
        (f" --freq {args.freq:g}" if args.freq != 100.0 else "") + \
        (" --no-bitstream" if args.no_bitstream else "") + \
        (" --reuse-bitstream" if args.reuse_bitstream else "")
    write_json("bnn", {"command": cmd, "machine": machine(), "simulation": row,
                       "open_flow": flow_row, "finn_published": FINN_PUBLISHED})
    lines = ["## BNN-PYNQ TFC-w1a1, folded like FINN's build, on ECP5", "",
             f"Command: `{cmd}`. `tfc_1w1a` from `brevitas_examples.bnn_pynq` (random weights, "
             "calibrated BatchNorm/TensorNorm), compiled with `--input-scale 1/255` and FINN's "
             "folding from finn-examples (`tfc-w1a1_folding_config.json`: Thresholding PE 49, "
             "MVAU PE/SIMD 16/49, 8/8, 8/8, 10/8) but without FINN's final LabelSelect: with it the "
             "stitcher refuses the last XNOR MVAU's INT7 output type (popcount up to 64), so the "
             "accelerator outputs the integer logits; LabelSelect (10 cycles/frame) is not the "
             "bottleneck. Cycles per frame measured at steady state in "
             f"{row['simulator'].capitalize()} simulation over {row['frames']} MNIST images "
             f"(outputs {'bit-exact' if row['bit_exact_vs_cpu_engine'] else 'NOT equal'} to the "
             "CPU engine's).", "",
             "| measured cycles/frame | ideal | FINN estimate (`finn_bottleneck_cycles`) | "
             "first-frame latency | Fmax MHz (1 seed) | target MHz | timing | "
             "frames/s at the built clock | frames/s at Fmax | resources (used/available) | "
             "QONNX -> bitstream s |",
             "|---:|---:|---:|---:|---:|---:|---|---:|---:|---|---:|"]
    fmax = flow_row.get("fmax_mhz")
    res = ", ".join(f"{k} {v}" for k, v in flow_row.get("resources", {}).items()) or "-"
    lines.append(
        f"| {row['measured_cycles_per_frame']:.0f} | {row['ideal_cycles_per_frame']} | "
        f"{row['finn_bottleneck_cycles']} | {row['first_frame_latency']} | "
        f"{f'{fmax:.1f}' if fmax else '-'} | {args.freq:g} | "
        f"{('met' if flow_row.get('timing_met') else 'not met') if flow_row else '-'} | "
        f"{format(flow_row['frames_per_s'], ',') if flow_row.get('frames_per_s') else '-'} | "
        f"{format(flow_row['frames_per_s_at_fmax'], ',') if flow_row.get('frames_per_s') else '-'}"
        f" | {res} | {flow_row.get('wall_s', '-')} |")
    lines += ["", "frames/s = clock / measured cycles per frame; at the built clock (the target, "
              "when timing is met) and at the reported Fmax (one nextpnr seed; a rebuild at that "
              "clock is not guaranteed to close).", "", f"Anchor (FINN's published number, not measured here): TFC-w1a1 at "
              f"{FINN_PUBLISHED['images_per_s'] / 1e6:.2f}M images/s on an "
              f"{FINN_PUBLISHED['board']} board."]
    write_section("bnn", "\n".join(lines))


if __name__ == "__main__":
    main()
