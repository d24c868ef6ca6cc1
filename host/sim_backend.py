"""The `sim` backend: the stitched RTL accelerator simulated cycle by cycle.

Same API as the CPU engine: ``run(x)`` takes raw integer inputs and returns the graph's
integer output, here produced by simulating the generated Verilog. The project folder is
generated once per graph (cached by content hash); measured cycles are kept in
``last_metrics``. A simulation whose accelerator stalls (no output for many cycles: a
deadlock) raises :class:`~netfabric.errors.SimulationError` saying so.

Two engines, bit-exact with each other and with the same measurements:

* ``"compiled"`` (default with Verilator): a C++ testbench verilated with the design
  (:mod:`netfabric.sim.harness`), no Python per cycle -- for long runs;
* ``"cocotb"``: the cocotb testbench (``sim/tb/tb_accel.py``), always used with Icarus.
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

ENGINES = ("compiled", "cocotb")


def default_engine(simulator: str) -> str:
    """``"compiled"`` when Verilator and its C++ toolchain are installed, else ``"cocotb"``."""
    if simulator != "verilator":
        return "cocotb"
    from netfabric.sim.runner import SimulatorNotFound, verilator_env

    try:
        verilator_env()
    except SimulatorNotFound:
        return "cocotb"  # which then reports what is missing
    return "compiled"


class SimBackend:
    """``simulator``: "verilator" or "icarus"; ``engine``: "compiled" or "cocotb" (None: the
    compiled harness when Verilator is usable, see :func:`default_engine`). ``src_idle`` /
    ``sink_stall``: random idle / backpressure probabilities per cycle from ``seed``;
    ``stall_cycles``: the deadlock watchdog (0: 40 frames' worth); ``fifo_depths``: forced
    FIFO depths per graph tensor (see :func:`netfabric.hw.stitch.stitch`)."""

    name = "sim"

    def __init__(self, graph_path: str | Path, simulator: str = "verilator",
                 project_dir: str | Path | None = None, src_idle: float = 0.0,
                 sink_stall: float = 0.0, seed: int = 1,
                 fifo_depths: dict[str, int] | None = None, stall_cycles: int = 0,
                 engine: str | None = None):
        from netfabric.hw.stitch import stitch

        engine = engine or default_engine(simulator)
        if engine not in ENGINES:
            raise ValueError(f"sim engine must be one of {ENGINES}, got {engine!r}")
        if engine == "compiled" and simulator != "verilator":
            raise ValueError(f"the compiled sim engine needs Verilator, not {simulator}")
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
        self.simulator, self.engine = simulator, engine
        self.src_idle, self.sink_stall, self.seed = src_idle, sink_stall, seed
        self.stall_cycles = stall_cycles  # 0: the testbench's default (40 frames' worth)
        self.last_metrics: dict = {}

    def run(self, x: np.ndarray) -> np.ndarray:
        xs = self._checker.check_input(x)
        frames = xs.reshape(xs.shape[0], -1).astype(np.int64)
        run = self._run_compiled if self.engine == "compiled" else self._run_cocotb
        out, metrics = run(frames)
        self.last_metrics = {**metrics, "engine": self.engine}
        shape = [len(frames), *self.graph.output_shape[1:]]
        return apply_host_steps(out.reshape(shape), self.graph.host_steps("host_post"))

    def _run_compiled(self, frames: np.ndarray) -> tuple[np.ndarray, dict]:
        from netfabric.sim.harness import HarnessEvicted, build_harness, run_harness

        def run() -> tuple[np.ndarray, dict]:
            return run_harness(build_harness(self.project, self.manifest), self.project, frames,
                               src_idle=self.src_idle, sink_stall=self.sink_stall,
                               seed=self.seed, stall_cycles=self.stall_cycles,
                               manifest=self.manifest)
        try:
            return run()
        except HarnessEvicted:  # another process's eviction removed it before the run: again
            return run()

    def _run_cocotb(self, frames: np.ndarray) -> tuple[np.ndarray, dict]:
        from netfabric.errors import SimulationError
        from netfabric.sim.runner import SimulationFailed, run_cocotb

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
            return np.load(tmp / "out.npy"), json.loads((tmp / "report.json").read_text())
