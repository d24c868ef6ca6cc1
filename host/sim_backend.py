"""The `sim` backend: the stitched RTL accelerator under cocotb (Verilator by default).

Same API as the CPU engine: ``run(x)`` takes raw integer inputs and returns the graph's
integer output, here produced by simulating the generated Verilog cycle by cycle. The project
folder is generated once per graph (cached by content hash); measured cycles are kept in
``last_metrics``. A simulation whose accelerator stalls (no output for many cycles: a
deadlock) raises :class:`~netfabric.errors.SimulationError` saying so.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

import numpy as np

from netfabric.paths import cache_dir

from .cpu_engine import CpuEngine
from .hwgraph import apply_host_steps


class SimBackend:
    name = "sim"

    def __init__(self, graph_path: str | Path, simulator: str = "verilator",
                 project_dir: str | Path | None = None, src_idle: float = 0.0,
                 sink_stall: float = 0.0, seed: int = 1,
                 fifo_depths: dict[str, int] | None = None, stall_cycles: int = 0):
        from netfabric.hw.stitch import stitch

        graph_path = Path(graph_path)
        # input validation and host-side layout steps are shared with the CPU engine
        self._checker = CpuEngine(graph_path)
        self.graph = self._checker.graph
        digest = hashlib.sha256(graph_path.read_bytes()).hexdigest()[:12]
        folder = Path(project_dir) if project_dir else cache_dir("rtl", create=False) / digest
        # Always regenerate: stitching takes well under a second, and a folder left from an
        # older graph or RTL library must never be simulated (Verilator builds stay cached by
        # content, so an unchanged project costs nothing).
        stitch(graph_path, folder, fifo_depths=fifo_depths)
        self.project = folder.resolve()
        self.manifest = json.loads((folder / "manifest.json").read_text())
        self.simulator = simulator
        self.src_idle, self.sink_stall, self.seed = src_idle, sink_stall, seed
        self.stall_cycles = stall_cycles  # 0: the testbench's default (40 frames' worth)
        self.last_metrics: dict = {}

    def run(self, x: np.ndarray) -> np.ndarray:
        from netfabric.errors import SimulationError
        from netfabric.sim.runner import SimulationFailed, run_cocotb

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
                  "src_idle": self.src_idle, "sink_stall": self.sink_stall, "seed": self.seed,
                  "stall_cycles": self.stall_cycles}
            try:
                run_cocotb(man["top"], sources, params, "netfabric.sim.tb.tb_accel", self.simulator,
                           {"TB_PARAMS": json.dumps(tb)}, name=f"accel_{self.project.name}")
            except SimulationFailed as exc:
                report = tmp / "report.json"
                error = json.loads(report.read_text()).get("error") if report.is_file() else None
                if error:
                    raise SimulationError(f"RTL simulation of {self.project}: {error}") from exc
                raise
            out = np.load(tmp / "out.npy")
            self.last_metrics = json.loads((tmp / "report.json").read_text())
        shape = [len(frames), *self.graph.output_shape[1:]]
        return apply_host_steps(out.reshape(shape), self.graph.host_steps("host_post"))
