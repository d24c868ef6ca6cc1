"""Full-system simulation of an open board: the folder a bitstream build synthesizes (stitched
accelerator, UART host link, board shell; ``stage_board_top``) under cocotb with
cocotbext-uart on the UART pins, driven by the `fpga` backend's own protocol code
(``sim/tb/tb_board_link.py``). Only the PLL is bypassed (``NF_SIM_NO_PLL``); by default the
line runs at a few clocks per bit instead of the bitstream's divider, to keep it short.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from netfabric.paths import cache_dir

SIM_CLKS_PER_BIT = 4
SIM_TIMEOUT_CYCLES = 400


def board_folder(graph: Path, board: str = "ulx3s-85f") -> tuple[Path, list[str]]:
    """The board build folder for ``graph`` (work folder, sources), in a cache folder named by
    content so the Verilator build is reused across runs."""
    from netfabric.hw.flow.bitstream import stage_board_top
    from netfabric.hw.stitch import stitch

    digest = hashlib.sha256(Path(graph).read_bytes()).hexdigest()[:12]
    root = cache_dir("board_sim", create=True) / f"{board}_{digest}"
    stitch(graph, root / "rtl")
    return stage_board_top(root / "rtl", board, root)


def simulate_board_link(graph: Path, x: np.ndarray, work: Path, *, malformed: bool = False,
                        window: int = 2, real_line: bool = False,
                        board: str = "ulx3s-85f") -> tuple[np.ndarray, dict]:
    """Send ``x`` (raw inputs) through the simulated board; returns the outputs and the
    testbench's report. ``malformed``: also send bad requests and record each status and the
    answer that follows. ``real_line``: the bitstream's own divider and timeout (no parameter
    overrides) against a host at the FTDI chip's 3 Mbaud."""
    from netfabric.hw.flow.shell import LINK_TIMEOUT_S
    from netfabric.sim.runner import run_cocotb

    # the simulation runs in the build folder: every path it is given must be absolute
    graph, work = Path(graph).resolve(), Path(work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    folder, sources = board_folder(graph, board)
    np.save(work / "in.npy", x)
    line = {"clks_per_bit": 33, "timeout_cycles": round(100e6 * LINK_TIMEOUT_S),
            "host_baud": 3_000_000} if real_line else {
        "clks_per_bit": SIM_CLKS_PER_BIT, "timeout_cycles": SIM_TIMEOUT_CYCLES}
    params = {} if real_line else {"CLKS_PER_BIT": SIM_CLKS_PER_BIT,
                                   "TIMEOUT_CYCLES": SIM_TIMEOUT_CYCLES}
    tb = {"graph": str(graph), "input_npy": str(work / "in.npy"),
          "output_npy": str(work / "out.npy"), "report": str(work / "report.json"),
          "window": window, "malformed": malformed, **line}
    run_cocotb("nf_board_top", [folder / s for s in sources], params,
               "netfabric.sim.tb.tb_board_link", extra_env={"TB_PARAMS": json.dumps(tb)},
               name=f"board_{board}", build_args=["-DNF_SIM_NO_PLL"], run_dir=folder)
    return np.load(work / "out.npy"), json.loads((work / "report.json").read_text())
