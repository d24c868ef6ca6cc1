"""The `sim` backend: the stitched RTL accelerator under cocotb (Verilator by default).

Same API as the CPU engine: ``run(x)`` takes raw integer inputs and returns the graph's
integer output, here produced by simulating the generated Verilog cycle by cycle. The project
folder is generated once per graph (cached by content hash); measured cycles are kept in
``last_metrics``.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

import numpy as np

from .cpu_engine import CpuEngine
from .hwgraph import apply_host_steps

REPO_BUILD = Path(__file__).resolve().parent.parent / "build"


class SimBackend:
    name = "sim"

    def __init__(self, graph_path: str | Path, simulator: str = "verilator",
                 project_dir: str | Path | None = None, src_idle: float = 0.0,
                 sink_stall: float = 0.0, seed: int = 1):
        from netfabric.hw.stitch import stitch

        graph_path = Path(graph_path)
        # input validation and host-side layout steps are shared with the CPU engine
        self._checker = CpuEngine(graph_path)
        self.graph = self._checker.graph
        digest = hashlib.sha256(graph_path.read_bytes()).hexdigest()[:12]
        folder = Path(project_dir) if project_dir else REPO_BUILD / "rtl" / digest
        # Always regenerate: stitching takes well under a second, and a folder left from an
        # older graph or RTL library must never be simulated (Verilator builds stay cached by
        # content, so an unchanged project costs nothing).
        stitch(graph_path, folder)
        self.project = folder.resolve()
        self.manifest = json.loads((folder / "manifest.json").read_text())
        self.simulator = simulator
        self.src_idle, self.sink_stall, self.seed = src_idle, sink_stall, seed
        self.last_metrics: dict = {}

    def run(self, x: np.ndarray) -> np.ndarray:
        from netfabric.sim.runner import run_cocotb

        xs = self._checker.check_input(x)
        frames = xs.reshape(xs.shape[0], -1).astype(np.int64)
        man = self.manifest
        sources = [self.project / s for s in man["sources"]]
        params = {k: str((self.project / v).resolve()) for k, v in man["mem_params"].items()}
        with tempfile.TemporaryDirectory(prefix="nf-sim-") as tmp:
            tmp = Path(tmp)
            np.save(tmp / "in.npy", frames)
            tb = {"manifest": str(self.project / "manifest.json"), "input_npy": str(tmp / "in.npy"),
                  "output_npy": str(tmp / "out.npy"), "report": str(tmp / "report.json"),
                  "src_idle": self.src_idle, "sink_stall": self.sink_stall, "seed": self.seed}
            run_cocotb(man["top"], sources, params, "netfabric.sim.tb.tb_accel", self.simulator,
                       {"TB_PARAMS": json.dumps(tb)}, name=f"accel_{self.project.name}")
            out = np.load(tmp / "out.npy")
            self.last_metrics = json.loads((tmp / "report.json").read_text())
        shape = [len(frames), *self.graph.output_shape[1:]]
        return apply_host_steps(out.reshape(shape), self.graph.host_steps("host_post"))
