"""`netfabric bitstream` (`make bitstream BOARD=...`): shipped model -> QONNX -> HW-layer
graph -> RTL project -> bitstream.

Open boards (ECP5, iCE40) go through Yosys + nextpnr; `pynq-z2` goes through FINN's HLS code
generation and then Vivado, which must be installed: without it the HLS sources are written and
the command stops with a message naming what is missing.

    netfabric bitstream --model mlp --board ulx3s-85f --freq 100 [--seeds 3 [--jobs 3]]

``--seeds N`` places and routes with nextpnr seeds 1..N, reports Fmax min / median / max, keeps
the bitstream of the best seed, and calls timing met only when the worst seed met it; ``--jobs J``
runs J of those seeds side by side.

The click command lives in :mod:`netfabric.cli`; this module is the work it does. Every problem
a user can fix is raised as a :class:`netfabric.errors.NetfabricError`.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path

from . import flow, logs
from .errors import FlowError
from .files import atomic_write

# Throughput goal per board (frames/s at the clock). On the open boards the compile folds for
# the board: the fastest folding up to this goal whose predicted resources fit (hw/flow/fit.py).
FOLDING_FPS = {"ulx3s-85f": 100_000, "icebreaker": 20_000, "pynq-z2": 100_000}
SHIPPED = {"mlp": "mlp_w8a8.pt", "cnn": "cnn_w8a8.pt", "digits": "mlp_digits_w4a4.pt",
           "transformer": "transformer_int8.pt"}
# A model's own throughput goal, where it has one: the transformer's is 2,000 sequences/s at
# 100 MHz (<= 50,000 cycles a sequence); the board fit may still fold it further.
MODEL_FPS = {"transformer": 2_000}
# The MNIST MLP's 400 kbit of weights exceed an iCE40 UP5K's 120 kbit of block RAM: the
# icebreaker gets the 4-bit 8x8-digits MLP (64-32-32-10) by default.
DEFAULT_MODEL = {"icebreaker": "digits"}
DEFAULT_MHZ = {"ulx3s-85f": 100.0, "icebreaker": 24.0, "pynq-z2": 100.0}


def parse_seeds(text: str | int) -> int:
    """``--seeds`` value -> a seed count 1..MAX_SEEDS; anything else is a one-line FlowError."""
    from netfabric.hw.flow.bitstream import check_seeds

    return check_seeds(_whole_number(text))


def parse_jobs(text: str | int) -> int:
    """``--jobs`` value -> nextpnr runs side by side, 1..MAX_SEEDS, or a one-line FlowError."""
    from netfabric.hw.flow.bitstream import check_jobs

    return check_jobs(_whole_number(text))


def _whole_number(text: str | int) -> int | str:
    """A command-line count as an int, or the text itself for the check to name."""
    try:
        return int(str(text).strip(), 10)
    except ValueError:
        return str(text)


def build(model: str, board: str, freq_mhz: float, out: Path, target_fps: float | None = None,
          graph: Path | None = None, seeds: int = 1, jobs: int = 1) -> dict:
    """Build the bitstream; returns the summary also written to ``out/summary.json``."""
    from netfabric.hls.frontend import CompileConfig
    from netfabric.hw.flow import build_bitstream, get_board
    from netfabric.hw.flow.bitstream import check_jobs, check_seeds
    from netfabric.hw.flow.progress import ConsoleProgress
    from netfabric.hw.stitch import stitch

    check_seeds(seeds)
    check_jobs(jobs)
    b = get_board(board)  # an unknown board fails now, not after the compile
    if seeds != 1 and not b.open_flow:
        raise FlowError(f"--seeds is an option of the open flow (nextpnr); {board} is built "
                        "with Vivado")
    if graph is None and model not in SHIPPED:
        raise ValueError(f"unknown model {model!r}; shipped: {', '.join(SHIPPED)}")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if graph is None:
        fps = target_fps or MODEL_FPS.get(model) or FOLDING_FPS.get(board, 10_000)
        cfg = CompileConfig(clock_mhz=freq_mhz, target_fps=fps,
                            # an explicit --target-fps is folded as asked (and fit-checked)
                            board=board if b.capacity and target_fps is None else None)
        if b.family == "xc7":  # FINN's HLS layers: keep FINN's weight-width limit
            cfg.mvau_wwidth_max = 128
        progress = lambda s: logs.echo(f"  compile: {s}")  # noqa: E731
        if model == "transformer":  # its HW graph is built from its integers (hls/transformer.py)
            from netfabric.hls.transformer import compile_transformer

            cfg.label_select = False
            graph = compile_transformer(flow.PRETRAINED / SHIPPED[model], out / "hw", cfg,
                                        progress=progress)
        else:
            qonnx = flow.export_checkpoint(flow.PRETRAINED / SHIPPED[model],
                                           out / f"{model}.qonnx.onnx")
            graph = flow.compile_model(qonnx, out / "hw", cfg, progress=progress)
        _echo_folding(out / "hw" / "estimates.json", freq_mhz)
    if board == "pynq-z2":
        _vivado_boundary(graph, freq_mhz, out)
    project = stitch(graph, out / "rtl", clock_mhz=freq_mhz)
    logs.echo(f"  stitched {project.folder} ({len(project.manifest['layers'])} modules)")
    report = build_bitstream(project.folder, board, out / "bitstream", freq_mhz=freq_mhz,
                             seeds=seeds, jobs=jobs,
                             progress=ConsoleProgress(total=0, stream=logs.stream()))
    summary = {"model": model, "board": board, "target_mhz": freq_mhz,
               "fmax_mhz": report.fmax_mhz, "timing_met": report.timing_met,
               "seeds": [asdict(r) for r in report.seed_runs] or None,
               "fmax_seeds": report.fmax_seeds, "seed": report.seed,
               "bitstream": str(report.bitstream), "seconds_total": round(time.perf_counter() - t0, 1),
               "ideal_cycles_per_frame": project.manifest["ideal_cycles_per_frame"],
               "report": report.to_dict()}  # as report.json: callers need not read it back
    atomic_write(out / "summary.json", json.dumps(summary, indent=2))
    logs.echo(report.to_markdown())
    fmax = f"{report.fmax_mhz:.1f} MHz" if report.fmax_mhz else "no Fmax"
    spread = report.fmax_seeds
    if spread:  # several seeds: the worst decides, the best's bitstream is kept
        fmax = (f"Fmax over {len(report.seed_runs)} seeds min {spread['min']:.1f} / median "
                f"{spread['median']:.1f} / max {spread['max']:.1f} MHz; bitstream of seed "
                f"{report.seed}")
    logs.echo(f"QONNX -> bitstream in {summary['seconds_total']} s; "
              f"timing {'met' if report.timing_met else 'NOT met'} ({fmax} vs {freq_mhz:g})")
    return summary


def _echo_folding(estimates: Path, freq_mhz: float) -> None:
    est = json.loads(estimates.read_text())
    search = (est.get("folding") or {}).get("board")
    fps = est.get("est_fps")
    if search and fps:
        limit = (f"; faster foldings need more {search['limited_by']}"
                 if search.get("limited_by") else "")
        logs.echo(f"  folded for {search['board']}: {est['bottleneck_cycles']:,} cycles/frame, "
                  f"{fps:,.0f} frames/s at {freq_mhz:g} MHz{limit}")


def _vivado_boundary(graph: Path, freq_mhz: float, out: Path) -> None:
    """FINN's HLS code generation (runs without vendor tools), then a clear stop: the Vivado
    half is not automated, so this always raises."""
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
    logs.echo(f"  wrote FINN HLS sources to {hls_dir} ({n_src} .cpp files, one folder per layer)")
    if shutil.which("vivado") is None or shutil.which("vitis_hls") is None:
        from netfabric.hw.flow.errors import ToolNotFoundError

        raise ToolNotFoundError(
            "BOARD=pynq-z2 needs AMD Vivado and Vitis HLS on PATH (source settings64.sh of a "
            "Vivado/Vitis 2022.2+ install) to synthesize the HLS layers, stitch the IP and build "
            f"the bitstream. The HLS sources in {hls_dir} are ready for it.")
    raise FlowError("the Vivado stitching step for pynq-z2 is not automated yet; open the HLS "
                    f"sources in {hls_dir} in Vitis HLS")


def default_out(model: str, board: str) -> Path:
    return Path("build") / "bitstream" / f"{model}-{board}"


if __name__ == "__main__":  # the old entry point, `python -m netfabric.bitstream ...`
    from .cli import main

    main(["bitstream", *sys.argv[1:]])
