"""Build the compiled harness of a stitched project: the C++ testbench of
:mod:`.template` plus the project's Verilog, verilated and compiled into one executable.

Builds are cached under ``<cache>/sim/harness_<top>_<key>`` (see :mod:`netfabric.paths`),
keyed by the *contents* of the Verilog sources, the rendered testbench and the tool options:
memory files are read by ``$readmemh`` at run time (the executable runs in the project
folder), so another project with the same RTL but other weights reuses the build. The
cache is capped like the cocotb builds' (:mod:`netfabric.sim.build_cache`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import string
import subprocess
from pathlib import Path

from netfabric.errors import SimulationError
from netfabric.sim.build_cache import claim, evict_after_build, mark_used
from netfabric.sim.golden import beat_words
from netfabric.sim.runner import BUILD_ROOT, _verilator_root, verilator_env

from .template import HARNESS_CPP

EXE = "Vharness"
# -O3: Verilator's own optimisations. The model's C++ at -O2, one level above the cocotb builds'
# -O1: ~95% of a run is the design's sequential block, and -O2 simulated the stitched MLP ~10%
# faster on an AVX2 host without VNNI (about 570k vs 515k cycles/s; no difference measured on a
# Xeon earlier) for ~8 s more build. -O3 and -march=native measured no faster than -O2, and
# Verilator's --threads 2 half as fast (the design is one tightly coupled pipeline).
VERILATOR_ARGS: tuple[str, ...] = ("-O3", "--no-timing", "-Wno-fatal")
CXX_OPT = "-O2"
BUILD_JOBS = 2  # the machine is shared: never fan out further
# Verilator's runtime does not depend on the model: compiled once per option set, copied in.
_RUNTIME_OBJS = ("verilated", "verilated_threads")


def render(manifest: dict) -> str:
    """The C++ testbench for a stitch manifest (top name, bus widths, beats per frame)."""
    return string.Template(HARNESS_CPP).substitute(
        top=manifest["top"],
        in_words=beat_words(manifest["in_width_bits"]),
        out_words=beat_words(manifest["out_width_bits"]),
        in_beats=manifest["input"]["beats_per_frame"],
        out_beats=manifest["output"]["beats_per_frame"])


def build_key(project: Path, manifest: dict, cpp: str) -> str:
    h = hashlib.sha256(json.dumps({"top": manifest["top"], "verilator": VERILATOR_ARGS,
                                   "cxx": CXX_OPT, "root": str(_verilator_root())}).encode())
    h.update(cpp.encode())
    for name in manifest["sources"]:
        h.update(name.encode() + b"\0" + (project / name).read_bytes())
    return h.hexdigest()[:12]


def build_harness(project: str | Path, manifest: dict | None = None) -> Path:
    """The harness executable for a stitched project folder (built once, then cached)."""
    project = Path(project).resolve()
    manifest = manifest or json.loads((project / "manifest.json").read_text())
    cpp = render(manifest)
    key = build_key(project, manifest, cpp)
    build_dir = BUILD_ROOT / f"harness_{manifest['top']}_{key}"
    exe = build_dir / "obj" / EXE
    stamp = build_dir / "netfabric_build.json"
    with claim(build_dir):  # concurrent runs of one design: build once
        built = not (stamp.is_file() and exe.is_file())
        if built:
            _build(project, manifest, cpp, build_dir)
            stamp.write_text(json.dumps({"top": manifest["top"], "key": key}))
        else:
            mark_used(build_dir)
    if built:
        evict_after_build(BUILD_ROOT, build_dir)
    return exe


def _build(project: Path, manifest: dict, cpp: str, build_dir: Path) -> None:
    env = {**os.environ, **verilator_env()}
    obj = build_dir / "obj"
    shutil.rmtree(obj, ignore_errors=True)  # never finish a half-done build of an older try
    (build_dir / "harness.cpp").write_text(cpp)
    top = manifest["top"]
    verilate = [str(_verilator_root() / "bin" / "verilator"), "--cc", "--exe", *VERILATOR_ARGS,
                "--top-module", top, "-Mdir", str(obj), "-o", EXE,
                str(build_dir / "harness.cpp"), *(str(project / s) for s in manifest["sources"])]
    # command-line variables override the ones verilator_env() puts in MAKEFLAGS
    make = ["make", "-C", str(obj), "-f", f"V{top}.mk", f"-j{BUILD_JOBS}",
            f"OPT_FAST={CXX_OPT}", f"OPT_GLOBAL={CXX_OPT}", EXE]
    runtime = _runtime_dir()
    log = build_dir / "build.log"
    with log.open("w") as out:
        for i, cmd in enumerate((verilate, make)):
            if i == 1:
                _seed_runtime(runtime, obj)
            rc = subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.STDOUT).returncode
            if rc:
                tail = log.read_text(errors="replace")[-3000:]
                raise SimulationError(f"Verilator build of the {top} harness failed "
                                      f"({Path(cmd[0]).name} exit {rc}):\n{tail}")
    _store_runtime(runtime, obj)


def _runtime_dir() -> Path:
    key = hashlib.sha256(json.dumps(["harness", str(_verilator_root()), VERILATOR_ARGS, CXX_OPT,
                                     shutil.which("g++")]).encode()).hexdigest()[:12]
    return BUILD_ROOT / "_verilator_runtime" / f"harness_{key}"


def _seed_runtime(cache: Path, obj: Path) -> None:
    """Copy the cached runtime objects in after verilating (their fresh mtimes make them
    newer than the generated makefiles they depend on)."""
    files = [cache / f"{stem}{ext}" for stem in _RUNTIME_OBJS for ext in (".d", ".o")]
    if all(f.is_file() for f in files):
        for f in files:
            shutil.copyfile(f, obj / f.name)


def _store_runtime(cache: Path, obj: Path) -> None:
    files = [obj / f"{stem}{ext}" for stem in _RUNTIME_OBJS for ext in (".d", ".o")]
    if cache.is_dir() or not all(f.is_file() for f in files):
        return
    tmp = cache.with_name(f"{cache.name}.tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    for f in files:
        shutil.copyfile(f, tmp / f.name)
    try:
        tmp.rename(cache)
    except OSError:  # another process stored it first
        shutil.rmtree(tmp, ignore_errors=True)
