"""`netfabric train | export | compile | run | demo` — the stages from the command line.

Errors that come from bad input (missing or corrupt files, unsupported layers, wrong shapes)
are printed as one clear line and exit with status 2, never as a traceback.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from . import flow


class UserError(click.ClickException):
    exit_code = 2


def _user_errors():
    """Exception types that mean 'the input is wrong', imported lazily."""
    from netfabric.hls.errors import CompileError
    from netfabric.host.hwgraph import GraphError
    from netfabric.host.runtime import BackendUnavailable
    from netfabric.models.data import DataError
    from netfabric.models.train import CheckpointError

    return (CompileError, GraphError, BackendUnavailable, DataError, CheckpointError, ValueError,
            FileNotFoundError)


def _guard(fn):
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except click.ClickException:
            raise
        except _user_errors() as exc:
            raise UserError(str(exc)) from exc

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


@click.group()
def main() -> None:
    """netfabric: quantized networks from Brevitas training to FPGA hardware."""


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
        click.echo(f"float twin {m['float_acc']:.2f}%  QAT INT8 {m['int8_acc']:.2f}%  "
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
    click.echo(f"float twin {m['float_acc']:.2f}%  QAT w{bits}a{bits} {m['qat_acc']:.2f}%  "
               f"({m['train_seconds']:.0f} s) -> {out}")


@main.command()
@click.argument("checkpoint", type=click.Path(path_type=Path), default=flow.DEFAULT_CHECKPOINT)
@click.option("--dataset", type=click.Choice(["mnist", "digits"]), default=None)
@_guard
def evaluate(checkpoint, dataset) -> None:
    """Float-twin vs QAT accuracy of a checkpoint on the test set."""
    import torch

    from netfabric.models.data import load_dataset

    raw = torch.load(checkpoint, map_location="cpu", weights_only=False) if Path(checkpoint).is_file() else {}
    if isinstance(raw, dict) and raw.get("kind") == "netfabric.transformer":
        from netfabric.models.train_transformer import load_transformer
        from netfabric.models.transformer import evaluate as tacc

        x, y = load_dataset(dataset or "mnist", "test")
        f = tacc(load_transformer(checkpoint, quant=False), x, y)
        q = tacc(load_transformer(checkpoint, quant=True), x, y)
        click.echo(f"float twin {f:.2f}%  QAT INT8 {q:.2f}%  (difference {f - q:+.2f} points)")
        return
    from netfabric.models.train import evaluate as acc
    from netfabric.models.train import load_checkpoint, model_from_checkpoint

    ckpt = load_checkpoint(checkpoint)
    x, y = load_dataset(dataset or ckpt["metrics"]["dataset"], "test")
    f = acc(model_from_checkpoint(ckpt, quant=False), x, y)
    q = acc(model_from_checkpoint(ckpt, quant=True), x, y)
    click.echo(f"float twin {f:.2f}%  QAT {q:.2f}%  (difference {f - q:+.2f} points)")


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

        click.echo(f"wrote {export_transformer_qonnx(load_transformer(checkpoint), out)}")
        return
    click.echo(f"wrote {flow.export_checkpoint(checkpoint, out)}")


@main.command(name="compile")
@click.argument("qonnx", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True, help="output folder")
@click.option("--clock-mhz", type=float, default=100.0)
@click.option("--target-fps", type=float, default=None, help="fold to reach this throughput")
@click.option("--folding", type=click.Path(path_type=Path), default=None,
              help="explicit FINN folding config (JSON)")
@click.option("--label-select/--no-label-select", default=True,
              help="end in a top-1 LabelSelect layer, or output integer logits")
@_guard
def compile_cmd(qonnx, out, clock_mhz, target_fps, folding, label_select) -> None:
    """Compile QONNX (or a transformer checkpoint) to a folded HW-layer graph."""
    from netfabric.hls.frontend import CompileConfig
    from netfabric.hls.transformer import compile_transformer_cli, is_transformer_checkpoint

    cfg = CompileConfig(clock_mhz=clock_mhz, target_fps=target_fps, folding_json=folding,
                        label_select=label_select)
    progress = lambda s: click.echo(f"  step {s}")  # noqa: E731
    if is_transformer_checkpoint(qonnx):
        # the transformer's HW graph is built from its integer parameters (hls/transformer.py)
        path = compile_transformer_cli(qonnx, out, cfg, progress=progress)
    else:
        path = flow.compile_model(qonnx, out, cfg, progress=progress)
    est = json.loads((Path(out) / "estimates.json").read_text())
    for layer in est["layers"]:
        fold = " ".join(f"{k}={layer[k]}" for k in ("PE", "SIMD") if k in layer)
        click.echo(f"  {layer['name']:<34} {fold:<14} {layer['cycles']:>8} cycles")
    fps = est["est_fps"]
    click.echo(f"wrote {path}  (FINN estimate: {est['bottleneck_cycles']} cycles/frame, "
               f"{fps:,.0f} frames/s at {clock_mhz:g} MHz)" if fps else f"wrote {path}")


@main.command()
@click.argument("graph", type=click.Path(path_type=Path))
@click.option("--backend", default="cpu", help="cpu | sim | pynq | triton | auto")
@click.option("--dataset", type=click.Choice(["mnist", "digits"]), default="mnist")
@click.option("--count", type=int, default=1000, help="test images to run")
@click.option("--input", "input_npy", type=click.Path(path_type=Path), default=None,
              help="run on a .npy batch of raw integer inputs instead of the data set")
@_guard
def run(graph, backend, dataset, count, input_npy) -> None:
    """Run a HW-layer graph on a backend; print predictions and accuracy."""
    import numpy as np

    from netfabric.models.data import load_dataset

    engine = flow.make_backend(backend, graph)
    if input_npy is not None:
        try:
            x = np.load(input_npy)
        except Exception as exc:
            raise UserError(f"cannot read {input_npy} as a .npy array: {exc}") from exc
        y = None
    else:
        x, y = load_dataset(dataset, "test")
        x, y = x[:count, None], y[:count]
    t0 = time.perf_counter()
    out = engine.run(x)
    dt = time.perf_counter() - t0
    pred = flow.predictions(out)
    click.echo(f"backend {engine.name}: {len(pred)} inputs in {dt:.3f} s "
               f"({len(pred) / dt:,.0f} inputs/s)")
    click.echo(f"predictions[:20] {pred[:20].tolist()}")
    if y is not None:
        click.echo(f"accuracy {100.0 * float((pred == y).mean()):.2f}%")


@main.command()
@click.option("--out", type=click.Path(path_type=Path), default=Path("build/demo"))
@click.option("--train", "retrain", is_flag=True, help="train the MLP instead of using the shipped one")
@click.option("--bitstream/--no-bitstream", default=True, help="also build the ECP5 bitstream")
@_guard
def demo(out, retrain, bitstream) -> None:
    """The main job end to end on the shipped INT8 MLP."""
    from netfabric.demo import run_demo

    sys.exit(run_demo(out, retrain=retrain, bitstream_board="ulx3s-85f" if bitstream else None))


if __name__ == "__main__":
    main()
