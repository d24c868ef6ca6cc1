"""Segmented vs full attention on the CPU: wall time and peak memory against sequence length.

    python bench/attention.py            # n = 1K .. 16K
    python bench/attention.py --quick    # n = 1K .. 4K, fewer repeats

Config: batch 1, d = 64 (4 heads of 16), float32, segments of s = 64, one torch thread (the
machine is shared). Methods, all with the same random q, k, v [1, 4, n, 16]:
- ``segmented``: ``netfabric.models.transformer.segmented_attention`` (s = 64): the fused SDPA
  kernel run on [1, 4, n/s, s, 16] segment batches, O(n*s) time and memory;
- ``full``: ``torch.nn.functional.scaled_dot_product_attention`` over the whole sequence, O(n^2)
  time; on the CPU PyTorch picks its fused flash-style kernel, which does not store the n x n
  scores, so its memory stays O(n) too;
- ``full_math``: softmax(q k^T / sqrt(dh)) v written out, which does store the n x n scores (the
  memory a naive or non-fused implementation needs); run up to ``--math-max-n``.

Each (method, n) point runs in a fresh Python subprocess. Time: median wall time of at least
``--repeats`` calls (more, up to 100, for fast points: about 0.5 s of calls) after one warm-up. Memory: the process's peak resident set (``ru_maxrss``) after the
calls minus its resident set just before the warm-up call, i.e. the extra memory the attention
call needed on top of its inputs; it includes allocator slack and is honest about what the OS
had to provide, not a count of tensor bytes.

Writes ``bench/results/attention.json``, ``bench/results/attention.png`` and the
``<!-- attention -->`` section of ``bench/RESULTS.md`` (other sections are left alone).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

from netfabric.files import atomic_write

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
MD = HERE / "RESULTS.md"
BEGIN, END = "<!-- attention -->", "<!-- /attention -->"
FULL_NS = [1024, 2048, 4096, 8192, 16384]
QUICK_NS = [1024, 2048, 4096]
METHODS = ("segmented", "full", "full_math")


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB


def worker(method: str, n: int, segment: int, dim: int, heads: int, repeats: int, threads: int):
    """One measurement point; prints a JSON line. Runs in its own process."""
    import torch

    from netfabric.models.transformer import segmented_attention

    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, heads, n, dim // heads, generator=g) for _ in range(3))

    def math_attention(q, k, v):
        scores = (q @ k.transpose(-1, -2)) * (q.shape[-1] ** -0.5)
        return torch.softmax(scores, dim=-1) @ v

    fn = {
        "segmented": lambda: segmented_attention(q, k, v, segment),
        "full": lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v),
        "full_math": lambda: math_attention(q, k, v),
    }[method]
    with torch.inference_mode():
        before = _rss_mb()
        t0 = time.perf_counter()
        fn()  # warm-up
        warm = time.perf_counter() - t0
        # Fast points get more calls (up to ~0.5 s of them): a median of 5 sub-ms calls on a
        # shared machine is mostly noise.
        calls = max(repeats, min(100, int(0.5 / max(warm, 1e-6))))
        times = []
        for _ in range(calls):
            t0 = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - t0)
            del out
    peak = _peak_mb()
    print(
        json.dumps(
            {
                "method": method,
                "n": n,
                "median_ms": 1e3 * statistics.median(times),
                "calls": len(times),
                "min_ms": round(1e3 * min(times), 3),
                "peak_extra_mb": round(peak - before, 1),
                "inputs_mb": round(3 * q.numel() * 4 / 2**20, 2),
            }
        )
    )


def run_point(method: str, n: int, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--worker", method, "--n", str(n)]
    cmd += ["--segment", str(args.segment), "--dim", str(args.dim), "--heads", str(args.heads)]
    cmd += ["--repeats", str(args.repeats), "--threads", str(args.threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{method} n={n} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table(points: list[dict], ns: list[int]) -> str:
    by = {(p["method"], p["n"]): p for p in points}
    lines = [
        "| n | segmented ms | full (SDPA) ms | full math ms | speed-up vs SDPA | "
        "segmented MB | full (SDPA) MB | full math MB |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for n in ns:
        seg, full, mat = (by.get((m, n)) for m in METHODS)

        def ms(p):
            return f"{p['median_ms']:.1f}" if p else "–"

        def mb(p):
            return f"{p['peak_extra_mb']:.1f}" if p else "–"

        speed = f"{full['median_ms'] / seg['median_ms']:.1f}x" if seg and full else "–"
        lines.append(
            f"| {n} | {ms(seg)} | {ms(full)} | {ms(mat)} | {speed} | {mb(seg)} | {mb(full)} | {mb(mat)} |"
        )
    return "\n".join(lines)


def plot(points: list[dict], path: Path, cfg: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4.2))
    labels = {
        "segmented": f"segmented (s={cfg['segment']})",
        "full": "full (SDPA fused)",
        "full_math": "full (materialised n×n)",
    }
    for method, style in zip(METHODS, ("o-", "s-", "^--"), strict=True):
        pts = sorted((p for p in points if p["method"] == method), key=lambda p: p["n"])
        if not pts:
            continue
        ns = [p["n"] for p in pts]
        ax_t.plot(ns, [p["median_ms"] for p in pts], style, label=labels[method])
        ax_m.plot(ns, [max(p["peak_extra_mb"], 0.1) for p in pts], style, label=labels[method])
    for ax, title, unit in (
        (ax_t, "wall time (median)", "ms"),
        (ax_m, "peak extra RSS", "MB"),
    ):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length n")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle(
        f"attention on CPU: batch 1, d={cfg['dim']}, {cfg['heads']} heads, float32, "
        f"{cfg['threads']} thread(s)"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def update_results_md(section: str) -> None:
    """Replace only our delimited section of bench/RESULTS.md (others may write theirs)."""
    block = f"{BEGIN}\n{section.strip()}\n{END}"
    text = MD.read_text() if MD.exists() else "# Benchmark results\n"
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    atomic_write(MD, text)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="n = 1K..4K, 3 repeats")
    ap.add_argument("--segment", type=int, default=64)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--math-max-n", type=int, default=8192, help="largest n for full_math")
    ap.add_argument("--no-write", action="store_true", help="print only, write no files")
    ap.add_argument("--worker", choices=METHODS, help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.segment <= 0 or args.dim % args.heads:
        ap.error("segment must be positive and dim a multiple of heads")
    args.repeats = args.repeats or (3 if args.quick else 5)
    if args.worker:
        worker(args.worker, args.n, args.segment, args.dim, args.heads, args.repeats, args.threads)
        return 0

    ns = QUICK_NS if args.quick else FULL_NS
    command = "python bench/attention.py " + " ".join(
        shlex.quote(a) for a in (argv or sys.argv[1:])
    )
    cfg = {
        "batch": 1,
        "dim": args.dim,
        "heads": args.heads,
        "segment": args.segment,
        "dtype": "float32",
        "threads": args.threads,
        "repeats": args.repeats,
    }
    load_before = os.getloadavg()[0]
    points = []
    for n in ns:
        for method in METHODS:
            if method == "full_math" and n > args.math_max_n:
                continue
            p = run_point(method, n, args)
            points.append(p)
            print(
                f"{method:>10} n={n:>6}: {p['median_ms']:9.2f} ms  peak +{p['peak_extra_mb']:.1f} MB"
            )
    import torch

    result = {
        "config": cfg,
        "command": command.strip(),
        "machine": {"cpu": _cpu_name(), "cores": os.cpu_count(), "torch": torch.__version__},
        "load_avg_1min": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
        "memory_method": "ru_maxrss after the calls minus RSS before the warm-up, fresh process per point",
        "time_method": f"median of >= {args.repeats} calls (up to 100 for fast points) "
        "after one warm-up",
        "points": points,
    }
    print(table(points, ns))
    if args.no_write:
        return 0
    RESULTS.mkdir(parents=True, exist_ok=True)
    atomic_write(RESULTS / "attention.json", json.dumps(result, indent=2) + "\n")
    plot(points, RESULTS / "attention.png", cfg)
    section = (
        "## Segmented vs full attention (CPU)\n\n"
        f"batch 1, d={args.dim} ({args.heads} heads of {args.dim // args.heads}), float32, "
        f"segments of s={args.segment}, {args.threads} torch thread(s), {result['machine']['cpu']}, "
        f"torch {torch.__version__}. Time: {result['time_method']}. Memory: peak extra RSS "
        "(`ru_maxrss` minus RSS before the first call, fresh process per point). "
        "`full (SDPA)` is PyTorch's fused CPU kernel, which does not store the n x n scores; "
        "`full math` writes softmax(QK^T)V out and does. Deltas under about 10 MB are at the "
        "noise floor of this method (allocator and thread-local buffers). Machine load average "
        f"during the run: {load_before:.1f} -> {os.getloadavg()[0]:.1f} on "
        f"{os.cpu_count()} cores (shared).\n\n"
        f"{table(points, ns)}\n\n"
        f"Command: `{command.strip()}` — plot: `bench/results/attention.png`, "
        "data: `bench/results/attention.json`."
    )
    update_results_md(section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
