"""`make demo`: the shipped INT8 MLP through every stage that exists, printing what it measured."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from . import flow

console = Console()


def _stage(title: str) -> None:
    console.rule(f"[bold]{title}")


def run_demo(out: Path, retrain: bool = False, reference_count: int = 200,
             sim_count: int = 50, bitstream_board: str | None = "ulx3s-85f") -> int:
    from netfabric.hls.frontend import CompileConfig
    from netfabric.hls.reference import reference_run
    from netfabric.host.cpu_engine import CpuEngine
    from netfabric.models.data import load_mnist
    from netfabric.models.train import (
        TrainConfig,
        evaluate,
        load_checkpoint,
        model_from_checkpoint,
        train,
    )
    from netfabric.models.zoo import ModelConfig

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, str]] = []

    _stage("1. model")
    ckpt_path = flow.DEFAULT_CHECKPOINT
    if retrain:
        ckpt_path = out / "mlp_w8a8.pt"
        train(ModelConfig(arch="mlp"), TrainConfig(float_epochs=40, qat_epochs=20), ckpt_path)
    ckpt = load_checkpoint(ckpt_path)
    x_test, y_test = load_mnist("test")
    float_acc = evaluate(model_from_checkpoint(ckpt, quant=False), x_test, y_test)
    qat_model = model_from_checkpoint(ckpt, quant=True)
    qat_acc = evaluate(qat_model, x_test, y_test)
    console.print(f"checkpoint {ckpt_path.name}: {ckpt['config']['arch']} "
                  f"w{ckpt['config']['weight_bits']}a{ckpt['config']['act_bits']}")
    rows += [("float twin accuracy (MNIST test, 10k)", f"{float_acc:.2f}%"),
             ("QAT INT8 accuracy", f"{qat_acc:.2f}%")]

    _stage("2. export to QONNX")
    qonnx = flow.export_checkpoint(ckpt_path, out / "mlp_w8a8.qonnx.onnx")
    console.print(f"wrote {qonnx}")

    _stage("3. FINN front end -> HW-layer graph")
    t0 = time.perf_counter()
    cfg = CompileConfig(clock_mhz=100.0, target_fps=100_000)
    graph = flow.compile_model(qonnx, out / "hw", cfg, progress=lambda s: console.print(f"  step {s}"))
    est = json.loads((out / "hw" / "estimates.json").read_text())
    console.print(f"wrote {graph} in {time.perf_counter() - t0:.1f} s")
    rows.append(("HW layers", ", ".join(layer["op_type"] for layer in est["layers"])))
    rows.append(("FINN estimate, cycles/frame", f"{est['bottleneck_cycles']}"))

    _stage("4. exact CPU engine")
    from netfabric.host.hwgraph import load_hwgraph

    g = load_hwgraph(graph)
    logits_name = g.nodes[-1].inputs[0] if g.nodes[-1].op_type == "LabelSelect" else g.output_name
    engine = CpuEngine(graph, extra_outputs=[logits_name])
    t0 = time.perf_counter()
    labels, logits = engine.run_all(x_test[:, None])
    dt = time.perf_counter() - t0
    labels = labels.reshape(-1)
    int_acc = 100.0 * float((labels == y_test).mean())
    import torch

    with torch.no_grad():
        qat_pred = qat_model(torch.from_numpy(x_test[:, None].astype(np.float32))).argmax(1).numpy()
    agree = 100.0 * float((qat_pred == labels).mean())
    rows += [("integer accuracy (CPU engine, 10k)", f"{int_acc:.2f}%"),
             ("predictions equal to QAT model", f"{agree:.2f}%"),
             ("CPU engine throughput (1 thread)", f"{len(labels) / dt:,.0f} images/s")]

    _stage(f"5. bit-exact check against FINN's reference on {reference_count} images")
    from qonnx.core.modelwrapper import ModelWrapper

    xs = engine.check_input(x_test[:reference_count, None]).astype(np.float32)
    ref_labels, ref_logits = reference_run(ModelWrapper(str(graph)), xs, tensors=[logits_name])
    exact = np.array_equal(ref_labels.reshape(-1), labels[:reference_count]) and np.array_equal(
        ref_logits.reshape(reference_count, -1), logits[:reference_count].reshape(reference_count, -1))
    rows.append((f"CPU engine == FINN reference ({reference_count} images, logits + labels)",
                 "[green]bit-exact[/]" if exact else "[red]MISMATCH[/]"))

    _stage(f"6. RTL: stitched accelerator, cycle-accurate simulation of {sim_count} images")
    sim_ok = _rtl_stage(graph, out, x_test[:sim_count, None], labels[:sim_count], est, rows)

    _stage("7. runtime: automatic backend choice on this machine")
    from netfabric.host.runtime import open_backend

    auto = open_backend("auto", graph)
    auto_labels = auto.run(x_test[:100, None]).reshape(-1)
    console.print(f"auto picked the [bold]{auto.name}[/] backend (no FPGA board or GPU here)")
    rows.append(("runtime 'auto' backend on this machine",
                 f"{auto.name} ({'same labels' if np.array_equal(auto_labels, labels[:100]) else 'DIFFERENT'})"))

    bit_ok = True
    if bitstream_board:
        _stage(f"8. bitstream for {bitstream_board} (Yosys + nextpnr)")
        bit_ok = _bitstream_stage(graph, out, bitstream_board, rows)

    table = Table(title="netfabric demo: shipped INT8 MLP", show_lines=False)
    table.add_column("measured")
    table.add_column("value", justify="right")
    for k, v in rows:
        table.add_row(k, v)
    console.print(table)
    return 0 if exact and sim_ok and bit_ok else 1


def _rtl_stage(graph: Path, out: Path, x: np.ndarray, cpu_labels: np.ndarray, est: dict,
               rows: list) -> bool:
    from netfabric.host.sim_backend import SimBackend
    from netfabric.sim.runner import SimulatorNotFound

    try:
        sim = SimBackend(graph, project_dir=out / "rtl")
    except SimulatorNotFound as exc:
        rows.append(("RTL simulation", f"[yellow]skipped: {exc}[/]"))
        return True
    t0 = time.perf_counter()
    sim_labels = sim.run(x).reshape(-1)
    dt = time.perf_counter() - t0
    same = np.array_equal(sim_labels, cpu_labels)
    m = sim.last_metrics
    console.print(f"project {sim.project} simulated in {dt:.1f} s (Verilator build included)")
    rows += [(f"RTL simulation == CPU engine ({len(x)} images)",
              "[green]bit-exact[/]" if same else "[red]MISMATCH[/]"),
             ("cycles/frame: measured / ideal / FINN estimate",
              f"{m.get('interval', float('nan')):.0f} / {sim.manifest['ideal_cycles_per_frame']} / "
              f"{est['bottleneck_cycles']}"),
             ("first-frame latency (cycles)", f"{m['first_frame_latency']}")]
    return same


def _bitstream_stage(graph: Path, out: Path, board: str, rows: list) -> bool:
    from netfabric.hw.flow import build_bitstream
    from netfabric.hw.flow.errors import FlowError

    try:
        report = build_bitstream(out / "rtl", board, out / "bitstream", freq_mhz=100.0)
    except FlowError as exc:
        rows.append((f"bitstream ({board})", f"[yellow]not built: {exc}[/]"))
        return True
    util = ", ".join(f"{k} {report.resource(k).used}" for k in ("LUT4", "FF", "DSP", "BRAM")
                     if report.resource(k) is not None)
    rows += [(f"bitstream ({board})", str(report.bitstream)),
             ("Fmax vs 100 MHz target", f"{report.fmax_mhz:.1f} MHz "
              f"({'[green]met[/]' if report.timing_met else '[red]not met[/]'})"),
             ("utilisation", util)]
    return True
