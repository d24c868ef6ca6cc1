"""Compiled simulation harness: a stitched accelerator under Verilator with a C++ testbench,
no Python per cycle (the ``sim`` backend's default engine; cocotb stays for module tests).

Frames are packed into ``s_axis`` beats exactly as the cocotb testbench packs them
(:func:`netfabric.sim.golden.pack_words`, the word form of ``pack_beats``), streamed from a
raw file with optional random idles and backpressure from a seed, and the output beats come
back in a file. The JSON report has the cocotb testbench's measurements (``interval``,
``first_frame_latency``, ``latency_total``) plus ``cycles`` (all simulated cycles); a stall
(no output for ``stall_cycles``) is a :class:`~netfabric.errors.SimulationError` naming it.

    from netfabric.sim.harness import build_harness, run_harness
    exe = build_harness(project)               # cached by content
    out, metrics = run_harness(exe, project, frames, src_idle=0.3, sink_stall=0.5, seed=7)
"""

from __future__ import annotations

import json
import resource
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from netfabric.errors import SimulationError
from netfabric.sim import golden
from netfabric.sim.build_cache import in_use

from .build import build_harness, render

__all__ = ["HarnessEvicted", "build_harness", "default_stall_cycles", "render", "run_harness"]


class HarnessEvicted(SimulationError):
    """The harness executable was gone when its run took the build folder's lock: another
    process's cache eviction removed it after :func:`build_harness` returned. Build again."""


def default_stall_cycles(manifest: dict) -> int:
    """The cocotb testbench's watchdog: a first frame takes a few intervals (pipeline fill),
    with random stalls about 3x more."""
    return 40 * int(manifest["ideal_cycles_per_frame"]) + 5000


def run_harness(exe: str | Path, project: str | Path, frames: np.ndarray, *,
                src_idle: float = 0.0, sink_stall: float = 0.0, seed: int = 1,
                stall_cycles: int = 0, manifest: dict | None = None
                ) -> tuple[np.ndarray, dict]:
    """Stream ``frames`` ([frames, elements] ints in graph layout) through the accelerator.

    Returns the output as [frames, out elements] int64 and the report (cycles, interval...,
    plus ``seconds``: wall time of the simulation, ``cpu_seconds``: its CPU time).
    """
    project = Path(project).resolve()
    man = manifest or json.loads((project / "manifest.json").read_text())
    inp, outp = man["input"], man["output"]
    frames = np.asarray(frames, dtype=np.int64).reshape(len(frames), -1)
    n = len(frames)
    stall = int(stall_cycles) or default_stall_cycles(man)
    with tempfile.TemporaryDirectory(prefix="nf-harness-") as tmp:
        tmp = Path(tmp)
        golden.pack_words(frames, inp["elems_per_beat"], inp["bits"],
                          golden.beat_words(man["in_width_bits"])).tofile(tmp / "in.bin")
        args = [str(exe), str(tmp / "in.bin"), str(tmp / "out.bin"), str(tmp / "report.json"),
                str(n), repr(float(src_idle)), repr(float(sink_stall)), str(int(seed)),
                str(stall), str(int(man["ideal_cycles_per_frame"]))]
        cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime
        t0 = time.perf_counter()
        # cwd: the memory files are bare names, read by $readmemh from the project folder
        # the build folder's lock, shared: no eviction after another build removes it mid-run
        with in_use(Path(exe).parent.parent):
            # checked under the lock: from here on no eviction can remove it
            if not Path(exe).is_file():
                raise HarnessEvicted(f"the simulation harness {exe} was removed from the build "
                                     "cache before it ran; build it again")
            proc = subprocess.run(args, cwd=project, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        cpu = resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime - cpu0
        report = tmp / "report.json"
        if proc.returncode:
            error = json.loads(report.read_text()).get("error") if report.is_file() else None
            raise SimulationError(f"RTL simulation of {project}: " + (
                error or f"harness exited {proc.returncode}: {proc.stderr.strip()[-500:]}"))
        metrics = json.loads(report.read_text())
        words = np.fromfile(tmp / "out.bin", dtype="<u4").reshape(
            n * outp["beats_per_frame"], golden.beat_words(man["out_width_bits"]))
    out = golden.unpack_words(words, outp["elems_per_beat"], outp["bits"], outp["signed"])
    if "interval" in metrics:
        metrics["interval"] = float(metrics["interval"])
    metrics.update(seconds=round(seconds, 4), cpu_seconds=round(cpu, 4))
    return out.reshape(n, -1), metrics
