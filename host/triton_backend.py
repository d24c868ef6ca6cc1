"""The ``triton`` backend: a HW-layer graph run as Triton kernels over torch tensors.

Same contract as ``cpu_engine.CpuEngine``: ``run(x)`` takes raw integers in the model's original
input layout and returns the graph's integer output after the host's post steps, bit-exact with
every other backend. Each node is dispatched to its op's registered ``triton`` piece
(``triton_ops.py``), prepared once at construction (weights, thresholds, index tables uploaded
to the device); ``run`` then only launches kernels. The graph is a DAG in topological order:
a fork's outputs alias its input, a join reads two earlier streams.

Device: a CUDA GPU when torch sees one; else CPU tensors under Triton's interpreter, when
``TRITON_INTERPRET=1`` was set before the kernels were imported (tests only: slow); else the
backend is unavailable, with the reason.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np

from netfabric.errors import BackendUnavailable
from netfabric.ops.registry import require

from .hwgraph import GraphError, apply_host_steps, load_hwgraph

NO_TRITON = "triton is not installed: pip install 'netfabric[gpu]'"
NO_DEVICE = "no CUDA GPU found and TRITON_INTERPRET is not set"


def _interpreted() -> bool:
    """True when the kernels were built for Triton's interpreter (the variable was set before
    they were imported; triton reads it when a kernel is defined)."""
    from triton.runtime.interpreter import InterpretedFunction

    from .triton_kernels.mvau import _mvau_kernel

    return isinstance(_mvau_kernel, InterpretedFunction)


def triton_availability() -> str | None:
    """None when the triton backend can run here, else the reason it cannot."""
    if importlib.util.find_spec("triton") is None or importlib.util.find_spec("torch") is None:
        return NO_TRITON
    import torch

    if torch.cuda.is_available():
        return None
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        if _interpreted():
            return None
        return ("TRITON_INTERPRET was set after the Triton kernels were imported; set it "
                "before starting Python")
    return NO_DEVICE


def pick_device(device=None):
    """The torch device the kernels run on: ``device`` if given, CUDA if available, else the
    CPU under the interpreter; BackendUnavailable with the reason otherwise."""
    reason = triton_availability()
    if reason == NO_TRITON:
        raise BackendUnavailable(NO_TRITON)
    import torch

    if device is not None:
        device = torch.device(device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailable(f"device {device} asked for, but {NO_DEVICE.split(' and')[0]}")
        if device.type == "cpu" and not _interpreted():
            raise BackendUnavailable("Triton kernels run on CPU tensors only under the "
                                     "interpreter: set TRITON_INTERPRET=1 before starting Python")
        return device
    if reason:
        raise BackendUnavailable(reason)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class TritonBackend:
    """Run a compiled HW-layer graph with Triton kernels, bit-exactly.

    ``run(x)`` takes a batch in the model's original input layout (e.g. uint8 pixels
    ``[N, 1, 28, 28]``) and returns the integer output of the graph (labels or integer logits).
    """

    name = "triton"

    def __init__(self, graph_path: str | Path, device=None):
        self.device = pick_device(device)
        self.graph = load_hwgraph(graph_path)
        self.input_type = self.graph.dtypes.get(self.graph.input_name)
        self.input_shape = json.loads(self.graph.metadata.get("host_input_shape", "null")) or \
            self.graph.input_shape
        self.steps = []  # (node, stream inputs, run)
        produced = {self.graph.input_name}
        for node in self.graph.nodes:
            piece = require(node.op_type, ("triton",), node.name).piece("triton")
            streams = [t for t in node.inputs if t and t not in self.graph.params]
            missing = [t for t in streams if t not in produced]
            if not streams or missing:
                raise GraphError(f"node {node.name}: input {(missing or node.inputs)[0]} is not "
                                 "produced earlier")
            self.steps.append((node, streams, piece.fn(node, self.graph, self.device)))
            produced.update(node.outputs)
        if self.graph.output_name not in produced:
            raise GraphError(f"tensor {self.graph.output_name} is not produced by the graph")
        # after its last reader, a stream's memory can go back to the allocator
        self._last_use = {t: i for i, (_, ins, _) in enumerate(self.steps) for t in ins}

    def check_input(self, x: np.ndarray) -> np.ndarray:
        """Shape, integrality and range as the CPU engine checks them; int32 in graph layout."""
        from .cpu_engine import CpuEngine

        return CpuEngine.check_input(self, x)  # uses graph, input_shape and input_type only

    def to_device(self, x: np.ndarray):
        """The checked batch (``check_input``) as a tensor on the backend's device."""
        import torch

        return torch.from_numpy(self.check_input(x)).to(self.device)

    def run(self, x: np.ndarray) -> np.ndarray:
        import torch

        out = self.run_device(self.to_device(x)).to("cpu", torch.int64).numpy()
        return apply_host_steps(out, self.graph.host_steps("host_post"))

    def run_device(self, xs):
        """The graph's output tensor, on the device, for a batch from ``to_device`` (no host
        post steps, no copy back: what a benchmark times)."""
        import torch

        out_name = self.graph.output_name
        if xs.shape[0] == 0:  # nothing to launch
            return xs.new_zeros((0, *self.graph.output_shape[1:]), dtype=torch.int64)
        tensors = {self.graph.input_name: xs}
        for i, (node, ins, run) in enumerate(self.steps):
            outs = run([tensors[t] for t in ins])
            tensors.update(zip(node.outputs, outs, strict=True))
            for t in ins:
                if self._last_use[t] == i and t != out_name:
                    tensors.pop(t, None)
        return tensors[out_name]


def main(argv: list[str] | None = None) -> int:
    """``python -m netfabric.host.triton_backend GRAPH IN.npy OUT.npy``: run a batch and save
    the outputs; lets a process whose Triton was set up before ``TRITON_INTERPRET`` could be
    set (the demo) run the kernels under the interpreter in a fresh one."""
    import sys

    import numpy as np

    graph, src, dst = (argv if argv is not None else sys.argv[1:])
    np.save(dst, TritonBackend(graph).run(np.load(src)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
