"""Read and check a stitched project's ``manifest.json`` (schema: hw/flow/README.md)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ManifestError

MANIFEST_NAME = "manifest.json"

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")
_SAFE_FILE = re.compile(r"^[A-Za-z0-9_.+-]+$")  # plain names only: files are copied flat


@dataclass(frozen=True)
class PortNames:
    """Names of the accelerator's clock, reset and AXI-Stream ports.

    ``s_axis``/``m_axis`` are prefixes: ``<prefix>_tdata``, ``_tvalid``, ``_tready``.
    The reset is active low and synchronous-safe (held for 16 cycles after the PLL locks).
    """

    # Defaults follow the hw/rtl library's convention (clk, rst_n, s_axis_*, m_axis_*).
    clk: str = "clk"
    rst_n: str = "rst_n"
    s_axis: str = "s_axis"
    m_axis: str = "m_axis"


@dataclass(frozen=True)
class Manifest:
    project_dir: Path
    top: str
    sources: tuple[str, ...]
    mem_files: tuple[str, ...]
    in_width_bits: int
    out_width_bits: int
    ports: PortNames = field(default_factory=PortNames)
    # Beats per frame on each stream (``input``/``output.beats_per_frame``, written by the
    # stitcher): the board shell's host link frames requests and answers with them.
    in_beats: int | None = None
    out_beats: int | None = None
    # The module instances (name, module, params) the stitcher recorded: the fit check's input.
    layers: tuple[dict, ...] = ()

    def source_paths(self) -> list[Path]:
        return [self.project_dir / s for s in self.sources]

    def mem_paths(self) -> list[Path]:
        return [self.project_dir / m for m in self.mem_files]


def load_manifest(project_dir: str | Path) -> Manifest:
    """Parse ``project_dir/manifest.json`` and check that every file it names exists."""
    project_dir = Path(project_dir).resolve()
    path = project_dir / MANIFEST_NAME
    if not project_dir.is_dir():
        raise ManifestError(f"project folder {project_dir} does not exist")
    if not path.is_file():
        raise ManifestError(
            f"{path} not found: a project folder needs a manifest.json "
            "(schema in netfabric/hw/flow/README.md)"
        )
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ManifestError(f"{path} must hold a JSON object")
    return parse_manifest(data, project_dir)


def parse_manifest(data: dict[str, Any], project_dir: Path) -> Manifest:
    where = project_dir / MANIFEST_NAME
    top = _require(data, "top", str, where)
    if not _IDENT.match(top):
        raise ManifestError(f"{where}: 'top' must be a Verilog identifier, got {top!r}")
    sources = _file_list(data, "sources", where, required=True)
    if not sources:
        raise ManifestError(f"{where}: 'sources' is empty")
    bad = [s for s in sources if not s.endswith((".v", ".sv"))]
    if bad:
        raise ManifestError(f"{where}: 'sources' must be .v/.sv files, got {bad}")
    mem_files = _file_list(data, "mem_files", where, required=False)
    widths = {}
    for key in ("in_width_bits", "out_width_bits"):
        value = _require(data, key, int, where)
        if isinstance(value, bool) or value < 1:
            raise ManifestError(f"{where}: {key!r} must be a positive integer, got {value!r}")
        widths[key] = value
    ports = _ports(data.get("ports", {}), where)
    beats = {f"{k}_beats": _beats(data, side, where) for k, side in (("in", "input"),
                                                                     ("out", "output"))}

    missing = [f for f in (*sources, *mem_files) if not (project_dir / f).is_file()]
    if missing:
        raise ManifestError(f"{where} names files that are not in {project_dir}: {missing}")
    return Manifest(
        project_dir=project_dir,
        top=top,
        sources=tuple(sources),
        mem_files=tuple(mem_files),
        ports=ports,
        **widths,
        **beats,
        layers=tuple(layer for layer in data.get("layers", [])
                     if isinstance(layer, dict) and {"name", "module", "params"} <= set(layer)),
    )


def _require(data: dict[str, Any], key: str, kind: type, where: Path) -> Any:
    if key not in data:
        raise ManifestError(f"{where}: required key {key!r} is missing")
    value = data[key]
    if not isinstance(value, kind):
        raise ManifestError(f"{where}: {key!r} must be of type {kind.__name__}, got {value!r}")
    return value


def _beats(data: dict[str, Any], side: str, where: Path) -> int | None:
    value = data.get(side, {}).get("beats_per_frame") if isinstance(data.get(side), dict) else None
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ManifestError(f"{where}: {side}.beats_per_frame must be a positive integer, "
                            f"got {value!r}")
    return value


def _file_list(data: dict[str, Any], key: str, where: Path, *, required: bool) -> list[str]:
    if key not in data and not required:
        return []
    value = _require(data, key, list, where)
    if not all(isinstance(v, str) and _SAFE_FILE.match(v) for v in value):
        raise ManifestError(
            f"{where}: {key!r} must list plain file names in the project folder "
            f"(no sub-folders), got {value!r}"
        )
    if len(set(value)) != len(value):
        raise ManifestError(f"{where}: {key!r} lists a file twice")
    return list(value)


def _ports(value: Any, where: Path) -> PortNames:
    if not isinstance(value, dict):
        raise ManifestError(f"{where}: 'ports' must be an object")
    known = set(PortNames.__dataclass_fields__)
    unknown = set(value) - known
    if unknown:
        raise ManifestError(
            f"{where}: unknown keys in 'ports': {sorted(unknown)}; known: {sorted(known)}"
        )
    for k, v in value.items():
        if not isinstance(v, str) or not _IDENT.match(v):
            raise ManifestError(f"{where}: ports.{k} must be a Verilog identifier, got {v!r}")
    return PortNames(**value)
