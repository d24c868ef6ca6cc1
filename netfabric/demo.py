"""`make demo`: a shipped INT8 model through every stage that exists, printing what it measured.

The default is the MLP; ``netfabric demo --model transformer`` takes the segmented-attention
transformer through the same stages (its HW graph is built from its integers, folded for
2,000 sequences/s at 100 MHz).

Each stage passes, is skipped (a tool it needs is not installed here, e.g. Verilator or Yosys),
or fails: an error, a result that does not match, timing not met. The summary marks every
stage; any failure makes the demo exit with status 1, so scripts and CI can trust a 0. A stage
whose inputs an earlier failure did not produce is marked "not run".
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.table import Table

from . import flow, logs
from .errors import NetfabricError

log = logging.getLogger(__name__)


class StageFailed(NetfabricError):
    """A stage ran but its check did not pass (mismatch, timing not met)."""


class StageSkipped(Exception):
    """A stage cannot run on this machine (a tool is not installed); not a failure."""


@dataclass(frozen=True)
class ModelRecipe:
    """What differs between the shipped models; every stage after the compile is shared."""

    name: str
    title: str  # for the summary table
    checkpoint: str  # in models/pretrained
    target_fps: float  # folding goal at 100 MHz
    interpreter_count: int  # images through Triton's interpreter when there is no GPU


RECIPES = {
    "mlp": ModelRecipe("mlp", "INT8 MLP", "mlp_w8a8.pt", 100_000, 8),
    # ~50k cycles a sequence: the folding issue 9 asks for (>= 2,000 sequences/s at 100 MHz)
    "transformer": ModelRecipe("transformer", "INT8 segmented-attention transformer",
                               "transformer_int8.pt", 2_000, 2),
}


@dataclass
class DemoState:
    """What the stages hand each other; a stage's inputs are attributes set by earlier ones."""

    out: Path
    retrain: bool = False
    reference_count: int = 200
    sim_count: int = 50
    link_count: int = 10
    board: str | None = "ulx3s-85f"
    recipe: ModelRecipe = RECIPES["mlp"]
    rows: list[tuple[str, str]] = field(default_factory=list)  # the measured-values table
    ckpt_path: Path | None = None
    qat_model: Any = None
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    qonnx: Path | None = None
    graph: Path | None = None
    est: dict | None = None
    engine: Any = None
    logits_name: str | None = None
    outputs: np.ndarray | None = None  # the graph's output on the CPU engine: labels or logits
    labels: np.ndarray | None = None
    logits: np.ndarray | None = None
    project: Path | None = None


@dataclass(frozen=True)
class Stage:
    title: str
    run: Callable[[DemoState], None]
    requires: tuple[str, ...] = ()  # DemoState attributes an earlier stage must have set


@dataclass(frozen=True)
class Outcome:
    title: str
    status: str  # "ok" | "skipped" | "FAILED" | "not run"
    detail: str = ""


def run_demo(out: Path, retrain: bool = False, reference_count: int = 200,
             sim_count: int = 50, bitstream_board: str | None = "ulx3s-85f",
             stages: Sequence[Stage] | None = None, model: str = "mlp") -> int:
    """Run the stages, print the measurements and each stage's outcome; 0 only if none failed."""
    if model not in RECIPES:
        raise ValueError(f"unknown demo model {model!r}; shipped: {', '.join(RECIPES)}")
    if retrain and model != "mlp":
        raise ValueError("--train retrains the MLP only; train the transformer with "
                         "`netfabric train --model transformer` and compile its checkpoint")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = DemoState(out, retrain, reference_count, sim_count, board=bitstream_board,
                      recipe=RECIPES[model])
    console = logs.console()
    if logs.log_path() is not None:
        console.print(f"[dim]full log (third-party warnings, tool output): {logs.log_path()}[/]")
    outcomes = run_stages(stages if stages is not None else default_stages(state), state)
    console.print(summary_table(state.rows, outcomes, state.recipe.title))
    failed = [o.title for o in outcomes if o.status == "FAILED"]
    if failed:
        console.print(f"[bold red]demo FAILED[/]: {', '.join(failed)}")
        return 1
    return 0


def run_stages(stages: Sequence[Stage], state: DemoState) -> list[Outcome]:
    """Run each stage, catching its failure so the rest still run (and get marked)."""
    console = logs.console()
    outcomes = []
    for i, stage in enumerate(stages, 1):
        title = f"{i}. {stage.title}"
        missing = [name for name in stage.requires if getattr(state, name) is None]
        if missing:
            outcomes.append(Outcome(title, "not run", "an earlier stage failed"))
            continue
        console.rule(f"[bold]{title}")
        try:
            stage.run(state)
        except StageSkipped as exc:
            outcomes.append(Outcome(title, "skipped", str(exc)))
        except NetfabricError as exc:
            log.debug("stage %s failed", title, exc_info=True)
            outcomes.append(Outcome(title, "FAILED", str(exc).splitlines()[0] if str(exc) else ""))
        except Exception as exc:  # a bug, not bad input: the traceback goes to the log
            log.exception("stage %s failed", title)
            outcomes.append(Outcome(title, "FAILED", f"{type(exc).__name__}: {exc}"))
        else:
            outcomes.append(Outcome(title, "ok"))
        if outcomes[-1].status != "ok":
            console.print(f"{_STYLE[outcomes[-1].status]} {outcomes[-1].detail}")
    return outcomes


_STYLE = {"ok": "[green]ok[/]", "skipped": "[yellow]skipped[/]", "FAILED": "[bold red]FAILED[/]",
          "not run": "[red]not run[/]"}


def summary_table(rows: list[tuple[str, str]], outcomes: list[Outcome],
                  title: str = "INT8 MLP") -> Table:
    table = Table(title=f"netfabric demo: shipped {title}", show_lines=False)
    table.add_column("measured")
    table.add_column("value", justify="right")
    for k, v in rows:
        table.add_row(k, v)
    table.add_section()
    for o in outcomes:
        table.add_row(f"stage {o.title}", _STYLE[o.status] + (f": {o.detail}" if o.detail else ""))
    return table


def default_stages(state: DemoState) -> list[Stage]:
    stages = [
        Stage("model", _model),
        Stage("export to QONNX", _export, ("ckpt_path",)),
        Stage("FINN front end -> HW-layer graph", _compile, ("qonnx",)),
        Stage("exact CPU engine", _cpu_engine, ("graph", "x_test", "qat_model")),
        Stage(f"bit-exact check against FINN's reference on {state.reference_count} images",
              _reference, ("engine", "outputs")),
        Stage("RTL: stitched accelerator", _stitch, ("graph",)),
        Stage(f"RTL: cycle-accurate simulation of {state.sim_count} images", _rtl_sim,
              ("project", "outputs")),
        Stage("runtime: automatic backend choice on this machine", _runtime, ("graph", "outputs")),
        Stage("GPU backend: Triton kernels", _triton, ("graph", "outputs")),
        Stage(f"board link: the {state.board or 'ulx3s-85f'} bitstream top over its UART, "
              f"simulated ({state.link_count} images)", _board_link, ("graph", "outputs")),
        Stage("PYNQ deployment package (pynq-z2)", _pynq_package, ("graph",)),
    ]
    if state.board:
        stages.append(Stage(f"bitstream for {state.board} (Yosys + nextpnr)", _bitstream,
                            ("project",)))
    return stages


def _model(s: DemoState) -> None:
    if s.recipe.name == "transformer":
        _transformer_model(s)
        return
    from netfabric.models.data import load_mnist
    from netfabric.models.train import (
        TrainConfig,
        evaluate,
        load_checkpoint,
        model_from_checkpoint,
        train,
    )
    from netfabric.models.zoo import ModelConfig

    ckpt_path = flow.PRETRAINED / s.recipe.checkpoint
    if s.retrain:
        ckpt_path = s.out / "mlp_w8a8.pt"
        train(ModelConfig(arch="mlp"), TrainConfig(float_epochs=40, qat_epochs=20), ckpt_path)
    ckpt = load_checkpoint(ckpt_path)
    x_test, y_test = load_mnist("test")
    float_acc = evaluate(model_from_checkpoint(ckpt, quant=False), x_test, y_test)
    qat_model = model_from_checkpoint(ckpt, quant=True)
    qat_acc = evaluate(qat_model, x_test, y_test)
    logs.console().print(f"checkpoint {ckpt_path.name}: {ckpt['config']['arch']} "
                         f"w{ckpt['config']['weight_bits']}a{ckpt['config']['act_bits']}")
    s.rows += [("float twin accuracy (MNIST test, 10k)", f"{float_acc:.2f}%"),
               ("QAT INT8 accuracy", f"{qat_acc:.2f}%")]
    s.ckpt_path, s.qat_model, s.x_test, s.y_test = ckpt_path, qat_model, x_test, y_test


def _transformer_model(s: DemoState) -> None:
    from netfabric.models.data import load_mnist
    from netfabric.models.train_transformer import load_transformer
    from netfabric.models.transformer import evaluate

    ckpt_path = flow.PRETRAINED / s.recipe.checkpoint
    x_test, y_test = load_mnist("test")
    float_acc = evaluate(load_transformer(ckpt_path, quant=False), x_test, y_test)
    qat_model = load_transformer(ckpt_path, quant=True)
    qat_acc = evaluate(qat_model, x_test, y_test)
    cfg = getattr(qat_model, "cfg", None)
    shape = (f" (dim {cfg.dim}, depth {cfg.depth}, {cfg.heads} heads, segments of {cfg.segment} "
             f"tokens, w{cfg.weight_bits}a{cfg.act_bits})") if cfg is not None else ""
    logs.console().print(f"checkpoint {ckpt_path.name}: segmented-attention transformer{shape}")
    s.rows += [("float twin accuracy (MNIST test, 10k)", f"{float_acc:.2f}%"),
               ("QAT INT8 accuracy", f"{qat_acc:.2f}%")]
    s.ckpt_path, s.qat_model, s.x_test, s.y_test = ckpt_path, qat_model, x_test, y_test


def _export(s: DemoState) -> None:
    path = s.out / f"{s.recipe.name}.qonnx.onnx"
    if s.recipe.name == "transformer":
        from netfabric.hls.transformer_export import export_transformer_qonnx

        s.qonnx = export_transformer_qonnx(s.qat_model, path)
    else:
        s.qonnx = flow.export_checkpoint(s.ckpt_path, path)
    logs.console().print(f"wrote {s.qonnx}")


def _compile(s: DemoState) -> None:
    from netfabric.hls.frontend import CompileConfig

    console = logs.console()
    t0 = time.perf_counter()
    cfg = CompileConfig(clock_mhz=100.0, target_fps=s.recipe.target_fps)
    progress = lambda step: console.print(f"  step {step}")  # noqa: E731
    if s.recipe.name == "transformer":
        from netfabric.hls.transformer import compile_transformer

        # built from the checkpoint's integers, not from the QONNX (hls/transformer.py says why)
        cfg.label_select = False
        graph = compile_transformer(s.ckpt_path, s.out / "hw", cfg, progress=progress)
    else:
        graph = flow.compile_model(s.qonnx, s.out / "hw", cfg, progress=progress)
    s.est = json.loads((s.out / "hw" / "estimates.json").read_text())
    console.print(f"wrote {graph} in {time.perf_counter() - t0:.1f} s")
    layers = [layer["op_type"] for layer in s.est["layers"]]
    s.rows.append(("HW layers", _count_ops(layers)))
    s.rows.append(("estimate, cycles/frame (registry / FINN)",
                   f"{s.est['bottleneck_cycles']} / {_finn_estimate(s)}"))
    s.graph = graph


def _finn_estimate(s: DemoState) -> str:
    """FINN's bottleneck estimate, which covers FINN's own ops only (not netfabric's)."""
    finn = (s.est or {}).get("finn_bottleneck_cycles")
    if finn is None:
        return "no FINN op"
    return f"{finn} (FINN's ops only)" if s.recipe.name == "transformer" else str(finn)


def _count_ops(op_types: list[str]) -> str:
    """'MVAU, Thresholding, ...' in graph order; repeated ops counted once with their number."""
    counts: dict[str, int] = {}
    for op in op_types:
        counts[op] = counts.get(op, 0) + 1
    if all(c == 1 for c in counts.values()):
        return ", ".join(op_types)
    return ", ".join(f"{op} x{c}" if c > 1 else op for op, c in counts.items())


def _cpu_engine(s: DemoState) -> None:
    import torch

    from netfabric.host.cpu_engine import CpuEngine
    from netfabric.host.hwgraph import load_hwgraph

    g = load_hwgraph(s.graph)
    labelled = g.nodes[-1].op_type == "LabelSelect"
    s.logits_name = g.nodes[-1].inputs[0] if labelled else g.output_name
    s.engine = CpuEngine(s.graph, extra_outputs=[s.logits_name] if labelled else None)
    t0 = time.perf_counter()
    outs = s.engine.run_all(s.x_test[:, None])
    dt = time.perf_counter() - t0
    s.outputs, s.logits = outs[0], outs[-1]
    s.labels = flow.predictions(s.outputs)
    int_acc = 100.0 * float((s.labels == s.y_test).mean())
    with torch.no_grad():
        if s.recipe.name == "transformer":
            from netfabric.models.transformer import predict_logits

            qat_pred = predict_logits(s.qat_model, s.x_test).argmax(1)
        else:
            x = torch.from_numpy(s.x_test[:, None].astype(np.float32))
            qat_pred = s.qat_model(x).argmax(1).numpy()
    agree = 100.0 * float((qat_pred == s.labels).mean())
    s.rows += [("integer accuracy (CPU engine, 10k)", f"{int_acc:.2f}%"),
               ("predictions equal to QAT model", f"{agree:.2f}%"),
               ("CPU engine throughput (1 thread)", f"{len(s.labels) / dt:,.0f} images/s")]


def _same(got: np.ndarray, want: np.ndarray) -> bool:
    """Every integer equal (labels, or the logits of a graph without LabelSelect)."""
    got, want = np.asarray(got), np.asarray(want)
    return got.size == want.size and np.array_equal(got.reshape(want.shape), want)


def _reference(s: DemoState) -> None:
    from qonnx.core.modelwrapper import ModelWrapper

    from netfabric.hls.reference import reference_run

    n = s.reference_count
    xs = s.engine.check_input(s.x_test[:n, None]).astype(np.float32)
    ref_out, ref_logits = reference_run(ModelWrapper(str(s.graph)), xs, tensors=[s.logits_name])
    exact = np.array_equal(ref_out.reshape(n, -1), s.outputs[:n].reshape(n, -1)) and \
        np.array_equal(ref_logits.reshape(n, -1), s.logits[:n].reshape(n, -1))
    s.rows.append((f"CPU engine == HW-graph reference, FINN's execution ({n} images, logits)",
                   "[green]bit-exact[/]" if exact else "[red]MISMATCH[/]"))
    if not exact:
        raise StageFailed(f"the CPU engine differs from FINN's reference on {n} images")


def _stitch(s: DemoState) -> None:
    from netfabric.hw.stitch import stitch

    project = stitch(s.graph, s.out / "rtl")
    logs.console().print(f"wrote {project.folder} ({len(project.manifest['layers'])} modules)")
    s.project = Path(project.folder)


def _rtl_sim(s: DemoState) -> None:
    from netfabric.host.sim_backend import SimBackend
    from netfabric.sim.runner import SimulatorNotFound

    x, cpu_out = s.x_test[:s.sim_count, None], s.outputs[:s.sim_count]
    sim = SimBackend(s.graph, project_dir=s.out / "rtl")
    t0 = time.perf_counter()
    try:
        sim_out = sim.run(x)
    except SimulatorNotFound as exc:
        s.rows.append(("RTL simulation", f"[yellow]skipped: {exc}[/]"))
        raise StageSkipped(str(exc)) from exc
    dt = time.perf_counter() - t0
    same = _same(sim_out, cpu_out)
    m = sim.last_metrics
    logs.console().print(f"project {sim.project} simulated in {dt:.1f} s "
                         "(Verilator build included)")
    s.rows += [(f"RTL simulation == CPU engine ({len(x)} images)",
                "[green]bit-exact[/]" if same else "[red]MISMATCH[/]"),
               ("cycles/frame: measured / ideal / registry model / FINN estimate",
                f"{m.get('interval', float('nan')):.0f} / {sim.manifest['ideal_cycles_per_frame']}"
                f" / {s.est.get('bottleneck_cycles') if s.est else '?'}"
                f" / {_finn_estimate(s)}"),
               ("first-frame latency (cycles)", f"{m.get('first_frame_latency', '?')}")]
    if not same:
        raise StageFailed(f"the RTL simulation's outputs differ from the CPU engine's on "
                          f"{len(x)} images")


def _runtime(s: DemoState) -> None:
    from netfabric.host.runtime import open_backend

    auto = open_backend("auto", s.graph)
    same = _same(auto.run(s.x_test[:100, None]), s.outputs[:100])
    logs.console().print(f"auto picked the [bold]{auto.name}[/] backend")
    s.rows.append(("runtime 'auto' backend on this machine",
                   f"{auto.name} ({'same outputs' if same else '[red]DIFFERENT[/]'})"))
    if not same:
        raise StageFailed(f"the {auto.name} backend's outputs differ from the CPU engine's")


def _triton(s: DemoState) -> None:
    """The triton backend: on a CUDA GPU over 1000 images; without one, the same kernels on a
    few images under Triton's interpreter (exact, slow), in a fresh process: the interpreter
    must be switched on before Triton is first imported, and this one imported it already."""
    import importlib.util
    import os
    import subprocess
    import sys

    if importlib.util.find_spec("triton") is None or importlib.util.find_spec("torch") is None:
        reason = "triton is not installed: pip install 'netfabric[gpu]'"
        s.rows.append(("GPU backend (triton)", f"[yellow]skipped: {reason}[/]"))
        raise StageSkipped(reason)
    import torch

    gpu = torch.cuda.is_available()
    count = 1000 if gpu else s.recipe.interpreter_count
    x = s.x_test[:count, None]
    t0 = time.perf_counter()
    if gpu:
        from netfabric.host.triton_backend import TritonBackend

        out = TritonBackend(s.graph).run(x)
        where = torch.cuda.get_device_name(0)
    else:
        work = s.out / "triton"
        work.mkdir(parents=True, exist_ok=True)
        np.save(work / "in.npy", x)
        done = subprocess.run(
            [sys.executable, "-m", "netfabric.host.triton_backend", str(s.graph),
             str(work / "in.npy"), str(work / "out.npy")],
            env={**os.environ, "TRITON_INTERPRET": "1"}, capture_output=True, text=True)
        if done.returncode:
            lines = (done.stderr or done.stdout).strip().splitlines()
            raise StageFailed(f"the triton backend failed: {lines[-1] if lines else done.returncode}")
        out = np.load(work / "out.npy")
        where = "Triton's interpreter on the CPU (no GPU)"
    dt = time.perf_counter() - t0
    same = _same(out, s.outputs[:count])
    logs.console().print(f"triton backend on {where}: {count} images in {dt:.1f} s")
    s.rows.append((f"triton backend == CPU engine ({count} images, {where})",
                   "[green]bit-exact[/]" if same else "[red]MISMATCH[/]"))
    if not same:
        raise StageFailed("the triton backend's outputs differ from the CPU engine's")


def _board_link(s: DemoState) -> None:
    """The exact top that goes into the open board's bitstream (shell, UART host link,
    accelerator), driven over its UART pins by the `fpga` backend's own protocol code."""
    from netfabric.sim.board_link import SIM_CLKS_PER_BIT, simulate_board_link
    from netfabric.sim.runner import SimulatorNotFound

    board = s.board if s.board in ("ulx3s-85f", "icebreaker") else "ulx3s-85f"
    x = s.x_test[:s.link_count, None]
    t0 = time.perf_counter()
    try:
        out, _ = simulate_board_link(s.graph, x, s.out / "board_link", board=board)
    except SimulatorNotFound as exc:
        s.rows.append(("board link simulation", f"[yellow]skipped: {exc}[/]"))
        raise StageSkipped(str(exc)) from exc
    same = _same(out, s.outputs[:len(x)])
    logs.console().print(f"{board} top simulated over its UART in {time.perf_counter() - t0:.1f} s "
                         f"({SIM_CLKS_PER_BIT} clocks per bit in simulation)")
    s.rows.append((f"board top over UART == CPU engine ({len(x)} images)",
                   "[green]bit-exact[/]" if same else "[red]MISMATCH[/]"))
    if not same:
        raise StageFailed("the board top's answers over UART differ from the CPU engine's")


def _pynq_package(s: DemoState) -> None:
    from netfabric.deploy import write_package

    package = write_package(s.graph, s.out / "deploy-pynq-z2")
    logs.console().print(f"wrote {package}: run build.sh where Vivado is installed, then "
                         "run_on_board.py on the board")
    s.rows.append(("PYNQ deployment package", str(package)))


def _bitstream(s: DemoState) -> None:
    from netfabric.hw.flow import ToolNotFoundError, build_bitstream
    from netfabric.hw.flow.progress import ConsoleProgress

    board, target = s.board, 100.0
    if s.recipe.name != "mlp":
        _board_folded_bitstream(s, board, target)
        return
    try:
        report = build_bitstream(s.project, board, s.out / "bitstream", freq_mhz=target,
                                 progress=ConsoleProgress(total=3, stream=logs.stream()))
    except ToolNotFoundError as exc:
        s.rows.append((f"bitstream ({board})", f"[yellow]skipped: {exc}[/]"))
        raise StageSkipped(str(exc)) from exc
    _bitstream_rows(s, report.to_dict(), target, [(f"bitstream ({board})", str(report.bitstream))])


def _bitstream_rows(s: DemoState, report: dict, target: float, head: list[tuple[str, str]]) -> None:
    """The demo's rows for a built bitstream (``report`` as report.json): ``head``, Fmax
    against the target, utilisation; timing not met fails the stage."""
    util = ", ".join(f"{r['kind']} {r['used']}" for r in report.get("resources", [])
                     if r["kind"] in ("LUT4", "FF", "DSP", "BRAM"))
    fmax = report.get("fmax_mhz")
    fmax_s = f"{fmax:.1f} MHz" if fmax else "not analysed"
    met = report.get("timing_met") is True
    s.rows += [*head, (f"Fmax vs {target:g} MHz target",
                       f"{fmax_s} ({'[green]met[/]' if met else '[red]not met[/]'})"),
               ("utilisation", util)]
    if not met:
        raise StageFailed(f"timing not met: Fmax {fmax_s} vs the {target:g} MHz target")


def _board_folded_bitstream(s: DemoState, board: str, target: float) -> None:
    """A model whose simulated folding does not fit the board (the transformer at 2,000
    sequences/s needs more DSP blocks than the ECP5-85F has) is refolded for the board, as
    `netfabric bitstream` does: the fastest folding that fits, then synthesis."""
    from netfabric import bitstream as bs
    from netfabric.hw.flow import ToolNotFoundError

    try:
        summary = bs.build(s.recipe.name, board, target, s.out / "bitstream-board")
    except ToolNotFoundError as exc:
        s.rows.append((f"bitstream ({board})", f"[yellow]skipped: {exc}[/]"))
        raise StageSkipped(str(exc)) from exc
    _bitstream_rows(s, summary["report"], target, [
        (f"bitstream ({board}, folded for the board)", str(summary["bitstream"])),
        ("cycles/frame of the board folding", f"{summary['ideal_cycles_per_frame']:,}")])
