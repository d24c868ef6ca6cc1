"""Segmented vs full attention on a GPU: time (CUDA events) and peak memory per sequence length.

Runs where a CUDA GPU and torch exist, from a plain checkout (no install needed: it imports the
model package from the repository folder). Writes JSON to --out; `--record FILE` (on any
machine) turns such a JSON into the `gpu_attention` section of bench/RESULTS.md.

    python bench/gpu_attention.py --out results.json          # on the GPU machine
    python bench/gpu_attention.py --record results.json       # here: table + plot
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LENGTHS = [1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072]


def measure(out: Path, segment: int, dim: int, heads: int) -> None:
    import torch

    sys.path.insert(0, str(ROOT))
    from models.transformer import segmented_attention  # the package folder, uninstalled

    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run this on a GPU machine")
    dev = torch.device("cuda")
    rows = []
    for dtype in (torch.float16, torch.float32):
        for n in LENGTHS:
            g = torch.Generator(device=dev).manual_seed(0)
            q, k, v = (torch.randn(1, heads, n, dim // heads, generator=g, device=dev, dtype=dtype)
                       for _ in range(3))
            for method in ("segmented", "full"):
                fns = {"segmented": lambda q=q, k=k, v=v: segmented_attention(q, k, v, segment),
                       "full": lambda q=q, k=k, v=v: torch.nn.functional.scaled_dot_product_attention(q, k, v)}
                fn = fns[method]
                try:
                    torch.cuda.synchronize()
                    torch.cuda.reset_peak_memory_stats()
                    base = torch.cuda.memory_allocated()
                    with torch.inference_mode():
                        for _ in range(3):
                            fn()
                        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                        reps = 20
                        start.record()
                        for _ in range(reps):
                            fn()
                        end.record()
                        torch.cuda.synchronize()
                    ms = start.elapsed_time(end) / reps
                    peak = (torch.cuda.max_memory_allocated() - base) / 2**20
                    rows.append({"dtype": str(dtype).removeprefix("torch."), "n": n, "method": method,
                                 "ms": round(ms, 4), "peak_mb": round(peak, 2)})
                except torch.cuda.OutOfMemoryError:
                    rows.append({"dtype": str(dtype).removeprefix("torch."), "n": n, "method": method,
                                 "ms": None, "peak_mb": None, "error": "out of memory"})
                    torch.cuda.empty_cache()
                print(rows[-1], flush=True)
    info = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "segment": segment,
            "dim": dim, "heads": heads, "batch": 1, "rows": rows}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(info, indent=2))


def record(path: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from _report import BENCH, write_json, write_section

    data = json.loads(Path(path).read_text())
    write_json("gpu_attention", data)
    by = {(r["dtype"], r["n"], r["method"]): r for r in data["rows"]}
    lines = [f"## Segmented vs full attention on a GPU ({data['device']})", "",
             f"Command: `python bench/gpu_attention.py --out results.json` on the GPU machine "
             f"(torch {data['torch']}), recorded with `--record`. Batch 1, d={data['dim']}, "
             f"{data['heads']} heads, s={data['segment']}; full = torch SDPA (flash kernel); "
             "time = mean of 20 calls between CUDA events; memory = peak allocated above the "
             "inputs.", "",
             "| dtype | n | segmented ms | full ms | full / segmented | segmented MB | full MB |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    fig, ax = plt.subplots(figsize=(6, 4))
    for dtype in ("float16", "float32"):
        ns = sorted({n for (d, n, _) in by if d == dtype})
        for n in ns:
            s, f = by.get((dtype, n, "segmented"), {}), by.get((dtype, n, "full"), {})
            ratio = f"{f['ms'] / s['ms']:.1f}" if s.get("ms") and f.get("ms") else "-"
            lines.append(f"| {dtype} | {n} | {s.get('ms', '-')} | {f.get('ms', '-')} | {ratio} | "
                         f"{s.get('peak_mb', '-')} | {f.get('peak_mb', '-')} |")
        for method, style in (("segmented", "-o"), ("full", "--s")):
            pts = [(n, by[(dtype, n, method)]["ms"]) for n in ns if by.get((dtype, n, method), {}).get("ms")]
            if pts:
                ax.loglog(*zip(*pts, strict=True), style, label=f"{method} {dtype}")
    ax.set_xlabel("sequence length n")
    ax.set_ylabel("ms per call")
    ax.set_title(f"attention on {data['device']}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(BENCH / "results" / "gpu_attention.png", dpi=120)
    lines += ["", "![GPU attention scaling](results/gpu_attention.png)"]
    write_section("gpu_attention", "\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, help="measure on this machine's GPU, write JSON here")
    ap.add_argument("--record", type=Path, help="write a measured JSON into bench/RESULTS.md")
    ap.add_argument("--segment", type=int, default=64)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--heads", type=int, default=4)
    args = ap.parse_args()
    if args.record:
        record(args.record)
    elif args.out:
        measure(args.out, args.segment, args.dim, args.heads)
    else:
        ap.error("give --out (measure) or --record (write RESULTS.md)")


if __name__ == "__main__":
    main()
