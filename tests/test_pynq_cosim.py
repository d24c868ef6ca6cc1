"""The PYNQ package's board script, unchanged, against the RTL: cocotbpynq (test-only, GPL-3.0)
stands in for pynq's Overlay, allocate and DMA, reads the package's .hwh and drives the
accelerator wrapper (`netfabric_accel`, the IP the block design instantiates) under
Verilator. Its outputs must equal the CPU engine's, bit for bit."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("cocotbpynq")

from netfabric.deploy import DeployConfig, write_package  # noqa: E402
from netfabric.host.cpu_engine import CpuEngine  # noqa: E402
from netfabric.paths import cache_dir  # noqa: E402
from netfabric.sim.runner import run_cocotb  # noqa: E402

IMAGES = 20


def staged_sources(rtl: Path) -> list[Path]:
    """The package's Verilog in a folder named by its contents: simulator builds are cached by
    source path and content, so a package written to a fresh folder reuses the last build."""
    files = sorted(rtl.glob("*.v"))
    digest = hashlib.sha256(b"".join(f.name.encode() + f.read_bytes() for f in files))
    stage = cache_dir("rtl", create=True) / f"pynq-{digest.hexdigest()[:12]}"
    if not stage.is_dir():
        tmp = stage.with_name(stage.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for f in files:
            shutil.copy(f, tmp / f.name)
        tmp.rename(stage)
    return [stage / f.name for f in files]


def cosim(package: Path, test_module: str, env: dict[str, str]) -> None:
    """Run ``test_module`` in the simulator against the package's accelerator wrapper, the
    way cocotbpynq's sample does (``HWH_LOCATION_DIR``: where Overlay finds the .hwh)."""
    man = json.loads((package / "manifest.json").read_text())
    rtl = package / "rtl"
    sys.path.insert(0, str(package))  # the simulator's PYTHONPATH is this process's sys.path
    try:
        run_cocotb(man["ip"]["top"], staged_sources(rtl), {}, test_module,
                   extra_env={"HWH_LOCATION_DIR": str(package), **env},
                   name="pynq_cosim", run_dir=rtl)  # $readmemh names resolve in rtl/
    finally:
        sys.path.remove(str(package))


def test_run_on_board_under_cocotbpynq_is_bit_exact(mlp_graph, tmp_path):
    package = write_package(mlp_graph, tmp_path / "pkg", DeployConfig(count=IMAGES))
    out = tmp_path / "out.npy"
    # batches of 7: three packets, the last one short, each ended by the wrapper's TLAST
    cosim(package, "run_on_board", {"COCOTB_SYS_ARGV": f"--batch 7 --out {out}"})
    x = np.load(package / "dataset_x.npy")
    assert len(x) == IMAGES
    got = np.load(out)
    want = CpuEngine(mlp_graph).run(x)
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)


def test_pynq_backend_under_cocotbpynq_is_bit_exact(mlp_graph, tmp_path):
    """The runtime's backend on the same stream code: cocotbpynq imported as ``pynq``."""
    package = write_package(mlp_graph, tmp_path / "pkg", DeployConfig(count=IMAGES))
    (package / "netfabric.bit").write_bytes(b"")  # Overlay (simulated) reads only the .hwh
    out = tmp_path / "out.npy"
    params = {"package": str(package), "output": str(out), "batch": 8}
    cosim(package, "cosim_pynq_backend", {"NF_COSIM": json.dumps(params)})
    want = CpuEngine(mlp_graph).run(np.load(package / "dataset_x.npy"))
    np.testing.assert_array_equal(np.load(out), want)
