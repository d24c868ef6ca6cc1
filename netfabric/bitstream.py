"""`make bitstream BOARD=...`: shipped model -> QONNX -> HW-layer graph -> RTL project -> bitstream.

Open boards (ECP5, iCE40) go through Yosys + nextpnr; `pynq-z2` goes through FINN's HLS code
generation and then Vivado, which must be installed: without it the HLS sources are written and
the command stops with a message naming what is missing.

    python -m netfabric.bitstream --model mlp --board ulx3s-85f --freq 100
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from . import flow

# Folding per board: a throughput target (frames/s at the clock) that fits the device.
FOLDING_FPS = {"ulx3s-85f": 100_000, "icebreaker": 20_000, "pynq-z2": 100_000}
SHIPPED = {"mlp": "mlp_w8a8.pt", "cnn": "cnn_w8a8.pt", "digits": "mlp_digits_w4a4.pt"}
# The MNIST MLP's 400 kbit of weights exceed an iCE40 UP5K's 120 kbit of block RAM: the
# icebreaker gets the 4-bit 8x8-digits MLP (64-32-32-10) by default.
DEFAULT_MODEL = {"icebreaker": "digits"}
DEFAULT_MHZ = {"ulx3s-85f": 100.0, "icebreaker": 24.0, "pynq-z2": 100.0}


def build(model: str, board: str, freq_mhz: float, out: Path, target_fps: float | None = None,
          graph: Path | None = None) -> int:
    from netfabric.hls.frontend import CompileConfig
    from netfabric.hw.stitch import stitch

    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if graph is None:
        if model not in SHIPPED:
            print(f"error: unknown model {model!r}; shipped: {', '.join(SHIPPED)}", file=sys.stderr)
            return 2
        qonnx = flow.export_checkpoint(flow.PRETRAINED / SHIPPED[model], out / f"{model}.qonnx.onnx")
        fps = target_fps or FOLDING_FPS.get(board, 10_000)
        cfg = CompileConfig(clock_mhz=freq_mhz, target_fps=fps)
        graph = flow.compile_model(qonnx, out / "hw", cfg, progress=lambda s: print(f"  compile: {s}"))
    if board == "pynq-z2":
        return _vivado_boundary(graph, freq_mhz, out)
    project = stitch(graph, out / "rtl", clock_mhz=freq_mhz)
    print(f"  stitched {project.folder} ({len(project.manifest['layers'])} modules)")
    from netfabric.hw.flow import build_bitstream
    from netfabric.hw.flow.errors import FlowError

    try:
        report = build_bitstream(project.folder, board, out / "bitstream", freq_mhz=freq_mhz)
    except FlowError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary = {"model": model, "board": board, "target_mhz": freq_mhz,
               "fmax_mhz": report.fmax_mhz, "timing_met": report.timing_met,
               "bitstream": str(report.bitstream), "seconds_total": round(time.perf_counter() - t0, 1),
               "ideal_cycles_per_frame": project.manifest["ideal_cycles_per_frame"]}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(report.to_markdown())
    print(f"QONNX -> bitstream in {summary['seconds_total']} s; "
          f"timing {'met' if report.timing_met else 'NOT met'} ({report.fmax_mhz:.1f} MHz vs {freq_mhz:g})")
    return 0


def _vivado_boundary(graph: Path, freq_mhz: float, out: Path) -> int:
    """FINN's HLS code generation (runs without vendor tools), then Vivado or a clear stop."""
    from netfabric.hls.finn_env import ensure_finn

    ensure_finn()
    from finn.transformation.fpgadataflow.prepare_ip import PrepareIP
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.custom_op.registry import getCustomOp

    hls_dir = out / "hls"
    if hls_dir.exists():
        shutil.rmtree(hls_dir)
    hls_dir.mkdir(parents=True)
    model = ModelWrapper(str(graph))
    model = model.transform(PrepareIP("xc7z020clg400-1", 1000.0 / freq_mhz))
    # FINN generates each layer in its own build folder: collect them next to the graph
    for node in model.graph.node:
        src = getCustomOp(node).get_nodeattr("code_gen_dir_ipgen")
        if src and Path(src).is_dir():
            shutil.copytree(src, hls_dir / node.name)
            getCustomOp(node).set_nodeattr("code_gen_dir_ipgen", str((hls_dir / node.name).resolve()))
    model.save(str(hls_dir / "hw_graph_ipgen.onnx"))
    n_src = sum(1 for _ in hls_dir.rglob("*.cpp"))
    print(f"  wrote FINN HLS sources to {hls_dir} ({n_src} .cpp files, one folder per layer)")
    if shutil.which("vivado") is None or shutil.which("vitis_hls") is None:
        print("error: BOARD=pynq-z2 needs AMD Vivado and Vitis HLS on PATH (source "
              "settings64.sh of a Vivado/Vitis 2022.2+ install) to synthesize the HLS layers, "
              "stitch the IP and build the bitstream. The HLS sources above are ready for it.",
              file=sys.stderr)
        return 2
    print("error: the Vivado stitching step for pynq-z2 is not automated yet; open the HLS "
          "sources above in Vitis HLS", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="shipped model: mlp, cnn or digits "
                    "(default: mlp; digits on icebreaker)")
    ap.add_argument("--graph", type=Path, default=None, help="a compiled HW-layer graph instead")
    ap.add_argument("--board", default="ulx3s-85f")
    ap.add_argument("--freq", type=float, default=None,
                    help="target clock, MHz (default: 100; 24 on icebreaker)")
    ap.add_argument("--target-fps", type=float, default=None)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    args.model = args.model or DEFAULT_MODEL.get(args.board, "mlp")
    args.freq = args.freq or DEFAULT_MHZ.get(args.board, 100.0)
    out = args.out or Path("build") / "bitstream" / f"{args.model}-{args.board}"
    return build(args.model, args.board, args.freq, out, args.target_fps, args.graph)


if __name__ == "__main__":
    sys.exit(main())
