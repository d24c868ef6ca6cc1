"""`netfabric deploy --board pynq-z2`: a deployment package for a PYNQ board.

The package (one folder, written atomically) holds the stitched RTL behind a 32-bit
AXI-Stream wrapper with TLAST (what the AXI DMA speaks), Tcl that packages it as a Vivado IP
and builds a block design (Zynq PS with HP0, AXI DMA in simple mode, MM2S -> accelerator ->
S2MM), a build script (Vivado batch; a clear stop without Vivado), manifest.json, a hardware
handoff (.hwh) of the same block design for co-simulation, ``run_on_board.py`` with
``pynq_stream.py`` (numpy + pynq only) and a slice of the test set. Templates live in
:mod:`netfabric.hw.pynq_templates`; this module only fills and writes them.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from math import ceil, prod
from pathlib import Path

import numpy as np

from .errors import FlowError
from .files import atomic_dir

HOST_DIR = Path(__file__).resolve().parent.parent / "host"
BOARD_SCRIPT = "pynq_run_on_board.py"  # copied as run_on_board.py
STREAM_MODULE = "pynq_stream.py"

IP_NAME = "netfabric_accel"
VENDOR, LIBRARY, VERSION = "netfabric.org", "user", "1.0"
INSTANCE, DMA, BD, PROJECT = "netfabric_0", "axi_dma_0", "netfabric_bd", "netfabric"
BITFILE, HWHFILE = "netfabric.bit", "netfabric.hwh"
DMA_BASE, DMA_HIGH = 0x40400000, 0x4040FFFF  # Vivado's default address for the first AXI DMA
LENGTH_WIDTH = 26  # DMA length register bits: up to 64 MiB per transfer (the default 14: 16 KiB)
BOARD_PARTS = {"pynq-z2": "tul.com.tw:pynq-z2:part0:*"}
DATASET_X, DATASET_Y = "dataset_x.npy", "dataset_y.npy"
FORMAT = "netfabric-pynq/1"


@dataclass(frozen=True)
class DeployConfig:
    board: str = "pynq-z2"
    count: int = 100  # test images shipped with the package
    dataset: str | None = None  # mnist | digits; None: chosen by the input size
    clock_mhz: float = 100.0


def _port(man_port: dict, width: int) -> dict:
    """A stream side of the package manifest: the accelerator's packing plus its 32-bit words."""
    words = ceil(width / 32)
    return {"elems_per_beat": man_port["elems_per_beat"], "bits": man_port["bits"],
            "signed": man_port["signed"], "beat_bits": width, "words_per_beat": words,
            "beats_per_frame": man_port["beats_per_frame"],
            "words_per_frame": words * man_port["beats_per_frame"], "shape": man_port["shape"]}


def package_manifest(graph_path: Path, rtl_man: dict, cfg: DeployConfig, count: int) -> dict:
    from netfabric.host.hwgraph import load_hwgraph

    graph = load_hwgraph(graph_path)
    in_type = graph.dtypes.get(graph.input_name)
    host_shape = json.loads(graph.metadata.get("host_input_shape", "null")) or graph.input_shape
    inp = _port(rtl_man["input"], rtl_man["in_width_bits"])
    lo, hi = (in_type.min, in_type.max) if in_type else (-(1 << 31), (1 << 31) - 1)
    inp.update({"host_shape": host_shape, "dtype": in_type.name if in_type else "INT32",
                "min": lo, "max": hi})
    outp = _port(rtl_man["output"], rtl_man["out_width_bits"])
    return {
        "format": FORMAT,
        "board": cfg.board,
        "graph": graph_path.name,
        "graph_sha256": hashlib.sha256(graph_path.read_bytes()).hexdigest(),
        "bitfile": BITFILE,
        "hwh": HWHFILE,
        "ip": {"vlnv": f"{VENDOR}:{LIBRARY}:{IP_NAME}:{VERSION}", "top": IP_NAME,
               "accelerator": rtl_man["top"], "instance": INSTANCE},
        "dma": {"name": DMA, "base": hex(DMA_BASE), "word_bits": 32, "mode": "simple",
                "max_transfer_bytes": (1 << LENGTH_WIDTH) - 1},
        "input": inp,
        "output": outp,
        "output_kind": "label" if prod(rtl_man["output"]["shape"][1:]) == 1 else "logits",
        "host_pre": graph.host_steps("host_pre"),
        "host_post": graph.host_steps("host_post"),
        "clock_mhz": cfg.clock_mhz,
        "ideal_cycles_per_frame": rtl_man["ideal_cycles_per_frame"],
        "dataset": {"x": DATASET_X, "y": DATASET_Y, "count": count},
    }


def _dataset(host_shape: list[int], cfg: DeployConfig) -> tuple[np.ndarray, np.ndarray]:
    from netfabric.models.data import load_dataset

    elems = prod(host_shape[1:])
    name = cfg.dataset or {784: "mnist", 64: "digits"}.get(elems)
    if name is None:
        raise FlowError(f"the model takes {elems} values per input, neither MNIST (784) nor "
                        "8x8 digits (64): pass --dataset")
    x, y = load_dataset(name, "test")
    x, y = x[: cfg.count], y[: cfg.count]
    if prod(x.shape[1:]) != elems:
        raise FlowError(f"{name} images have {prod(x.shape[1:])} values, the model takes {elems}")
    return np.ascontiguousarray(x.reshape([len(x), *host_shape[1:]])), y.astype(np.int64)


def _zero_ext(pad: int, signal: str) -> str:
    """``signal`` with ``pad`` zero bits on top (Verilog; no zero-width replication)."""
    return f"{{{{{pad}{{1'b0}}}}, {signal}}}" if pad else signal


def render_wrapper(rtl_man: dict, graph_name: str) -> str:
    from netfabric.hw import pynq_templates as t

    win, wout = rtl_man["in_width_bits"], rtl_man["out_width_bits"]
    in_words, out_words = ceil(win / 32), ceil(wout / 32)
    return t.WRAPPER_V.format(
        name=IP_NAME, accel=rtl_man["top"], graph=graph_name,
        in_width=win, in_words=in_words, in_beats=rtl_man["input"]["beats_per_frame"],
        out_width=wout, out_words=out_words, out_beats=rtl_man["output"]["beats_per_frame"],
        in_ext=_zero_ext(in_words * 32 - 32, "s_axis_tdata"),
        out_ext=_zero_ext(out_words * 32 - wout, "acc_m_tdata"))


def render_texts(man: dict, board_part: str, part: str) -> dict[str, str]:
    """Every generated text file of the package (name -> contents), except the RTL."""
    from netfabric.hw import pynq_templates as t

    common = {"part": part, "board_part": board_part, "ip_name": IP_NAME, "vendor": VENDOR,
              "library": LIBRARY, "version": VERSION, "instance": INSTANCE, "dma": DMA,
              "bd": BD, "project": PROJECT, "bitfile": BITFILE, "hwhfile": HWHFILE,
              "graph": man["graph"], "clock_mhz": man["clock_mhz"], "length_width": LENGTH_WIDTH}
    inp, outp = man["input"], man["output"]
    per_frame = 4 * max(inp["words_per_frame"], outp["words_per_frame"])
    return {
        "package_ip.tcl": t.PACKAGE_IP_TCL.format(**common),
        "block_design.tcl": t.BLOCK_DESIGN_TCL.format(**common),
        "build.tcl": t.BUILD_TCL.format(**common, jobs=4),
        "build.sh": t.BUILD_SH.format(**common, missing=vivado_missing_message()),
        HWHFILE: t.HWH.format(**common, dma_base=hex(DMA_BASE), dma_high=hex(DMA_HIGH),
                              clock_hz=int(man["clock_mhz"] * 1e6)),
        "README.md": t.README.format(
            **common, board=man["board"], accel=man["ip"]["accelerator"],
            dataset_x=DATASET_X, dataset_y=DATASET_Y, count=man["dataset"]["count"],
            in_words_per_frame=inp["words_per_frame"], in_beats=inp["beats_per_frame"],
            in_elems=inp["elems_per_beat"], in_bits=inp["bits"], in_words=inp["words_per_beat"],
            out_words_per_frame=outp["words_per_frame"],
            max_frames=man["dma"]["max_transfer_bytes"] // per_frame),
    }


def vivado_missing_message() -> str:
    """require_vivado's own words for a missing ``vivado`` (one line, for build.sh too)."""
    from netfabric.hw.flow import get_board
    from netfabric.hw.flow.errors import ToolNotFoundError
    from netfabric.hw.flow.vivado import require_vivado

    try:
        require_vivado(get_board("pynq-z2"))
    except ToolNotFoundError as exc:
        return str(exc).replace('"', "'").replace("`", "'")
    return "vivado not found on PATH"


def write_package(graph_path: str | Path, out: str | Path, cfg: DeployConfig = DeployConfig()
                  ) -> Path:
    """Write the deployment package for ``graph_path`` into ``out`` (atomically); returns it."""
    from netfabric.hw.flow import get_board
    from netfabric.hw.stitch import stitch

    board = get_board(cfg.board)
    if cfg.board not in BOARD_PARTS:
        raise FlowError(f"netfabric deploy makes PYNQ packages; {cfg.board} is not a PYNQ board "
                        f"(known: {', '.join(BOARD_PARTS)}); use `netfabric bitstream` for it")
    graph_path = Path(graph_path)
    if not graph_path.is_file():
        raise FileNotFoundError(f"no HW-layer graph at {graph_path}; run `netfabric compile` first")
    with atomic_dir(out) as tmp:
        rtl_man = stitch(graph_path, tmp / "rtl", clock_mhz=cfg.clock_mhz).manifest
        (tmp / "rtl" / f"{IP_NAME}.v").write_text(render_wrapper(rtl_man, graph_path.name))
        man = package_manifest(graph_path, rtl_man, cfg, 0)
        x, y = _dataset(man["input"]["host_shape"], cfg)
        man["dataset"]["count"] = len(x)
        np.save(tmp / DATASET_X, x)
        np.save(tmp / DATASET_Y, y)
        for name, text in render_texts(man, BOARD_PARTS[cfg.board], board.part).items():
            (tmp / name).write_text(text)
        (tmp / "build.sh").chmod(0o755)
        (tmp / "manifest.json").write_text(json.dumps(man, indent=2))
        shutil.copyfile(HOST_DIR / BOARD_SCRIPT, tmp / "run_on_board.py")
        shutil.copyfile(HOST_DIR / STREAM_MODULE, tmp / STREAM_MODULE)
    return Path(out)


def build_package(package: str | Path) -> Path:
    """Run the package's build.tcl in Vivado (stops first when Vivado is missing)."""
    from netfabric.hw.flow import get_board
    from netfabric.hw.flow.tools import run_tool
    from netfabric.hw.flow.vivado import require_vivado

    package = Path(package)
    man = json.loads((package / "manifest.json").read_text())
    require_vivado(get_board(man["board"]))
    run_tool("vivado", ["-mode", "batch", "-nojournal", "-source", "build.tcl"], package,
             "vivado.log")
    return package / BITFILE


def deploy(board: str, out: Path, graph: Path | None = None, model: str | None = None,
           count: int = 100, build: bool = False) -> Path:
    """The CLI's work: compile a shipped model if no graph is given, write the package."""
    from netfabric import bitstream as bs
    from netfabric import flow

    if graph is None:
        from netfabric.hls.frontend import CompileConfig

        model = model or "mlp"
        if model not in bs.SHIPPED:
            raise ValueError(f"unknown model {model!r}; shipped: {', '.join(bs.SHIPPED)}")
        work = out.parent / f"{out.name}-hw"
        qonnx = flow.export_checkpoint(flow.PRETRAINED / bs.SHIPPED[model], work / "m.qonnx.onnx")
        fps = bs.FOLDING_FPS.get(board, 100_000)
        graph = flow.compile_model(qonnx, work / "hw", CompileConfig(target_fps=fps))
    package = write_package(graph, out, DeployConfig(board=board, count=count))
    if build:
        build_package(package)
    return package
