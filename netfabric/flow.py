"""The stages chained: checkpoint -> QONNX -> HW-layer graph -> run on a backend.

Each stage writes a file a user can open: ``model.qonnx.onnx``, ``hw_graph.onnx`` (+
``estimates.json``, ``folding.json``). Writes are atomic (temp file + rename).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PRETRAINED = Path(__file__).resolve().parent.parent / "models" / "pretrained"
DEFAULT_CHECKPOINT = PRETRAINED / "mlp_w8a8.pt"
HW_GRAPH = "hw_graph.onnx"


def atomic_write_text(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def export_checkpoint(checkpoint: Path, out: Path) -> Path:
    from netfabric.models.export import export_qonnx
    from netfabric.models.train import load_checkpoint, model_from_checkpoint

    ckpt = load_checkpoint(checkpoint)
    model = model_from_checkpoint(ckpt, quant=True)
    return export_qonnx(model, tuple(ckpt["config"]["in_shape"]), out)


def compile_model(qonnx: Path, out_dir: Path, cfg, progress: Callable | None = None) -> Path:
    """Run the FINN front end and write the HW-layer graph, estimates and folding config."""
    from netfabric.hls.frontend import compile_qonnx

    result = compile_qonnx(qonnx, cfg, progress=progress)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    graph_path = out_dir / HW_GRAPH
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=".hw_graph.", suffix=".onnx")
    os.close(fd)
    result.model.save(tmp)
    os.chmod(tmp, 0o644)
    os.replace(tmp, graph_path)
    atomic_write_text(out_dir / "estimates.json", json.dumps(result.estimates, indent=2))
    atomic_write_text(out_dir / "folding.json", json.dumps(folding_config(result.model), indent=2))
    return graph_path


def folding_config(model) -> dict:
    """FINN's folding config format (editable, accepted back by ``--folding``)."""
    from qonnx.custom_op.registry import getCustomOp

    cfg: dict = {"Defaults": {}}
    for node in model.graph.node:
        inst = getCustomOp(node)
        entry = {}
        for key in ("PE", "SIMD", "parallel_window", "ram_style", "resType"):
            try:
                entry[key] = inst.get_nodeattr(key)
            except Exception:
                continue
        if entry:
            cfg[node.name] = entry
    return cfg


@dataclass
class RunResult:
    outputs: np.ndarray
    labels: np.ndarray  # predicted class per input
    seconds: float


def make_backend(name: str, graph_path: Path, **kwargs):
    """The runtime's backend factory (only cpu and sim exist so far)."""
    from netfabric.host.runtime import open_backend

    return open_backend(name, graph_path, **kwargs)


def predictions(outputs: np.ndarray) -> np.ndarray:
    """Class index per input: LabelSelect output as is, integer logits by argmax."""
    outputs = outputs.reshape(outputs.shape[0], -1)
    return outputs[:, 0] if outputs.shape[1] == 1 else outputs.argmax(axis=1)
