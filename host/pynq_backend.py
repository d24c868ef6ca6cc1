"""The `pynq` backend: the accelerator on a PYNQ board, behind the AXI DMA.

Runs where the board's Python runs (PYNQ images ship numpy and pynq). It loads a deployment
package written by ``netfabric deploy --board pynq-z2`` and built with Vivado (``netfabric.bit``
+ ``netfabric.hwh``), and streams batches with the package's own code (``pynq_stream``, the
module ``run_on_board.py`` uses), so the backend and the board script cannot disagree on the
packing. ``run(x)`` has the CPU engine's contract: raw integer inputs in the model's layout in,
the graph's integer output out.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from netfabric.errors import BackendUnavailable

from . import pynq_stream


class PynqBackend:
    name = "pynq"

    def __init__(self, graph_path: str | Path | None = None, package: str | Path | None = None,
                 bitfile: str | Path | None = None, batch: int = 1000):
        if package is None and bitfile is None:
            raise BackendUnavailable("the pynq backend needs a deployment package: run "
                                     "`netfabric deploy --board pynq-z2 --graph G --out DIR`, build "
                                     "it with DIR/build.sh, and pass package=DIR")
        package = Path(package) if package is not None else Path(bitfile).parent
        man_path = package / "manifest.json"
        if not man_path.is_file():
            raise BackendUnavailable(f"{package} is not a netfabric deployment package "
                                     "(no manifest.json): run `netfabric deploy` to write one")
        self.manifest = json.loads(man_path.read_text())
        if graph_path is not None and Path(graph_path).is_file():
            digest = hashlib.sha256(Path(graph_path).read_bytes()).hexdigest()
            if digest != self.manifest.get("graph_sha256"):
                raise BackendUnavailable(f"the package in {package} was built from another graph "
                                         f"than {graph_path}: run `netfabric deploy` again")
        self.bitfile = Path(bitfile) if bitfile is not None else package / self.manifest["bitfile"]
        if not self.bitfile.is_file():
            raise BackendUnavailable(f"no bitstream at {self.bitfile}: build the package with "
                                     f"{package / 'build.sh'} (needs Vivado)")
        try:
            import pynq
        except ImportError as exc:
            raise BackendUnavailable("the pynq backend runs on a PYNQ board: the `pynq` package "
                                     f"is not importable here ({exc})") from exc
        try:
            self.overlay = pynq.Overlay(str(self.bitfile))
        except (RuntimeError, OSError) as exc:  # off a board: "No Devices Found"
            raise BackendUnavailable(f"no PYNQ device to load {self.bitfile.name} on: {exc}"
                                     ) from exc
        self.dma = getattr(self.overlay, self.manifest["dma"]["name"])
        self._allocate = pynq.allocate
        self.batch = batch
        self.last_metrics: dict = {}

    def run(self, x: np.ndarray) -> np.ndarray:
        frames = pynq_stream.prepare_input(x, self.manifest)
        out, seconds = pynq_stream.stream(self.dma, self._allocate, frames, self.manifest,
                                          batch=self.batch)
        self.last_metrics = {"frames": len(frames), "transfers": len(seconds),
                             "seconds": sum(seconds)}
        return out
