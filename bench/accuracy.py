"""Accuracy of every shipped model on its full test set: float twin, QAT model, and the exact
integer CPU engine running the compiled HW-layer graph (plus whether its predictions equal QAT's).

    python bench/accuracy.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine, own_output, say, write_json, write_section  # noqa: E402


def _torch_predictions(model, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return np.concatenate([model(torch.from_numpy(x[i : i + 500, None].astype(np.float32))).argmax(1).numpy()
                               for i in range(0, len(x), 500)])


def main() -> None:
    import torch

    from netfabric import flow
    from netfabric.hls.frontend import CompileConfig
    from netfabric.hls.transformer import compile_transformer_cli
    from netfabric.host.cpu_engine import CpuEngine
    from netfabric.models.data import load_dataset
    from netfabric.models.train import load_checkpoint, model_from_checkpoint
    from netfabric.models.train_transformer import load_transformer

    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name, ckpt, dataset in [("MLP 784-64-64-64-10 w8a8", "mlp_w8a8.pt", "mnist"),
                                    ("CNN 16-32-32-64 w8a8", "cnn_w8a8.pt", "mnist"),
                                    ("segmented-attention transformer INT8", "transformer_int8.pt", "mnist"),
                                    ("MLP 64-32-32-10 w4a4 (iCE40)", "mlp_digits_w4a4.pt", "digits")]:
            x, y = load_dataset(dataset, "test")
            path = flow.PRETRAINED / ckpt
            t0 = time.perf_counter()
            if "transformer" in ckpt:
                flt, qat = load_transformer(path, quant=False), load_transformer(path, quant=True)
                graph = compile_transformer_cli(path, tmp / ckpt)
            else:
                c = load_checkpoint(path)
                flt, qat = model_from_checkpoint(c, quant=False), model_from_checkpoint(c, quant=True)
                qonnx = flow.export_checkpoint(path, tmp / f"{ckpt}.onnx")
                graph = flow.compile_model(qonnx, tmp / ckpt, CompileConfig(label_select=False))
            pf, pq = _torch_predictions(flt, x), _torch_predictions(qat, x)
            engine = CpuEngine(graph)
            out = np.concatenate([engine.run(x[i : i + 1000, None]) for i in range(0, len(x), 1000)])
            pi = flow.predictions(out)
            row = {"model": name, "dataset": f"{dataset} test ({len(y)})",
                   "float": round(100 * float((pf == y).mean()), 2),
                   "qat": round(100 * float((pq == y).mean()), 2),
                   "integer_engine": round(100 * float((pi == y).mean()), 2),
                   "engine_equals_qat_predictions": round(100 * float((pi == pq).mean()), 2),
                   "seconds": round(time.perf_counter() - t0, 1)}
            rows.append(row)
            say(row)
    write_json("accuracy", {"command": "python bench/accuracy.py", "machine": machine(), "rows": rows})
    lines = ["## Accuracy of the shipped models", "",
             "Command: `python bench/accuracy.py`. Integer engine = the compiled HW-layer graph on the "
             "exact CPU engine (the integers every backend reproduces).", "",
             "| model | test set | float twin | QAT | integer engine | engine predictions = QAT |",
             "|---|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['dataset']} | {r['float']:.2f}% | {r['qat']:.2f}% | "
                     f"{r['integer_engine']:.2f}% | {r['engine_equals_qat_predictions']:.2f}% |")
    write_section("accuracy", "\n".join(lines))


if __name__ == "__main__":
    with own_output():
        main()
