"""Segmented vs full attention on the CPU: wall time and allocator peak memory against n.

    python bench/attention.py            # n = 1K .. 16K
    python bench/attention.py --quick    # n = 1K .. 4K, fewer repeats

Config: batch 1, d = 64 (4 heads of 16), one thread (the machine is shared), segments of the
model's s = 14 and of s = 64. Methods (random inputs, fixed seed):
- ``sdpa``: ``torch.nn.functional.scaled_dot_product_attention`` over the whole sequence
  (float32); on the CPU torch picks its fused flash-style kernel: O(n^2) time, O(n) memory;
- ``math``: softmax(q k^T / sqrt(dh)) v written out (float32), which stores the n x n scores
  (the memory a non-fused implementation needs); points whose predicted peak exceeds
  ``--mem-cap-mb`` are skipped and their memory given by the formula (2 H n^2 x 4 bytes);
- ``segmented``: ``netfabric.models.transformer.segmented_attention`` (float32, fused SDPA on
  [1, 4, n/s, s, 16] segment batches), what the QAT model runs;
- ``int8``: the shipped transformer's integer SegmentAttention exactly as the CPU engine runs
  it: the first block's tables (score / context thresholds, exp LUT of models/INT_SOFTMAX.md)
  from ``models/pretrained/transformer_int8.pt``, the node built by the compiler's own lowering
  at this n and s, SegmentPad -> SegmentAttention -> SegmentUnpad run by ``host/cpu_engine.py``
  as its compiled numpy plan (``mode="plan"``, one thread). Input: the
  INT8 q|k|v stream [1, n, 1, 192] as int32 (how the engine passes activations).

Each (method, s, n) point runs in a fresh Python subprocess. Time: median wall time of at least
``--repeats`` calls (more, up to 100, for fast points) after one warm-up. Memory: the peak of the
bytes the allocator hands out during one further call, above what was live before it (inputs
excluded, the output included), i.e. what the call itself needs, without RSS or page noise:
- torch paths: ``torch.profiler.profile(profile_memory=True)``; the running sum of its
  ``[memory]`` alloc/free events, in order, and its maximum;
- int8: the engine's public ``run`` in its numpy-plan mode (the CPU engine's default), memory by
  ``tracemalloc`` (numpy registers its buffers with it).

Writes ``bench/results/attention.json`` (the goal ratios at the largest n under ``goals``),
``bench/results/attention.png`` and the ``<!-- attention -->`` section of ``bench/RESULTS.md``
(through ``_report.write_section``, which stamps commit and machine).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import BENCH, BenchArgs, machine, own_output, say, write_json, write_section  # noqa: E402

RESULTS = BENCH / "results"
CHECKPOINT = BENCH.parent / "models" / "pretrained" / "transformer_int8.pt"
FULL_NS = [1024, 2048, 4096, 8192, 16384]
QUICK_NS = [1024, 2048, 4096]
SEGMENTS = (14, 64)
FULL_METHODS = ("sdpa", "math")  # independent of s
SEG_METHODS = ("segmented", "int8")
SPEEDUP_GOAL, MEMORY_GOAL = 5.0, 1 / 8  # vs SDPA time, vs the materialised math path's memory
MB = 2**20
INT8_MEMORY_TEXT = {
    "plan": "`tracemalloc` (the engine's numpy plan; numpy registers its buffers with it)",
}



# --------------------------------------------------------------------------- memory helpers


def torch_peak_bytes(fn: Callable[[], object]) -> int:
    """Peak bytes torch's CPU allocator holds during ``fn()`` above what was live before it."""
    import torch

    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
                                profile_memory=True) as prof:
        out = fn()
    del out
    # [memory] events carry signed sizes (frees negative); their running sum is what is live
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]")
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak


def math_predicted_bytes(n: int, heads: int, head_dim: int) -> int:
    """The math path's peak: the n x n scores and their softmax (float32) plus the output."""
    return 2 * heads * n * n * 4 + heads * n * head_dim * 4


# --------------------------------------------------------------------------- INT8 graphs


def build_int8_graphs(folder: Path, ns: list[int], segments: tuple[int, ...]) -> dict:
    """One HW-layer graph per (n, s): SegmentPad -> SegmentAttention -> SegmentUnpad with the
    shipped transformer's first-block tables, built by the compiler's own lowering."""
    from onnx import helper

    from netfabric.hls.transformer_lowering import TransformerLowering
    from netfabric.models.train_transformer import load_transformer
    from netfabric.models.transformer_int import export_integer_params
    from netfabric.ops.graphbuild import NETFABRIC_DOMAIN, HWGraphBuilder

    params = export_integer_params(load_transformer(CHECKPOINT))
    blk = {**params["blocks"][0], "shift": 0}
    paths = {}
    for n in ns:
        for s in segments:
            low = TransformerLowering(params)
            low.n, low.cfg = n, {**low.cfg, "segment": s}  # the model's tables at this geometry
            qkv_type = f"INT{params['config']['act_bits']}"
            qkv = low.g.tensor("qkv", [1, n, 1, 3 * low.d], qkv_type)
            out = low.attention("a_", blk, qkv)
            b = HWGraphBuilder(f"attention_n{n}_s{s}")
            b.input(qkv, low.g.shapes[qkv], qkv_type)
            for name, value in low.g.inits.items():
                b.param(name, value, low.g.dtypes.get(name))
            for node in low.g.nodes:
                attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
                attrs = {k: v.decode() if isinstance(v, bytes) else v for k, v in attrs.items()}
                outs = [(o, low.g.shapes[o], low.g.dtypes[o]) for o in node.output]
                b.node(node.op_type, list(node.input), outs, domain=NETFABRIC_DOMAIN,
                       name=node.name, **attrs)
            b.output(out)
            paths[(n, s)] = str(b.save(folder / f"attention_n{n}_s{s}.onnx"))
    return paths


# --------------------------------------------------------------------------- worker


def _time_calls(fn: Callable[[], object], repeats: int) -> list[float]:
    fn()  # warm-up
    t0 = time.perf_counter()
    fn()
    once = time.perf_counter() - t0
    # fast points get more calls (about 0.5 s of them): a median of 5 sub-ms calls is noise
    times = []
    for _ in range(max(repeats, min(100, int(0.5 / max(once, 1e-6))))):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
        del out
    return times


def torch_point(method: str, n: int, segment: int, heads: int, head_dim: int,
                repeats: int) -> dict:
    import torch

    from netfabric.models.transformer import segmented_attention

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, heads, n, head_dim, generator=g) for _ in range(3))

    def math_attention():
        scores = (q @ k.transpose(-1, -2)) * (head_dim**-0.5)
        return torch.softmax(scores, dim=-1) @ v

    fn = {"sdpa": lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v),
          "math": math_attention,
          "segmented": lambda: segmented_attention(q, k, v, segment)}[method]
    with torch.inference_mode():
        times = _time_calls(fn, repeats)
        peak = torch_peak_bytes(fn)
    return {"times": times, "peak_bytes": peak, "memory_method": "torch.profiler"}


def tracemalloc_peak_bytes(fn: Callable[[], object]) -> int:
    """Peak bytes traced (numpy registers its buffers) during ``fn()`` above those before it."""
    import tracemalloc

    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    out = fn()
    peak = tracemalloc.get_traced_memory()[1]
    del out
    if started:
        tracemalloc.stop()
    return peak - before


def int8_point(graph: str, n: int, dim: int, repeats: int, threads: int) -> dict:
    """The engine's public call on the INT8 q|k|v stream, in its numpy-plan mode (memory:
    tracemalloc, which sees numpy's buffers)."""
    import numpy as np

    from netfabric.host.cpu_engine import CpuEngine

    x = np.random.default_rng(0).integers(-128, 128, size=(1, n, 1, 3 * dim), dtype=np.int8)
    engine = CpuEngine(graph, threads=threads, mode="plan")
    times = _time_calls(lambda: engine.run(x), repeats)
    return {"times": times, "peak_bytes": tracemalloc_peak_bytes(lambda: engine.run(x)),
            "memory_method": "tracemalloc", "engine_mode": "plan"}


def worker(args: argparse.Namespace) -> None:
    """One measurement point; prints a JSON line. Runs in its own process."""
    import torch

    torch.set_num_threads(args.threads)
    dh = args.dim // args.heads
    if args.worker == "int8":
        res = int8_point(args.graph, args.n, args.dim, args.repeats, args.threads)
    else:
        res = torch_point(args.worker, args.n, args.segment, args.heads, dh, args.repeats)
    times = res.pop("times")
    point = {"method": args.worker, "segment": args.segment if args.worker in SEG_METHODS
             else None, "n": args.n, "median_ms": round(1e3 * statistics.median(times), 3),
             "min_ms": round(1e3 * min(times), 3), "calls": len(times)}
    for key in ("peak_bytes",):
        if key in res:
            value = res.pop(key)
            point[key.replace("bytes", "mb")] = None if value is None else round(value / MB, 3)
    point.update(res)  # memory_method, engine_mode
    say(json.dumps(point))


# --------------------------------------------------------------------------- driver


def run_point(method: str, n: int, segment: int, args: argparse.Namespace,
              graph: str | None = None) -> dict:
    cmd = [sys.executable, __file__, "--worker", method, "--n", str(n), "--segment", str(segment),
           "--dim", str(args.dim), "--heads", str(args.heads), "--repeats", str(args.repeats),
           "--threads", str(args.threads)]
    env = dict(os.environ)
    if graph:
        cmd += ["--graph", graph]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{method} s={segment} n={n} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _find(points: list[dict], method: str, n: int, segment: int | None = None) -> dict | None:
    return next((p for p in points if p["method"] == method and p["n"] == n
                 and p["segment"] == segment), None)


def _ratio(a: float | None, b: float | None, digits: int = 4) -> float | None:
    return round(a / b, digits) if a is not None and b else None


def goals(points: list[dict], n: int, heads: int, head_dim: int) -> dict:
    """The goal ratios at n, each named after its peer."""
    sdpa, math = _find(points, "sdpa", n), _find(points, "math", n)
    math_mb = math["peak_mb"] if math and math.get("peak_mb") else \
        math_predicted_bytes(n, heads, head_dim) / MB
    out = {"n": n, "sdpa_ms": sdpa and sdpa["median_ms"], "sdpa_mb": sdpa and sdpa["peak_mb"],
           "math_mb": round(math_mb, 1),
           "math_mb_source": "measured" if math and math.get("peak_mb") else "formula"}
    for method in SEG_METHODS:
        for s in SEGMENTS:
            p = _find(points, method, n, s)
            if p is None:
                continue
            speed = _ratio(sdpa and sdpa["median_ms"], p["median_ms"], 2)
            mem_math = _ratio(p["peak_mb"], math_mb, 6)
            out[f"{method}_s{s}"] = {
                "ms": p["median_ms"], "mb": p["peak_mb"],
                "speedup_vs_sdpa": speed,
                "memory_vs_math": mem_math,
                "memory_vs_sdpa": _ratio(p["peak_mb"], sdpa and sdpa["peak_mb"], 3),
                "speedup_goal_met": speed is not None and speed >= SPEEDUP_GOAL,
                "memory_goal_met": mem_math is not None and mem_math <= MEMORY_GOAL,
            }
    return out


def _fmt(p: dict | None, key: str, digits: int = 1) -> str:
    if p is None:
        return "–"
    if p.get(key) is None:
        return "n/m" if key == "peak_mb" else "–"
    return f"{p[key]:.{digits}f}"


def table(points: list[dict], ns: list[int], heads: int, head_dim: int) -> str:
    cols = [("sdpa", None, "SDPA"), ("math", None, "math"),
            *((m, s, f"{'seg' if m == 'segmented' else 'int8'} s={s}")
              for m in SEG_METHODS for s in SEGMENTS)]
    head = " | ".join(f"{c[2]} ms" for c in cols) + " | " + " | ".join(f"{c[2]} MB" for c in cols)
    lines = [f"| n | {head} |", "| ---: " * (1 + 2 * len(cols)) + "|"]
    for n in ns:
        ps = [_find(points, m, n, s) for m, s, _ in cols]
        mem = []
        for (m, _, _), p in zip(cols, ps, strict=True):
            if m == "math" and p is None:  # skipped: the formula's figure, marked
                mem.append(f"({math_predicted_bytes(n, heads, head_dim) / MB:.0f})")
            else:
                mem.append(_fmt(p, "peak_mb", 2 if p and (p["peak_mb"] or 0) < 10 else 1))
        times = [_fmt(p, "median_ms") for p in ps]
        lines.append(f"| {n} | " + " | ".join(times + mem) + " |")
    return "\n".join(lines)


def plot(points: list[dict], path: Path, cfg: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(12, 4.6))
    lines = [("sdpa", None, "full, SDPA fused (float)", "s-"),
             ("math", None, "full, materialised n×n (float)", "^--"),
             *((m, s, f"{'segmented float' if m == 'segmented' else 'INT8 engine'} s={s}",
                ("o-" if m == "segmented" else "D-") if s == 14 else
                ("o:" if m == "segmented" else "D:")) for m in SEG_METHODS for s in SEGMENTS)]
    for method, seg, label, style in lines:
        pts = sorted((p for p in points if p["method"] == method and p["segment"] == seg),
                     key=lambda p: p["n"])
        if not pts:
            continue
        line, = ax_t.plot([p["n"] for p in pts], [p["median_ms"] for p in pts], style,
                          label=label)
        mem = [p for p in pts if p.get("peak_mb")]
        ax_m.plot([p["n"] for p in mem], [p["peak_mb"] for p in mem], style, label=label,
                  color=line.get_color())
    skipped = [n for n in cfg["ns"] if _find(points, "math", n) is None]
    if skipped:
        ax_m.plot(skipped, [math_predicted_bytes(n, cfg["heads"], cfg["dim"] // cfg["heads"]) / MB
                            for n in skipped], "^", mfc="none", color="grey",
                  label="materialised, formula (skipped)")
    for ax, title, unit in ((ax_t, "wall time (median)", "ms"),
                            (ax_m, "peak allocated above inputs", "MB")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length n")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    ax_m.legend(fontsize=7)
    fig.suptitle(f"attention on the CPU: batch 1, d={cfg['dim']} ({cfg['heads']} heads), "
                 f"{cfg['threads']} thread(s)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def section(result: dict, ns: list[int]) -> str:
    cfg, g = result["config"], result["goals"]
    dh = cfg["dim"] // cfg["heads"]

    def goal_line(key: str, what: str) -> str:
        r = g.get(key)
        if not r:
            return f"- {what}: not measured"
        vs_sdpa = "–" if r["memory_vs_sdpa"] is None else f"{r['memory_vs_sdpa']:.2f}x"
        return (f"- {what}: {r['speedup_vs_sdpa']}x faster than SDPA "
                f"(goal >= {SPEEDUP_GOAL:g}x: {'met' if r['speedup_goal_met'] else 'missed'}); "
                f"memory {r['memory_vs_math']:.5f} of the materialised math path's "
                f"(goal <= 1/8: {'met' if r['memory_goal_met'] else 'missed'}), "
                f"{vs_sdpa} SDPA's")

    n = g["n"]
    return "\n".join([
        "## Segmented vs full attention (CPU)",
        "",
        f"batch 1, d={cfg['dim']} ({cfg['heads']} heads of {dh}), {cfg['threads']} thread, "
        f"segments of s=14 (the model's) and s=64; torch {result['machine']['torch']}, "
        f"onnxruntime {result['machine']['onnxruntime']}. `SDPA`: torch's fused "
        "`scaled_dot_product_attention` over the whole sequence (float32); `math`: "
        "softmax(QK^T/sqrt(dh))V written out, storing the n x n scores (float32); `seg`: "
        "`segmented_attention` (float32, fused SDPA per segment); `int8`: the shipped "
        "transformer's integer SegmentAttention (first block's thresholds and exp LUT) as the "
        "CPU engine runs it (`host/cpu_engine.py` lowering, onnxruntime, engine session options).",
        "",
        f"Time: {result['time_method']}. Memory: peak bytes allocated during one call above "
        "those live before it (inputs excluded, output included), from the allocator: "
        "`torch.profiler` (`profile_memory=True`, running sum of its alloc/free events) for "
        f"SDPA, math and seg; for int8 (engine mode: {result['int8_engine_mode']}) "
        f"{INT8_MEMORY_TEXT.get(result['int8_engine_mode'], 'see the JSON')}. "
        f"`math` points above {cfg['mem_cap_mb']} MB predicted are skipped (the 16K point "
        "needs 2 x 4 GiB of scores and softmax); the MB in parentheses is then the formula "
        "2·H·n²·4 B + output, which the measured points match to "
        f"{result['math_formula_check']}. Load average (1 min) during the run: "
        f"{result['load_avg_1min']['before']} -> {result['load_avg_1min']['after']} on "
        f"{result['machine']['cpus']} shared cores.",
        "",
        table(result["points"], ns, cfg["heads"], dh),
        "",
        f"Goals at n = {n} (SDPA {g['sdpa_ms']} ms, {g['sdpa_mb']} MB; materialised math "
        f"{g['math_mb']} MB, {g['math_mb_source']}):",
        goal_line("segmented_s14", "segmented float, s=14"),
        goal_line("segmented_s64", "segmented float, s=64"),
        goal_line("int8_s14", "INT8 engine, s=14"),
        goal_line("int8_s64", "INT8 engine, s=64"),
        "",
        f"Command: `{result['command']}` — plot: `bench/results/attention.png`, data: "
        "`bench/results/attention.json`.",
        "",
        "![attention scaling](results/attention.png)",
    ])


def _formula_check(points: list[dict], heads: int, head_dim: int) -> str:
    ratios = [p["peak_mb"] * MB / math_predicted_bytes(p["n"], heads, head_dim)
              for p in points if p["method"] == "math" and p.get("peak_mb")]
    if not ratios:
        return "(no math point measured)"
    return f"{min(ratios):.3f}-{max(ratios):.3f}x"


def measure(args: argparse.Namespace, ns: list[int], tmp: Path) -> list[dict]:
    graphs = build_int8_graphs(tmp, ns, SEGMENTS)
    dh = args.dim // args.heads
    points = []
    for n in ns:
        jobs = [(m, 0, None) for m in FULL_METHODS]
        jobs += [(m, s, graphs[(n, s)] if m == "int8" else None)
                 for m in SEG_METHODS for s in SEGMENTS]
        for method, s, graph in jobs:
            if method == "math" and math_predicted_bytes(n, args.heads, dh) > args.mem_cap_mb * MB:
                say(f"      math n={n:>6}: skipped, predicted "
                      f"{math_predicted_bytes(n, args.heads, dh) / MB:.0f} MB > cap")
                continue
            p = run_point(method, n, s, args, graph)
            points.append(p)
            say(f"{method:>10}{'' if p['segment'] is None else f' s={s}':>6} n={n:>6}: "
                  f"{p['median_ms']:9.2f} ms  peak {p['peak_mb']} MB")
    return points


def main(argv: list[str] | None = None) -> int:
    ap = BenchArgs(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="n = 1K..4K, 3 repeats")
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--mem-cap-mb", type=int, default=3072,
                    help="skip math points whose predicted peak exceeds this")
    ap.add_argument("--no-write", action="store_true", help="print only, write no files")
    ap.add_argument("--worker", choices=FULL_METHODS + SEG_METHODS, help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--segment", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--graph", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.dim % args.heads:
        ap.error("dim must be a multiple of heads")
    args.repeats = args.repeats or (3 if args.quick else 5)
    if args.worker:
        worker(args)
        return 0

    ns = QUICK_NS if args.quick else FULL_NS
    command = "python bench/attention.py " + " ".join(shlex.quote(a) for a in
                                                      (argv if argv is not None else sys.argv[1:]))
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="nf_attention_") as tmp:
        points = measure(args, ns, Path(tmp))
    import onnxruntime
    import torch

    dh = args.dim // args.heads
    result = {
        "config": {"batch": 1, "dim": args.dim, "heads": args.heads, "segments": list(SEGMENTS),
                   "threads": args.threads, "repeats": args.repeats, "ns": ns,
                   "mem_cap_mb": args.mem_cap_mb},
        "command": command.strip(),
        "machine": {**machine(), "torch": torch.__version__,
                    "onnxruntime": onnxruntime.__version__},
        "load_avg_1min": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
        "memory_method": {m: sorted({p["memory_method"] for p in points if p["method"] == m})
                          for m in FULL_METHODS + SEG_METHODS},
        "int8_engine_mode": ",".join(sorted({p["engine_mode"] for p in points
                                             if p["method"] == "int8"})),
        "time_method": f"median of >= {args.repeats} calls (up to 100 for fast points) after "
                       "one warm-up, fresh process per point",
        "math_formula_check": _formula_check(points, args.heads, dh),
        "goals": goals(points, ns[-1], args.heads, dh),
        "points": points,
    }
    say(table(points, ns, args.heads, dh))
    say(json.dumps(result["goals"], indent=1))
    if args.no_write:
        return 0
    write_json("attention", result)
    plot(points, RESULTS / "attention.png", result["config"])
    write_section("attention", section(result, ns))
    return 0


if __name__ == "__main__":
    if "--worker" in sys.argv:  # one point for the driver: its JSON line on the pipe, no log
        raise SystemExit(main())
    with own_output():
        code = main()
    raise SystemExit(code)
