"""`netfabric train | evaluate | export | compile | run | bitstream | demo | ops`: the stages
from the command line.

Errors a user can act on (every :class:`netfabric.errors.NetfabricError`, and bad values or
missing files) are printed as one line and exit with status 2, never as a traceback; the
traceback goes to the log file. Third-party warnings, logs and tool output go to that log file
too (:mod:`netfabric.logs`), unless ``netfabric -v`` is given.
"""

from __future__ import annotations

import contextlib
import functools
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from . import flow, logs
from .errors import NetfabricError

USER_ERRORS = (NetfabricError, ValueError, FileNotFoundError)


class UserError(click.ClickException):
    """Shown by click as one ``Error: ...`` line; status 2 (bad input, not a crash)."""

    exit_code = 2


def one_line(exc: BaseException) -> str:
    """The exception's message on one line; a long multi-line one (a tool's log tail) is cut
    to its first line, the rest being in the log file."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()] or [type(exc).__name__]
    if len(lines) > 6 or sum(map(len, lines)) > 400:
        where = f" (details: {logs.log_path()})" if logs.log_path() else ""
        return lines[0] + where
    text = lines[0]
    for ln in lines[1:]:
        text += (" " if text.endswith(":") else "; ") + ln
    return text


def _guard(fn: Callable[..., Any] | None = None, *, capture: bool = True) -> Any:
    """Run a command body with user errors as one line (exit 2) and, unless ``capture`` is
    False, third-party output (fds 1 and 2) going to the log file: such a body must print
    through :func:`echo` / :func:`netfabric.logs.console`, which still reach the terminal. A
    command that only prints with plain ``print`` / ``rich.Console()`` uses ``capture=False``.
    Usable as ``@_guard`` and ``@_guard(capture=False)``."""
    if fn is None:
        return functools.partial(_guard, capture=capture)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with logs.captured() if capture else contextlib.nullcontext():
                return fn(*args, **kwargs)
        except click.ClickException:
            raise
        except USER_ERRORS as exc:
            logs.log.debug("%s failed", fn.__name__, exc_info=True)
            raise UserError(one_line(exc)) from exc

    return wrapper


echo = logs.echo  # netfabric's own output: reaches the terminal while third-party output is logged


@click.group()
@click.option("-v", "--verbose", is_flag=True,
              help="show third-party warnings, logs and tool output here instead of in a log file")
@click.pass_context
def main(ctx: click.Context, verbose: bool) -> None:
    """netfabric: quantized networks from Brevitas training to FPGA hardware."""
    logs.start(verbose)
    ctx.call_on_close(logs.finish)


@main.command()
@click.option("--model", "arch", type=click.Choice(["mlp", "cnn", "transformer"]), default="mlp")
@click.option("--bits", type=click.IntRange(2, 8), default=8, help="weight and activation bits")
@click.option("--dataset", type=click.Choice(["mnist", "digits"]), default="mnist")
@click.option("--epochs", type=int, default=None, help="float-twin epochs")
@click.option("--qat-epochs", type=int, default=None)
@click.option("--seed", type=int, default=0)
@click.option("--threads", type=int, default=None)
@click.option("--out", type=click.Path(path_type=Path), required=True, help="checkpoint to write")
@_guard
def train(arch, bits, dataset, epochs, qat_epochs, seed, threads, out) -> None:
    """Train the float twin, then QAT from it; print both accuracies."""
    if arch == "transformer":
        from netfabric.models.train_transformer import TransformerTrainConfig, train_transformer
        from netfabric.models.transformer import TransformerConfig

        if bits != 8:
            raise UserError("the transformer is INT8 only (its integer softmax is specified at 8 bits)")
        tc = TransformerTrainConfig(dataset=dataset, seed=seed, threads=threads or 1)
        if epochs is not None:
            tc.float_epochs = epochs
        if qat_epochs is not None:
            tc.qat_epochs = qat_epochs
        ckpt = train_transformer(TransformerConfig(), tc, out)
        m = ckpt["metrics"]
        echo(f"float twin {m['float_acc']:.2f}%  QAT INT8 {m['int8_acc']:.2f}%  "
                   f"({m['train_seconds']:.0f} s) -> {out}")
        return
    from netfabric.models.train import TrainConfig
    from netfabric.models.train import train as run_train
    from netfabric.models.zoo import ModelConfig

    defaults = {"mlp": (40, 20), "cnn": (4, 3)}[arch]
    tc = TrainConfig(dataset=dataset, float_epochs=epochs or defaults[0],
                     qat_epochs=qat_epochs or defaults[1], seed=seed, threads=threads)
    ckpt = run_train(ModelConfig(arch=arch, weight_bits=bits, act_bits=bits), tc, out)
    m = ckpt["metrics"]
    echo(f"float twin {m['float_acc']:.2f}%  QAT w{bits}a{bits} {m['qat_acc']:.2f}%  "
               f"({m['train_seconds']:.0f} s) -> {out}")


@main.command()
@click.argument("checkpoint", type=click.Path(path_type=Path), default=flow.DEFAULT_CHECKPOINT)
@click.option("--dataset", type=click.Choice(["mnist", "digits"]), default=None)
@_guard
def evaluate(checkpoint, dataset) -> None:
    """Float-twin vs QAT accuracy of a checkpoint on the test set."""
    import torch

    from netfabric.models.data import load_dataset

    try:
        raw = torch.load(checkpoint, map_location="cpu", weights_only=False)
    except Exception:  # missing or corrupt: load_checkpoint below says which, in one line
        raw = {}
    if isinstance(raw, dict) and raw.get("kind") == "netfabric.transformer":
        from netfabric.models.train_transformer import load_transformer
        from netfabric.models.transformer import evaluate as tacc

        float_model = load_transformer(checkpoint, quant=False)
        qat_model = load_transformer(checkpoint, quant=True)
        x, y = load_dataset(dataset or "mnist", "test")
        f, q = tacc(float_model, x, y), tacc(qat_model, x, y)
        echo(f"float twin {f:.2f}%  QAT INT8 {q:.2f}%  (difference {f - q:+.2f} points)")
        return
    from netfabric.models.train import evaluate as acc
    from netfabric.models.train import load_checkpoint, model_from_checkpoint

    ckpt = load_checkpoint(checkpoint)
    x, y = load_dataset(dataset or ckpt["metrics"]["dataset"], "test")
    f = acc(model_from_checkpoint(ckpt, quant=False), x, y)
    q = acc(model_from_checkpoint(ckpt, quant=True), x, y)
    echo(f"float twin {f:.2f}%  QAT {q:.2f}%  (difference {f - q:+.2f} points)")


@main.command()
@click.argument("checkpoint", type=click.Path(path_type=Path), default=flow.DEFAULT_CHECKPOINT)
@click.option("--out", type=click.Path(path_type=Path), required=True, help="QONNX file to write")
@_guard
def export(checkpoint, out) -> None:
    """Export a QAT checkpoint to QONNX (input annotated as UINT8 pixels)."""
    from netfabric.hls.transformer import is_transformer_checkpoint

    if is_transformer_checkpoint(checkpoint):
        from netfabric.hls.transformer_export import export_transformer_qonnx
        from netfabric.models.train_transformer import load_transformer

        echo(f"wrote {export_transformer_qonnx(load_transformer(checkpoint), out)}")
        return
    echo(f"wrote {flow.export_checkpoint(checkpoint, out)}")


@main.command(name="compile")
@click.argument("qonnx", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True, help="output folder")
@click.option("--clock-mhz", type=float, default=100.0)
@click.option("--target-fps", type=float, default=None, help="fold to reach this throughput")
@click.option("--folding", type=click.Path(path_type=Path), default=None,
              help="explicit FINN folding config (JSON)")
@click.option("--board", default=None,
              help="fold for this board (ulx3s-85f | icebreaker): the fastest folding whose "
                   "predicted resources fit it, up to --target-fps if given")
@click.option("--label-select/--no-label-select", default=True,
              help="end in a top-1 LabelSelect layer, or output integer logits")
@click.option("--input-scale", default=None, metavar="S",
              help="fold input pre-processing into the graph: the model sees (raw - mean) * S "
                   "and the accelerator takes raw UINT8, e.g. 1/255 (one value or one per channel, "
                   "comma-separated)")
@click.option("--input-mean", default=None, metavar="M",
              help="subtracted from the raw input before --input-scale (raw units; one value or "
                   "one per channel)")
@_guard
def compile_cmd(qonnx, out, clock_mhz, target_fps, folding, board, label_select, input_scale,
                input_mean) -> None:
    """Compile QONNX (or a transformer checkpoint) to a folded HW-layer graph."""
    from netfabric.hls.frontend import CompileConfig, parse_input_values
    from netfabric.hls.transformer import compile_transformer_cli, is_transformer_checkpoint

    if board is not None:
        from netfabric.hw.flow import get_board

        if not get_board(board).capacity:
            raise UserError(f"--board {board}: no resource model for its family; fold it with "
                            "--target-fps or --folding")
        if folding is not None:
            raise UserError("--board folds for the board; it cannot be combined with --folding")
    cfg = CompileConfig(clock_mhz=clock_mhz, target_fps=target_fps, folding_json=folding,
                        board=board, label_select=label_select,
                        input_scale=parse_input_values(input_scale, "--input-scale"),
                        input_mean=parse_input_values(input_mean, "--input-mean"))
    progress = lambda s: echo(f"  step {s}")  # noqa: E731
    if is_transformer_checkpoint(qonnx):
        if cfg.input_scale or cfg.input_mean:
            raise UserError("--input-scale/--input-mean apply to QONNX models; the transformer "
                            "checkpoint already takes raw UINT8 pixels")
        # the transformer's HW graph is built from its integer parameters (hls/transformer.py)
        path = compile_transformer_cli(qonnx, out, cfg, progress=progress)
    else:
        path = flow.compile_model(qonnx, out, cfg, progress=progress)
    est = json.loads((Path(out) / "estimates.json").read_text())
    _print_folding(est)
    fps = est["est_fps"]
    finn = est.get("finn_bottleneck_cycles")
    echo(f"wrote {path}  (estimate: {est['bottleneck_cycles']} cycles/frame, {fps:,.0f} frames/s "
         f"at {clock_mhz:g} MHz{f'; FINN estimate {finn}' if finn else ''})"
         if fps else f"wrote {path}")


@main.command()
@click.argument("graph", type=click.Path(path_type=Path))
@click.option("--backend", default="cpu", show_default=True,
              help="auto | cpu | sim | triton | fpga | pynq; auto tries the boards (fpga, pynq), "
                   "then triton, then cpu")
@click.option("--fallback/--no-fallback", default=None,
              help="when a backend fails mid-batch or lacks an op, go on with the next one "
                   "(default: on for auto; a named backend then falls back to the ones after it)")
@click.option("--port", default=None, help="serial port of the fpga backend's board")
@click.option("--chunk", type=click.IntRange(min=1), default=None,
              help="inputs per backend call (what a failure can cost)")
@click.option("--dataset", type=click.Choice(["mnist", "digits"]), default="mnist")
@click.option("--count", type=int, default=1000, help="test images to run")
@click.option("--input", "input_npy", type=click.Path(path_type=Path), default=None,
              help="run on a .npy batch of raw integer inputs instead of the data set")
@_guard
def run(graph, backend, fallback, port, chunk, dataset, count, input_npy) -> None:
    """Run a HW-layer graph on a backend; print predictions, accuracy and who answered."""
    import numpy as np

    from netfabric.models.data import load_dataset

    engine = flow.make_backend(backend, graph, fallback=fallback, port=port, chunk=chunk)
    if input_npy is not None:
        try:
            x = np.load(input_npy)
        except Exception as exc:
            raise UserError(f"cannot read {input_npy} as a .npy array: {exc}") from exc
        y = None
    else:
        x, y = load_dataset(dataset, "test")
        x, y = x[:count, None], y[:count]
    with engine:  # closes a board's port
        t0 = time.perf_counter()
        out = engine.run(x)
        dt = time.perf_counter() - t0
    pred = flow.predictions(out)
    echo(f"backend {engine.name}: {len(pred)} inputs in {dt:.3f} s "
               f"({len(pred) / dt:,.0f} inputs/s)")
    _print_runtime_report(engine)
    echo(f"predictions[:20] {pred[:20].tolist()}")
    if y is not None:
        echo(f"accuracy {100.0 * float((pred == y).mean()):.2f}%")


def _print_folding(est: dict) -> None:
    """One table: per layer the final PE/SIMD, cycles (FINN's estimate beside) and what
    bounded its folding; then the board search's result, if any."""
    from rich.table import Table

    table = Table(title="folding", title_justify="left", box=None, pad_edge=False)
    for col, justify in (("layer", "left"), ("PE", "right"), ("SIMD", "right"),
                         ("cycles", "right"), ("FINN", "right"), ("bound", "left")):
        table.add_column(col, justify=justify)
    bottleneck = est["bottleneck_cycles"]
    for layer in est["layers"]:
        cyc = f"{layer['cycles']:,}"
        table.add_row(layer["name"], str(layer.get("PE", "")), str(layer.get("SIMD", "")),
                      f"[bold]{cyc}[/]" if layer["cycles"] == bottleneck else cyc,
                      f"{layer['finn_cycles']:,}" if "finn_cycles" in layer else "",
                      layer.get("bound", ""))
    console = logs.console()
    console.print(table)
    search = (est.get("folding") or {}).get("board")
    if search:
        used, cap = search["predicted"], search["capacity"]
        util = ", ".join(f"{k} {used[k]:,}/{cap[k]:,}" for k in cap)
        limit = (f"; a faster folding needs more {search['limited_by']}"
                 if search.get("limited_by") else "; the throughput target is met")
        console.print(f"folded for {search['board']}: predicted {util}{limit}",
                      soft_wrap=True, highlight=False)


def _print_runtime_report(engine) -> None:
    """One line per skipped backend, per backend (and part) that answered, per failover."""
    from rich.markup import escape

    console = logs.console()
    say = functools.partial(console.print, soft_wrap=True, highlight=False)
    for name, reason in engine.skipped.items():
        say(f"[yellow]skipped {name}[/]: {escape(reason)}")
    for f in engine.failovers:
        where = f" on {f.part}" if len(engine.parts) > 1 else ""
        say(f"[red]failover[/]: {f.backend} failed{where} after {f.answered} inputs "
            f"({escape(f.reason)}); {f.moved} inputs moved to {f.to}")
    for p in engine.parts:
        where = f" ({p.label})" if len(engine.parts) > 1 else ""
        for name, n in p.answered_by.items():
            say(f"[green]{name}[/] answered {n} inputs{escape(where)}")


@main.command()
@_guard(capture=False)  # print_matrix prints with its own rich Console on sys.stdout
def ops() -> None:
    """Every registered HW-layer op and which pieces it has (semantics, cost model, cpu, rtl,
    triton): the op registry of netfabric/ops."""
    from netfabric.ops.table import print_matrix

    print_matrix()


@main.command(name="bitstream")
@click.option("--model", type=click.Choice(["mlp", "cnn", "transformer", "digits"]), default=None,
              help="shipped model (default: mlp; digits on icebreaker)")
@click.option("--graph", type=click.Path(path_type=Path), default=None,
              help="a compiled HW-layer graph instead of a shipped model")
@click.option("--board", default="ulx3s-85f", show_default=True,
              help="ulx3s-85f | icebreaker | pynq-z2")
@click.option("--freq", type=float, default=None,
              help="target clock, MHz (default: 100; 24 on icebreaker)")
@click.option("--target-fps", type=float, default=None, help="fold to reach this throughput")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="output folder (default: build/bitstream/<model>-<board>)")
@click.option("--seeds", default="1", show_default=True, metavar="N",
              help="place and route with nextpnr seeds 1..N (at most 16): Fmax min/median/max, "
                   "the best seed's bitstream, timing met only if met on every seed")
@click.option("--jobs", default="1", show_default=True, metavar="J",
              help="seeds placed and routed side by side (one nextpnr process, one core and "
                   "its own copy of the design in memory each)")
@_guard
def bitstream_cmd(model, graph, board, freq, target_fps, out, seeds, jobs) -> None:
    """Shipped model (or a HW-layer graph) -> RTL project -> FPGA bitstream."""
    from netfabric import bitstream as bs

    n_seeds = bs.parse_seeds(seeds)  # a bad value fails now, not after the compile
    n_jobs = bs.parse_jobs(jobs)
    model = model or bs.DEFAULT_MODEL.get(board, "mlp")
    freq = freq or bs.DEFAULT_MHZ.get(board, 100.0)
    bs.build(model, board, freq, out or bs.default_out(model, board), target_fps, graph,
             seeds=n_seeds, jobs=n_jobs)


@main.command(name="deploy")
@click.option("--board", default="pynq-z2", show_default=True, help="pynq-z2")
@click.option("--graph", type=click.Path(path_type=Path), default=None,
              help="a compiled HW-layer graph (default: compile the shipped --model)")
@click.option("--model", type=click.Choice(["mlp", "cnn", "digits"]), default=None,
              help="shipped model, when no --graph is given (default: mlp)")
@click.option("--count", type=click.IntRange(min=1), default=100, show_default=True,
              help="test images shipped with the package")
@click.option("--build", is_flag=True, help="also build the .bit and .hwh (needs Vivado)")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="package folder (default: build/deploy/<model or graph>-<board>)")
@_guard
def deploy_cmd(board, graph, model, count, build, out) -> None:
    """A PYNQ deployment package: RTL as a Vivado IP, block design, build script, board script."""
    from netfabric.deploy import build_package, deploy

    name = Path(graph).parent.name if graph else (model or "mlp")
    out = out or Path("build") / "deploy" / f"{name}-{board}"
    package = deploy(board, out, graph=graph, model=model, count=count)
    echo(f"wrote the {board} package {package}: build it with {package / 'build.sh'} (Vivado), "
         f"then run `sudo python3 run_on_board.py` in it on the board")
    if build:
        echo(f"built {build_package(package)} and its .hwh")


@main.command(name="program")
@click.option("--board", default="ulx3s-85f", show_default=True,
              help="ulx3s-85f | icebreaker (open boards, over their USB port)")
@click.option("--bitstream", "bitstream_path", type=click.Path(path_type=Path), default=None,
              help="file to load (default: the board's latest `netfabric bitstream` build)")
@click.option("--flash", is_flag=True, help="write the configuration flash (survives power-off)")
@_guard
def program_cmd(board, bitstream_path, flash) -> None:
    """Load a bitstream onto a board with openFPGALoader (`make program BOARD=...`)."""
    from netfabric.program import program

    loaded = program(board, bitstream_path, flash=flash)
    echo(f"programmed {board} {'flash' if flash else 'FPGA'} with {loaded}")


@main.command()
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="work folder [default: build/demo, build/demo-transformer]")
@click.option("--train", "retrain", is_flag=True, help="train the MLP instead of using the shipped one")
@click.option("--bitstream/--no-bitstream", default=True, help="also build the ECP5 bitstream")
@click.option("--model", type=click.Choice(["mlp", "transformer"]), default="mlp",
              help="the shipped INT8 MLP (default) or the segmented-attention transformer")
@_guard
def demo(out, retrain, bitstream, model) -> None:
    """The main job end to end on a shipped INT8 model (the MLP unless --model transformer)."""
    from netfabric.demo import run_demo

    out = out or Path("build/demo" if model == "mlp" else f"build/demo-{model}")
    sys.exit(run_demo(out, retrain=retrain, model=model,
                      bitstream_board="ulx3s-85f" if bitstream else None))


if __name__ == "__main__":
    main()
