"""CLI: ``python -m netfabric.hw.flow PROJECT_DIR --board ulx3s-85f --freq 100 --out DIR``.

Exit status: 0 built (timing met, or not required), 1 timing not met with --require-timing,
2 a FlowError (unknown board, missing tool, design does not fit, ...), printed without traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .bitstream import build_bitstream
from .boards import BOARDS
from .errors import FlowError
from .progress import ConsoleProgress


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m netfabric.hw.flow",
        description="Build a board bitstream from a stitched netfabric project folder.",
    )
    p.add_argument("project_dir", nargs="?", type=Path, help="folder holding manifest.json")
    p.add_argument("--board", default="ulx3s-85f", help="target board (see --list-boards)")
    p.add_argument(
        "--freq", type=float, default=None, help="core clock in MHz (default: the board's)"
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default: build/bitstream/<project>-<board>)",
    )
    p.add_argument("--seed", type=int, default=1, help="nextpnr placement seed")
    p.add_argument("--require-timing", action="store_true", help="exit 1 when timing is not met")
    p.add_argument("--list-boards", action="store_true", help="list the known boards and exit")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.list_boards:
        for b in BOARDS.values():
            flow = "open flow" if b.open_flow else "Vivado"
            print(
                f"{b.name:<12} {b.part:<20} {flow:<10} default {b.default_freq_mhz:g} MHz  {b.description}"
            )
        return 0
    if args.project_dir is None:
        _parser().error("PROJECT_DIR is required")
    out = (
        args.out or Path("build") / "bitstream" / f"{args.project_dir.resolve().name}-{args.board}"
    )
    try:
        report = build_bitstream(
            args.project_dir, args.board, out, args.freq, seed=args.seed,
            progress=ConsoleProgress(total=3),
        )  # fmt: skip
    except FlowError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    fmax = report.fmax_mhz
    verdict = "timing met" if report.timing_met else "timing NOT met"
    fmax_text = (
        f"Fmax {fmax:.1f} MHz vs {report.clock_mhz:g} MHz target, {verdict}"
        if fmax
        else "no timing"
    )
    print(f"{report.bitstream}\n  {fmax_text}; report: {out / 'report.md'}")
    if args.require_timing and not report.timing_met:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
