"""Export a trained QAT model to QONNX with its input declared as UINT8 pixels."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from netfabric.files import atomic_path

INPUT_DTYPE = "UINT8"


def export_qonnx(model: nn.Module, in_shape: tuple[int, ...], out: Path) -> Path:
    """Write ``model`` as QONNX to ``out`` (atomically) and annotate the input as UINT8.

    The model's first op scales raw pixels 0..255, so the exported graph's input really is an
    8-bit unsigned integer: FINN needs that annotation to build integer hardware from layer one.
    """
    from brevitas.export import export_qonnx as brevitas_export_qonnx
    from qonnx.core.datatype import DataType
    from qonnx.core.modelwrapper import ModelWrapper

    out = Path(out)
    model = model.eval()
    with atomic_path(out) as tmp:
        with torch.no_grad():
            brevitas_export_qonnx(model, input_t=torch.zeros(1, *in_shape), export_path=str(tmp))
        wrapped = ModelWrapper(str(tmp))
        wrapped.set_tensor_datatype(wrapped.graph.input[0].name, DataType[INPUT_DTYPE])
        wrapped.save(str(tmp))
    return out
