"""`make bench`: rerun every benchmark that needs no GPU, from scratch, each in a fresh process,
and rewrite its section of bench/RESULTS.md (each section records the commit it measured).

    python bench/run_all.py [--skip NAME ...] [--only NAME ...] [--list]

Sections a run does not produce (the GPU benchmark; anything skipped) keep the commit stamp of
the run that wrote them, and the index this script writes at the top of RESULTS.md says, per
section, whether this run regenerated it.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import RESULTS_MD, provenance, write_json, write_section  # noqa: E402

BENCH = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Bench:
    name: str
    args: tuple[str, ...]
    sections: tuple[str, ...]  # the RESULTS.md sections it writes
    minutes: int  # rough wall time on 2 cores, for the progress line


BENCHES = [
    Bench("accuracy", ("accuracy.py",), ("accuracy",), 3),
    Bench("cpu_engine", ("cpu_engine.py",), ("cpu_engine",), 3),
    Bench("attention", ("attention.py",), ("attention",), 5),
    Bench("sim_speed", ("sim_speed.py", "--cocotb-frames", "200", "--compiled-frames", "10000",
                        "--repeats", "3"), ("sim_speed",), 4),
    # the bitstreams are built side by side, one per core (Yosys and nextpnr are single-threaded)
    Bench("rtl", ("rtl.py", "--jobs", str(max(1, os.cpu_count() or 1))), ("rtl",), 90),
    Bench("bnn_tfc", ("bnn.py", "--model", "tfc_1w1a"), ("bnn_tfc_1w1a",), 12),
    Bench("bnn_cnv", ("bnn.py", "--model", "cnv_1w1a"), ("bnn_cnv_1w1a",), 45),
]
NEEDS_GPU = {"gpu": "bench/gpu.py runs on a CUDA GPU (--prepare here, --out there, --record here)"}


def _sections_in_results() -> list[str]:
    text = RESULTS_MD.read_text() if RESULTS_MD.exists() else ""
    return [m for m in re.findall(r"<!-- (\w+) -->", text) if m != "index"]


def _stamp(section: str) -> str:
    text = RESULTS_MD.read_text()
    m = re.search(rf"<!-- {section} -->.*?_(Measured[^_]*)_\s*<!-- /{section} -->", text, re.S)
    return m.group(1).strip() if m else "no commit recorded"


def run(benches: list[Bench]) -> list[dict]:
    results = []
    for i, b in enumerate(benches, 1):
        print(f"[{i}/{len(benches)}] {b.name}: python bench/{' '.join(b.args)} "
              f"(about {b.minutes} min)", flush=True)
        t0 = time.perf_counter()
        done = subprocess.run([sys.executable, str(BENCH / b.args[0]), *b.args[1:]])
        seconds = round(time.perf_counter() - t0, 1)
        status = "ok" if done.returncode == 0 else f"failed (exit {done.returncode})"
        print(f"    {b.name}: {status} in {seconds:.0f} s", flush=True)
        results.append({"name": b.name, "command": f"python bench/{' '.join(b.args)}",
                        "sections": list(b.sections), "status": status, "seconds": seconds})
    return results


def write_index(results: list[dict]) -> None:
    rerun = {s for r in results if r["status"] == "ok" for s in r["sections"]}
    lines = ["## Index", "", f"Command: `make bench` (`python bench/run_all.py`). {provenance()}",
             "", "| section | this run | measured at |", "|---|---|---|"]
    for section in _sections_in_results():
        if section in rerun:
            state = "regenerated"
        elif section in NEEDS_GPU:
            state = f"kept: {NEEDS_GPU[section]}"
        else:
            failed = [r["status"] for r in results if section in r["sections"]]
            state = f"kept: {failed[0]}" if failed else "kept: not run (skipped)"
        lines.append(f"| {section} | {state} | {_stamp(section)} |")
    write_section("index", "\n".join(lines), stamp="index written by bench/run_all.py")
    text = RESULTS_MD.read_text()  # the index belongs above the sections it lists
    block = re.search(r"<!-- index -->.*?<!-- /index -->\n?", text, re.S).group(0)
    rest = text.replace(block, "")
    head, sep, body = rest.partition("\n<!-- ")
    from netfabric.files import atomic_write

    atomic_write(RESULTS_MD, f"{head.rstrip()}\n\n{block.rstrip()}\n\n<!-- {body}" if sep else rest)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    names = [b.name for b in BENCHES]
    ap.add_argument("--only", nargs="+", choices=names, help="run these benchmarks only")
    ap.add_argument("--skip", nargs="+", choices=names, default=[], help="leave these out")
    ap.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = ap.parse_args()
    if args.list:
        for b in BENCHES:
            print(f"{b.name:12s} python bench/{' '.join(b.args)}  (~{b.minutes} min)")
        return 0
    chosen = [b for b in BENCHES if (not args.only or b.name in args.only) and b.name not in args.skip]
    results = run(chosen)
    write_json("run_all", {"provenance": provenance(), "benchmarks": results,
                           "skipped": [b.name for b in BENCHES if b not in chosen]})
    write_index(results)
    failed = [r["name"] for r in results if r["status"] != "ok"]
    if failed:
        print(f"failed: {', '.join(failed)} (their sections keep their earlier results)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
