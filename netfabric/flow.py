"""The stages chained: checkpoint -> QONNX -> HW-layer graph -> run on a backend.

Each stage writes a file a user can open: ``model.qonnx.onnx``, ``hw_graph.onnx`` (+
``estimates.json``, ``folding.json``). Writes are atomic (:mod:`netfabric.files`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .paths import package_dir

# netfabric.models is the models/ folder of a checkout, netfabric/models/ of a wheel install.
PRETRAINED = package_dir("models") / "pretrained"
DEFAULT_CHECKPOINT = PRETRAINED / "mlp_w8a8.pt"
HW_GRAPH = "hw_graph.onnx"


def export_checkpoint(checkpoint: Path, out: Path) -> Path:
    from netfabric.models.export import export_qonnx
    from netfabric.models.train import load_checkpoint, model_from_checkpoint

    ckpt = load_checkpoint(checkpoint)
    model = model_from_checkpoint(ckpt, quant=True)
    return export_qonnx(model, tuple(ckpt["config"]["in_shape"]), out)


def compile_model(qonnx: Path, out_dir: Path, cfg, progress: Callable | None = None) -> Path:
    """Run the FINN front end and write the HW-layer graph, estimates and folding config."""
    from netfabric.hls.backhalf import save
    from netfabric.hls.frontend import compile_qonnx

    result = compile_qonnx(qonnx, cfg, progress=progress)
    return save(result.model, result.estimates, Path(out_dir))


def folding_config(model) -> dict:
    """FINN's folding config format (editable, accepted back by ``--folding``)."""
    from netfabric.hls.backhalf import folding_config as config

    return config(model)


@dataclass
class RunResult:
    outputs: np.ndarray
    labels: np.ndarray  # predicted class per input
    seconds: float


def make_backend(name: str, graph_path: Path, fallback: bool | None = None, **kwargs):
    """The runtime over backend ``name`` (auto | cpu | sim | triton | fpga | pynq): a
    ``FallbackRuntime`` reporting who answered each input (``answered_by``), what was skipped
    and any failover; ``fallback`` (default: on for auto) moves inputs to the next backend
    when one fails. ``kwargs`` go to the backends that take them (``port=``, ``chunk=``)."""
    from netfabric.host.runtime import open_runtime

    return open_runtime(name, graph_path, fallback=fallback, **kwargs)


def predictions(outputs: np.ndarray) -> np.ndarray:
    """Class index per input: LabelSelect output as is, integer logits by argmax."""
    outputs = outputs.reshape(outputs.shape[0], -1)
    return outputs[:, 0] if outputs.shape[1] == 1 else outputs.argmax(axis=1)
