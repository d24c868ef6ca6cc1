"""Throughput of netfabric's exact CPU engine vs peers, measured in one run on one thread.

Peers: onnxruntime on the float twin quantized to INT8 with QDQ (static calibration), torch on the
float twin, and the Brevitas QAT model in torch. Batch 1 and 64, shipped INT8 MLP, MNIST test set.
Then the shipped segmented-attention transformer: the engine vs its torch float twin.
Windows of all runners of one table are interleaved (a shared machine's load hits them alike);
each rate is the median over the windows.

    python bench/cpu_engine.py [--quick] [--json-only]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import BenchArgs, machine, own_output, say, write_json, write_section  # noqa: E402


def _batches(x: np.ndarray, batch: int) -> list[np.ndarray]:
    return [x[i : i + batch] for i in range(0, len(x) - batch + 1, batch)][: max(1, 256 // batch)]


def _window(fn, batches: list[np.ndarray], seconds: float) -> float:
    done, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for b in batches:
            fn(b)
            done += len(b)
    return done / (time.perf_counter() - t0)


def throughputs(runners: dict, batch: int, seconds: float, repeats: int) -> dict[str, float]:
    """Median inferences per second of each runner over ``repeats`` interleaved windows."""
    prepared = {name: (fn, _batches(data, batch)) for name, (fn, data) in runners.items()}
    for fn, batches in prepared.values():
        fn(batches[0])  # warm-up
    rates: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(repeats):
        for name, (fn, batches) in prepared.items():
            rates[name].append(_window(fn, batches, seconds))
    return {name: statistics.median(r) for name, r in rates.items()}


def ort_session(model_bytes_or_path, ort):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model_bytes_or_path, opts, providers=["CPUExecutionProvider"])


def qdq_float_twin(float_model, calib: np.ndarray, workdir: Path) -> Path:
    """Float twin -> ONNX -> onnxruntime static INT8 QDQ quantization."""
    import torch
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    fp32 = workdir / "float.onnx"
    torch.onnx.export(
        float_model,
        torch.zeros(1, 1, 28, 28),
        str(fp32),
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "n"}, "y": {0: "n"}},
        dynamo=False,
    )

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"x": calib[i : i + 32]} for i in range(0, len(calib), 32)])

        def get_next(self):
            return next(self.it, None)

    int8 = workdir / "qdq.onnx"
    quantize_static(
        str(fp32),
        str(int8),
        Reader(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    return int8


def main() -> None:
    ap = BenchArgs(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="short windows (smoke run)")
    ap.add_argument("--json-only", action="store_true",
                    help="write bench/results/cpu_engine.json but leave RESULTS.md alone")
    args = ap.parse_args()
    seconds, repeats = (0.3, 3) if args.quick else (1.0, 7)
    load_before = os.getloadavg()

    import onnxruntime as ort
    import torch

    from netfabric import flow
    from netfabric.hls.frontend import CompileConfig
    from netfabric.host import cpu_fused
    from netfabric.host.cpu_engine import CpuEngine
    from netfabric.models.data import load_mnist
    from netfabric.models.train import load_checkpoint, model_from_checkpoint

    torch.set_num_threads(1)
    x_test, y_test = load_mnist("test")
    x_train, _ = load_mnist("train")
    x_u8 = x_test[:, None]
    x_f32 = x_u8.astype(np.float32)
    ckpt = load_checkpoint(flow.DEFAULT_CHECKPOINT)
    float_model = model_from_checkpoint(ckpt, quant=False)
    qat_model = model_from_checkpoint(ckpt, quant=True)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        qonnx = flow.export_checkpoint(flow.DEFAULT_CHECKPOINT, tmp / "mlp.qonnx.onnx")
        graph = flow.compile_model(qonnx, tmp / "hw", CompileConfig(label_select=False))
        engine = CpuEngine(graph, threads=1)
        routing = engine.routing()
        qdq = ort_session(
            str(qdq_float_twin(float_model, x_train[:512, None].astype(np.float32), tmp)), ort
        )

    def acc(pred: np.ndarray) -> float:
        return round(100.0 * float((pred == y_test).mean()), 2)

    with torch.no_grad():
        runners = {
            "netfabric cpu engine (exact INT8)": (lambda b: engine.run(b), x_u8),
            "onnxruntime QDQ INT8 (float twin)": (lambda b: qdq.run(None, {"x": b})[0], x_f32),
            "torch float twin": (lambda b: float_model(torch.from_numpy(b)).numpy(), x_f32),
            "torch Brevitas QAT": (lambda b: qat_model(torch.from_numpy(b)).numpy(), x_f32),
        }
        rows = []
        for name, (fn, data) in runners.items():
            accuracy = acc(
                np.concatenate([fn(data[i : i + 500]) for i in range(0, len(data), 500)]).argmax(1)
            )
            rows.append({"runner": name, "accuracy": accuracy})
        r1 = throughputs(runners, 1, seconds, repeats)
        r64 = throughputs(runners, 64, seconds, repeats)
        for row in rows:
            row["batch1_per_s"] = round(r1[row["runner"]])
            row["batch64_per_s"] = round(r64[row["runner"]])
            say(f"{row['runner']:<38} acc {row['accuracy']:6.2f}%  "
                  f"batch1 {row['batch1_per_s']:>10,}/s  batch64 {row['batch64_per_s']:>10,}/s")
        tf_rows = _transformer_rows(x_u8, y_test, seconds, repeats, acc)

    base = rows[0]
    for row in rows:
        row["engine_speedup_b1"] = round(base["batch1_per_s"] / row["batch1_per_s"], 2)
        row["engine_speedup_b64"] = round(base["batch64_per_s"] / row["batch64_per_s"], 2)
    for row in tf_rows:
        row["engine_speedup_b1"] = round(tf_rows[0]["batch1_per_s"] / row["batch1_per_s"], 2)
        row["engine_speedup_b64"] = round(tf_rows[0]["batch64_per_s"] / row["batch64_per_s"], 2)
    ort_row = rows[1]
    cmd = "python bench/cpu_engine.py" + (" --quick" if args.quick else "")
    write_json(
        "cpu_engine",
        {
            "command": cmd,
            "model": "shipped INT8 MLP 784-64-64-64-10",
            "threads": 1,
            "machine": machine(),
            "load_average_1min": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
            "engine_routing": routing,
            "one_pass_kernels": cpu_fused.enabled(),
            "rows": rows,
            "transformer_model": "shipped segmented-attention transformer INT8",
            "transformer_rows": tf_rows,
            "ratios": {  # engine throughput / the named peer's
                "mlp_engine_vs_onnxruntime_qdq_b1": ort_row["engine_speedup_b1"],
                "mlp_engine_vs_onnxruntime_qdq_b64": ort_row["engine_speedup_b64"],
                "transformer_engine_vs_torch_float_twin_b1": tf_rows[1]["engine_speedup_b1"],
                "transformer_engine_vs_torch_float_twin_b64": tf_rows[1]["engine_speedup_b64"],
            },
        },
    )
    if args.json_only:
        return
    lines = [
        "## CPU engine vs peers (shipped INT8 MLP, MNIST test set, 1 thread)",
        "",
        f"Command: `{cmd}` — inferences per second, median of {repeats} interleaved windows; "
        "'engine ×' is the netfabric engine's throughput divided by the row's.",
        "",
        "| runner | accuracy | batch 1 /s | batch 64 /s | engine × (b1) | engine × (b64) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['runner']} | {r['accuracy']:.2f}% | {r['batch1_per_s']:,} | "
            f"{r['batch64_per_s']:,} | {r['engine_speedup_b1']} | {r['engine_speedup_b64']} |"
        )
    lines += [
        "",
        "Shipped segmented-attention transformer (MNIST test set, 1 thread, same windows):",
        "",
        "| runner | accuracy | batch 1 /s | batch 64 /s | engine × (b1) | engine × (b64) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in tf_rows:
        lines.append(
            f"| {r['runner']} | {r['accuracy']:.2f}% | {r['batch1_per_s']:,} | "
            f"{r['batch64_per_s']:,} | {r['engine_speedup_b1']} | {r['engine_speedup_b64']} |"
        )
    lines += ["", f"The MLP engine on this machine: {routing} (each exact executor, and each "
              "form of the int8 chain, timed on batches of 1 and 64 when the engine is built). "
              "The numpy plan's thresholds and the transformer's softmax ran as "
              + ("one-pass numba kernels (`host/cpu_fused.py`)." if cpu_fused.enabled()
                 else "numpy passes (numba not installed).")]
    lines += ["", f"Load average (1 min) before/after on the shared machine: "
              f"{load_before[0]:.1f} / {os.getloadavg()[0]:.1f}."]
    write_section("cpu_engine", "\n".join(lines))


def _transformer_rows(x_u8, y_test, seconds: float, repeats: int, acc) -> list[dict]:
    """The shipped transformer: the engine on its compiled HW-layer graph vs its torch float
    twin (an onnxruntime row would need an ONNX export of the twin's segmented attention)."""
    import torch

    from netfabric import flow
    from netfabric.hls.transformer import compile_transformer_cli
    from netfabric.host.cpu_engine import CpuEngine
    from netfabric.models.train_transformer import load_transformer

    ckpt = flow.PRETRAINED / "transformer_int8.pt"
    twin = load_transformer(ckpt, quant=False)
    with tempfile.TemporaryDirectory() as tmp:
        engine = CpuEngine(compile_transformer_cli(ckpt, Path(tmp) / "tf"), threads=1)
    x_f32 = x_u8.astype(np.float32)
    runners = {
        "netfabric cpu engine (exact INT8)": (lambda b: engine.run(b), x_u8),
        "torch float twin": (lambda b: twin(torch.from_numpy(b)).numpy(), x_f32),
    }
    rows = []
    with torch.no_grad():
        for name, (fn, data) in runners.items():
            pred = np.concatenate([fn(data[i : i + 500]) for i in range(0, len(data), 500)])
            rows.append({"runner": name, "accuracy": acc(pred.reshape(len(data), -1).argmax(1))})
        r1 = throughputs(runners, 1, seconds, repeats)
        r64 = throughputs(runners, 64, seconds, repeats)
    for row in rows:
        row["batch1_per_s"] = round(r1[row["runner"]])
        row["batch64_per_s"] = round(r64[row["runner"]])
        say(f"transformer {row['runner']:<34} acc {row['accuracy']:6.2f}%  "
              f"batch1 {row['batch1_per_s']:>10,}/s  batch64 {row['batch64_per_s']:>10,}/s")
    return rows


if __name__ == "__main__":
    with own_output():
        main()
