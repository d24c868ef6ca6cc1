"""The wheel (`pip install .`, not editable): every subpackage, module and data file, a CLI that
runs from a fresh environment, and caches written to the user cache folder, never beside the code.

The wheel is built offline from a copy of the source tree (nothing is written into the
checkout) with the setuptools of this environment (``--no-build-isolation``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from netfabric import paths

ROOT = Path(__file__).resolve().parents[1]
# source folder -> import package (the layout setup.py implements)
LAYOUT = {
    "netfabric": "netfabric",
    "models": "netfabric.models",
    "hls": "netfabric.hls",
    "hw": "netfabric.hw",
    "sim": "netfabric.sim",
    "host": "netfabric.host",
}
# named explicitly: subpackages that a hand-written package list once missed or that are new
MUST_HAVE = ["netfabric.ops", "netfabric.ops.defs", "netfabric.hw.flow", "netfabric.sim.tb",
             "netfabric.hls.custom_ops"]
DATA = {"hw/rtl": "*.v", "hw/boards": "*", "models/pretrained": "*"}


def _wheel_path(source: Path) -> str:
    """Path inside the wheel of a file of the source tree."""
    rel = source.relative_to(ROOT)
    return "/".join([*LAYOUT[rel.parts[0]].split("."), *rel.parts[1:]])


def _source_files(pattern: str = "*.py"):
    for folder in LAYOUT:
        for f in sorted((ROOT / folder).rglob(pattern)):
            if "__pycache__" not in f.parts and f.is_file():
                yield f


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for folder in LAYOUT:
        shutil.copytree(ROOT / folder, src / folder,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "-q", "-w", str(tmp / "dist"), str(src)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (whl,) = (tmp / "dist").glob("netfabric-*.whl")
    return whl


@pytest.fixture(scope="module")
def names(wheel) -> set[str]:
    with zipfile.ZipFile(wheel) as zf:
        return set(zf.namelist())


def test_wheel_has_every_subpackage_and_module(names):
    packages = {os.path.dirname(n).replace("/", ".") for n in names if n.endswith("/__init__.py")}
    assert set(MUST_HAVE) <= packages, set(MUST_HAVE) - packages
    # every folder of the source tree with an __init__.py is a package of the wheel ...
    expected = {_wheel_path(f.parent).replace("/", ".") for f in _source_files("__init__.py")}
    assert expected <= packages, expected - packages
    # ... and every module is in it, at its mapped place
    missing = [str(f.relative_to(ROOT)) for f in _source_files() if _wheel_path(f) not in names]
    assert not missing, missing


def test_wheel_has_the_data_files_and_nothing_outside_netfabric(names):
    for folder, pattern in DATA.items():
        files = [f for f in (ROOT / folder).glob(pattern) if f.is_file()]
        assert files, folder
        missing = [str(f.relative_to(ROOT)) for f in files if _wheel_path(f) not in names]
        assert not missing, missing
    # any other non-Python file in the package folders (a new template, a new data folder) must
    # ship too: add it to [tool.setuptools.package-data]. Docs (*.md) stay in the repository.
    others = [f for f in _source_files("*") if f.suffix not in (".py", ".pyc", ".md")]
    missing = [str(f.relative_to(ROOT)) for f in others if _wheel_path(f) not in names]
    assert not missing, missing
    tops = {n.split("/")[0] for n in names}
    assert tops == {"netfabric", "netfabric-0.1.0.dist-info"}, tops  # no tests/, bench/, models/


def test_wheel_metadata(wheel):
    with zipfile.ZipFile(wheel) as zf:
        meta = zf.read("netfabric-0.1.0.dist-info/METADATA").decode()
        entry_points = zf.read("netfabric-0.1.0.dist-info/entry_points.txt").decode()
    assert "netfabric = netfabric.cli:main" in entry_points
    requires = [line.split(":", 1)[1].strip() for line in meta.splitlines()
                if line.startswith("Requires-Dist:")]
    core = {re.match(r"[A-Za-z0-9_.\-]+", r).group(0) for r in requires if ";" not in r}
    assert core == {"numpy", "onnx", "click", "rich"}, core  # the CLI, its tables, a board
    extras = {line.split(":", 1)[1].strip() for line in meta.splitlines()
              if line.startswith("Provides-Extra:")}
    assert {"cpu", "compile", "sim", "flow", "board"} <= extras, extras
    assert "GPU" not in meta.split("\n\n")[0]  # the summary does not promise a GPU backend


def test_fresh_install_runs_the_cli(wheel, tmp_path):
    """Install the wheel (no deps) into a new venv that borrows this environment's third-party
    packages, then run the console script and the data lookups from the installed copy."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    py = venv / "bin" / "python"
    purelib = "import sysconfig; print(sysconfig.get_path('purelib'))"
    site = Path(subprocess.run([str(py), "-c", purelib], capture_output=True, text=True,
                               check=True).stdout.strip())
    # a plain path entry: the editable install's .pth hooks of this environment do not run there
    (site / "borrowed.pth").write_text(sysconfig.get_path("purelib") + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps",
                    "--no-index", "-q", str(wheel)], check=True, capture_output=True, timeout=300)

    env = {**os.environ, "NETFABRIC_CACHE": str(tmp_path / "cache")}
    env.pop("PYTHONPATH", None)
    help_ = subprocess.run([str(venv / "bin" / "netfabric"), "--help"], capture_output=True,
                           text=True, env=env, cwd=tmp_path, timeout=120)
    assert help_.returncode == 0, help_.stderr
    assert "compile" in help_.stdout and "run" in help_.stdout

    probe = """
import json
from pathlib import Path
import netfabric
from netfabric import flow
from netfabric.host import sim_backend
from netfabric.hw.flow import boards
from netfabric.sim import runner
print(json.dumps({
    "pkg": netfabric.__file__,
    "pretrained": sorted(p.name for p in flow.PRETRAINED.iterdir()),
    "rtl": sorted(p.name for p in runner.RTL_DIR.glob("*.v")),
    "boards": sorted(p.name for p in boards.BOARDS_DIR.iterdir()),
    "build_root": str(runner.BUILD_ROOT),
}))
"""
    out = subprocess.run([str(py), "-c", probe], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert Path(got["pkg"]).is_relative_to(site), got["pkg"]  # the installed copy, not the checkout
    assert got["pretrained"] == sorted(p.name for p in (ROOT / "models/pretrained").iterdir())
    assert got["rtl"] == sorted(p.name for p in (ROOT / "hw/rtl").glob("*.v"))
    assert got["boards"] == sorted(p.name for p in (ROOT / "hw/boards").iterdir())
    assert Path(got["build_root"]) == tmp_path / "cache" / "sim"


def test_declared_dependencies_agree_with_requirements():
    """Every dependency pyproject.toml declares (core and extras, except the board's) is pinned
    in requirements/*.txt, and the version installed from those pins satisfies the declaration."""
    import tomllib
    from importlib.metadata import PackageNotFoundError, version

    req = pytest.importorskip("packaging.requirements")
    from packaging.utils import canonicalize_name

    pinned = set()
    for f in sorted((ROOT / "requirements").glob("*.txt")):
        for line in f.read_text().splitlines():
            line = line.split("#")[0].strip()
            if line and not line.startswith("-"):
                pinned.add(canonicalize_name(req.Requirement(line).name))
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = [("core", d) for d in project["dependencies"]]
    declared += [(extra, d) for extra, deps in project["optional-dependencies"].items()
                 if extra != "board" for d in deps]  # pynq exists on PYNQ board images only
    bad = []
    for extra, spec in declared:
        r = req.Requirement(spec)
        name = canonicalize_name(r.name)
        if name == "netfabric":  # an extra made of other extras
            continue
        if name not in pinned:
            bad.append(f"{extra}: {spec} is not in requirements/*.txt")
            continue
        try:
            installed = version(r.name)
        except PackageNotFoundError:
            bad.append(f"{extra}: {spec} is not installed")
            continue
        if not r.specifier.contains(installed, prereleases=True):
            bad.append(f"{extra}: {spec} excludes the pinned {r.name} {installed}")
    assert not bad, bad


# --------------------------------------------------------------------------- cache folder


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("NETFABRIC_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert paths.cache_root() == Path.home() / ".cache" / "netfabric"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")  # the XDG spec: ignore relative
    assert paths.cache_root() == Path.home() / ".cache" / "netfabric"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert paths.cache_root() == tmp_path / "xdg" / "netfabric"
    monkeypatch.setenv("NETFABRIC_CACHE", str(tmp_path / "nf"))
    assert paths.cache_root() == tmp_path / "nf"
    d = paths.cache_dir("sim", "x")
    assert d == tmp_path / "nf" / "sim" / "x" and d.is_dir()
    assert not paths.cache_dir("y", create=False).exists()


def test_sim_builds_go_to_the_cache_and_data_is_found_in_the_package():
    from netfabric.sim import runner

    assert runner.BUILD_ROOT == paths.cache_root() / "sim"
    if not os.environ.get("NETFABRIC_CACHE"):  # the default is outside the code, wherever it is
        for d in [ROOT, *(paths.package_dir(p) for p in ("models", "hw", "sim", "host"))]:
            assert not runner.BUILD_ROOT.resolve().is_relative_to(d.resolve()), d
    assert runner.RTL_DIR == paths.package_dir("hw") / "rtl" and any(runner.RTL_DIR.glob("*.v"))
    assert (paths.package_dir("models") / "pretrained" / "transformer_int8.pt").is_file()
