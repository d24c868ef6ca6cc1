"""The triton backend on a GPU, beside its peers: int8 MVAU kernel vs ``torch._int_mm``; the
shipped MLP, CNN and transformer on the triton backend vs their torch float twins (cuBLAS /
cuDNN); the fused segmented-attention kernel vs SDPA (flash) and vs float segmented attention.
Every triton result is first checked bit-exact against the CPU engine's integers.

Three steps, because the GPU machine has no FINN, no brevitas and no network:

    python bench/gpu.py --prepare build/gpu          # here: compile the graphs, CPU-engine
                                                     # reference outputs, a netfabric wheel
    python bench/gpu.py --graphs build/gpu --out gpu.json    # on the GPU machine (< 5 min)
    python bench/gpu.py --record gpu.json            # here: RESULTS.md section and plot

On the GPU machine, install the wheel first (its torch and triton are used as they are):
``pip install --no-deps --ignore-requires-python --target SITE build/gpu/*.whl``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("mlp", "cnn", "transformer")
REFERENCE_IMAGES = 256
BATCHES = {"mlp": [1, 64, 1024, 16384, 65536], "cnn": [1, 64, 1024, 16384],
           "transformer": [1, 64, 1024, 8192]}
# (M, K, N) of the int8 GEMM: the MLP's first layer at two batches, and large squares where
# both kernels run at their peak
GEMMS = [(4096, 784, 256), (65536, 784, 256), (4096, 4096, 4096), (8192, 8192, 8192)]
ATTN_LENGTHS = [1024, 4096, 16384, 65536]
ATTN_SEGMENTS = [14, 64]


# ---------------------------------------------------------------------------------- prepare
def prepare(folder: Path) -> None:
    """Compile the shipped models, run the CPU engine on test images (the reference the GPU
    results must equal), and build a netfabric wheel, all into ``folder`` to carry."""
    import subprocess

    from netfabric import flow
    from netfabric.hls.frontend import CompileConfig
    from netfabric.hls.transformer import compile_transformer_cli
    from netfabric.host.cpu_engine import CpuEngine
    from netfabric.models.data import load_mnist

    folder.mkdir(parents=True, exist_ok=True)
    x = load_mnist("test")[0][:REFERENCE_IMAGES, None]
    for model in MODELS:
        out = folder / model
        if model == "transformer":
            graph = compile_transformer_cli(flow.PRETRAINED / "transformer_int8.pt", out)
        else:
            qonnx = flow.export_checkpoint(flow.PRETRAINED / f"{model}_w8a8.pt", out / "model.onnx")
            graph = flow.compile_model(qonnx, out, CompileConfig(label_select=False))
        np.save(out / "images.npy", x)
        np.save(out / "cpu_engine.npy", CpuEngine(graph).run(x))
        print(f"{model}: {graph}")
    for old in folder.glob("*.whl"):
        old.unlink()
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(folder), str(ROOT)], check=True)


# ---------------------------------------------------------------------------------- measure
def _bench(fn, reps: int = 20) -> float:
    """Median ms per call between CUDA events (triton's do_bench: warm-up, cache flush)."""
    from triton.testing import do_bench

    return float(do_bench(fn, warmup=5, rep=reps))


def _peak_mb(fn) -> float:
    import torch

    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return round((torch.cuda.max_memory_allocated() - base) / 2**20, 2)


def measure_exact(graphs: Path) -> list[dict]:
    from netfabric.host.triton_backend import TritonBackend

    rows = []
    for model in MODELS:
        folder = graphs / model
        backend = TritonBackend(folder / "hw_graph.onnx")
        x, want = np.load(folder / "images.npy"), np.load(folder / "cpu_engine.npy")
        got = backend.run(x)
        rows.append({"model": model, "images": len(x),
                     "bit_exact_vs_cpu_engine": bool(np.array_equal(got.reshape(want.shape), want))})
        print(rows[-1], flush=True)
    return rows


def measure_gemm() -> list[dict]:
    import torch

    from netfabric.host.triton_ops import mvau_int8

    rows = []
    g = torch.Generator(device="cuda").manual_seed(0)
    for m, k, n in GEMMS:
        a = torch.randint(-128, 128, (m, k), generator=g, device="cuda", dtype=torch.int8)
        b = torch.randint(-128, 128, (k, n), generator=g, device="cuda", dtype=torch.int8)
        exact = bool(torch.equal(mvau_int8(a, b).to(torch.int32), torch._int_mm(a, b)))
        ours, peer = _bench(lambda a=a, b=b: mvau_int8(a, b)), _bench(lambda a=a, b=b: torch._int_mm(a, b))
        tops = 2 * m * k * n / 1e9
        rows.append({"m": m, "k": k, "n": n, "triton_ms": round(ours, 4), "int_mm_ms": round(peer, 4),
                     "triton_tops": round(tops / ours, 1), "int_mm_tops": round(tops / peer, 1),
                     "ratio_vs_int_mm": round(peer / ours, 3), "equal_to_int_mm": exact})
        print(rows[-1], flush=True)
    return rows


def _float_twin(model: str):
    """The shipped model's float twin (its trained float weights, plain torch layers) on the GPU."""
    from netfabric import flow

    if model == "transformer":
        from netfabric.models.train_transformer import load_transformer

        net = load_transformer(flow.PRETRAINED / "transformer_int8.pt", quant=False)
    else:
        from netfabric.models.train import load_checkpoint, model_from_checkpoint

        net = model_from_checkpoint(load_checkpoint(flow.PRETRAINED / f"{model}_w8a8.pt"),
                                    quant=False)
    return net.eval().to("cuda")


def measure_models(graphs: Path) -> list[dict]:
    import torch

    from netfabric.host.triton_backend import TritonBackend

    rows = []
    for model in MODELS:
        backend = TritonBackend(graphs / model / "hw_graph.onnx")
        net = _float_twin(model)
        images = np.load(graphs / model / "images.npy")
        for batch in BATCHES[model]:
            idx = np.arange(batch) % len(images)
            x_dev = backend.to_device(images[idx])
            x_float = torch.from_numpy(images[idx].astype(np.float32) / 255).to("cuda")
            row = {"model": model, "batch": batch}
            try:
                row["triton_ms"] = round(_bench(partial(backend.run_device, x_dev)), 4)
                with torch.inference_mode():
                    row["float32_ms"] = round(_bench(partial(net, x_float)), 4)
                    with torch.autocast("cuda", dtype=torch.float16):
                        row["float16_ms"] = round(_bench(partial(net, x_float)), 4)
            except torch.cuda.OutOfMemoryError:
                row["error"] = "out of memory"
                torch.cuda.empty_cache()
            for key in ("triton", "float32", "float16"):
                if f"{key}_ms" in row:
                    row[f"{key}_per_s"] = round(batch / row[f"{key}_ms"] * 1e3)
            rows.append(row)
            print(row, flush=True)
    return rows


def measure_profile(graphs: Path, model: str = "transformer", batch: int = 4096) -> list[dict]:
    """Where the triton backend's time goes: each node of ``model`` timed alone on the inputs
    the whole graph gives it (median of ``do_bench``)."""
    import torch

    from netfabric.host.triton_backend import TritonBackend

    backend = TritonBackend(graphs / model / "hw_graph.onnx")
    images = np.load(graphs / model / "images.npy")
    tensors = {backend.graph.input_name: backend.to_device(images[np.arange(batch) % len(images)])}
    rows = []
    with torch.inference_mode():
        for node, ins, run in backend.steps:
            args = [tensors[t] for t in ins]
            tensors.update(zip(node.outputs, run(args), strict=True))
            rows.append({"model": model, "batch": batch, "node": node.name, "op": node.op_type,
                         "ms": round(_bench(partial(run, args)), 4)})
    for row in sorted(rows, key=lambda r: -r["ms"])[:5]:
        print(row, flush=True)
    return rows


def measure_attention(heads: int = 4, head_dim: int = 16) -> list[dict]:
    import torch
    import torch.nn.functional as F

    from netfabric.host.triton_ops import prepare_segment_attention, segment_attention
    from netfabric.models.transformer import segmented_attention

    rows = []
    g = torch.Generator(device="cuda").manual_seed(0)
    for n in ATTN_LENGTHS:
        q8, k8, v8 = (torch.randint(-128, 128, (1, heads, n, head_dim), generator=g,
                                    device="cuda", dtype=torch.int8) for _ in range(3))
        qh, kh, vh = (t.to(torch.float16) / 64 for t in (q8, k8, v8))
        with torch.inference_mode():
            full = partial(F.scaled_dot_product_attention, qh, kh, vh)
            flash, flash_mb = _bench(full), _peak_mb(full)
        for seg in ATTN_SEGMENTS:
            # the tables are prepared once, as a model's node does
            plan = prepare_segment_attention(seg, head_dim, q8.device)
            fused = partial(segment_attention, q8, k8, v8, seg, plan=plan)
            ours, ours_mb = _bench(fused), _peak_mb(fused)
            with torch.inference_mode():
                seg_torch = partial(segmented_attention, qh, kh, vh, seg)
                seg_float, seg_float_mb = _bench(seg_torch), _peak_mb(seg_torch)
            rows.append({"n": n, "segment": seg, "heads": heads, "head_dim": head_dim,
                         "triton_int8_ms": round(ours, 4), "sdpa_flash_fp16_ms": round(flash, 4),
                         "torch_segmented_fp16_ms": round(seg_float, 4),
                         "speedup_vs_sdpa": round(flash / ours, 2),
                         "triton_int8_mb": ours_mb, "sdpa_flash_fp16_mb": flash_mb,
                         "torch_segmented_fp16_mb": seg_float_mb})
            print(rows[-1], flush=True)
    return rows


def measure(graphs: Path, out: Path) -> None:
    import torch
    import triton

    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run this on a GPU machine (or use TRITON_INTERPRET "
                         "for correctness, in the tests)")
    t0 = time.perf_counter()
    data = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__,
            "triton": triton.__version__, "cuda": torch.version.cuda}
    for part, fn in (("exact", lambda: measure_exact(graphs)), ("gemm", measure_gemm),
                     ("models", lambda: measure_models(graphs)), ("attention", measure_attention),
                     ("profile", lambda: measure_profile(graphs))):
        try:
            data[part] = fn()
        except Exception as exc:  # keep what the other parts measured
            data[f"{part}_error"] = f"{type(exc).__name__}: {exc}"
            print(f"{part}: {data[f'{part}_error']}", flush=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(data, indent=2))
    data["seconds"] = round(time.perf_counter() - t0, 1)
    out.write_text(json.dumps(data, indent=2))
    print(f"wrote {out} in {data['seconds']} s")


# ----------------------------------------------------------------------------------- record
def record(path: Path, commit: str | None) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from _report import BENCH, write_json, write_section

    data = json.loads(Path(path).read_text())
    write_json("gpu", data)
    where = f"{data['device']}, torch {data['torch']}, triton {data['triton']}, CUDA {data['cuda']}"
    lines = [f"## Triton backend on a GPU ({data['device']})", "",
             "Command: `python bench/gpu.py --graphs build/gpu --out gpu.json` on the GPU machine "
             f"({where}; graphs, CPU-engine references and the wheel from `--prepare`), recorded "
             "with `--record`. Times are "
             "medians of `triton.testing.do_bench` (CUDA events).", ""]
    for key in ("exact", "gemm", "models", "attention", "profile"):
        if f"{key}_error" in data:
            lines += [f"**{key}: failed on the GPU** — `{data[f'{key}_error']}`", ""]
    if data.get("exact"):
        lines += ["Bit-exact check (the triton backend's integers vs the CPU engine's, computed "
                  "on the CPU beforehand): " + ", ".join(
                      f"{r['model']} {'equal' if r['bit_exact_vs_cpu_engine'] else 'DIFFERENT'} "
                      f"on {r['images']} images" for r in data["exact"]) + ".", ""]
    if data.get("gemm"):
        lines += ["### int8 GEMM: the MVAU kernel (`tl.dot`, int32 accumulator) vs `torch._int_mm`",
                  "", "| M | K | N | triton ms | _int_mm ms | triton TOPS | _int_mm TOPS | "
                  "triton / _int_mm speed | same integers |", "|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        lines += [f"| {r['m']} | {r['k']} | {r['n']} | {r['triton_ms']} | {r['int_mm_ms']} | "
                  f"{r['triton_tops']} | {r['int_mm_tops']} | {r['ratio_vs_int_mm']} | "
                  f"{'yes' if r['equal_to_int_mm'] else 'NO'} |" for r in data["gemm"]]
        lines.append("")
    if data.get("models"):
        lines += ["### Shipped models: triton backend (integers) vs the torch float twin",
                  "", "Float twin: the same model with its trained float weights in plain torch "
                  "layers, fp32 and fp16 autocast (cuBLAS/cuDNN). Inputs already on the GPU.", "",
                  "| model | batch | triton inputs/s | float32 inputs/s | float16 inputs/s | "
                  "triton / float16 |", "|---|---:|---:|---:|---:|---:|"]
        for r in data["models"]:
            ratio = (f"{r['triton_per_s'] / r['float16_per_s']:.2f}"
                     if r.get("triton_per_s") and r.get("float16_per_s") else "-")
            lines.append(f"| {r['model']} | {r['batch']} | {r.get('triton_per_s', r.get('error', '-')):,} | "
                         f"{r.get('float32_per_s', '-'):,} | {r.get('float16_per_s', '-'):,} | {ratio} |"
                         .replace("-:,", "-"))
        lines.append("")
    if data.get("attention"):
        att = data["attention"]
        lines += ["### Segmented attention: the fused int8 kernel vs SDPA (flash, fp16, full "
                  "attention) and torch's float segmented attention", "",
                  f"Batch 1, {att[0]['heads']} heads of {att[0]['head_dim']} (the shipped "
                  "transformer's), peak memory = allocated above the inputs.", "",
                  "| n | segment | triton int8 ms | SDPA flash ms | torch segmented ms | "
                  "SDPA / triton | triton MB | SDPA MB | torch segmented MB |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        lines += [f"| {r['n']} | {r['segment']} | {r['triton_int8_ms']} | {r['sdpa_flash_fp16_ms']} | "
                  f"{r['torch_segmented_fp16_ms']} | {r['speedup_vs_sdpa']} | {r['triton_int8_mb']} | "
                  f"{r['sdpa_flash_fp16_mb']} | {r['torch_segmented_fp16_mb']} |" for r in att]
        fig, ax = plt.subplots(figsize=(6, 4))
        for seg in sorted({r["segment"] for r in att}):
            pts = [(r["n"], r["triton_int8_ms"]) for r in att if r["segment"] == seg]
            ax.loglog(*zip(*pts, strict=True), "-o", label=f"triton int8, s={seg}")
        pts = sorted({(r["n"], r["sdpa_flash_fp16_ms"]) for r in att})
        ax.loglog(*zip(*pts, strict=True), "--s", label="SDPA flash fp16 (full)")
        ax.set_xlabel("sequence length n")
        ax.set_ylabel("ms per call")
        ax.set_title(f"attention on {data['device']}")
        ax.legend()
        fig.tight_layout()
        fig.savefig(BENCH / "results" / "gpu_attention.png", dpi=120)
        lines += ["", "![GPU attention scaling](results/gpu_attention.png)"]
    if data.get("profile"):
        prof = data["profile"]
        total = sum(r["ms"] for r in prof)
        by_op: dict[str, float] = {}
        for r in prof:
            by_op[r["op"]] = by_op.get(r["op"], 0.0) + r["ms"]
        lines += ["", f"### Where the triton backend's time goes: {prof[0]['model']} at batch "
                  f"{prof[0]['batch']}", "", "Each node timed alone on its real inputs "
                  f"(sum {total:.2f} ms).", "", "| op | ms | share |", "|---|---:|---:|"]
        lines += [f"| {op} | {ms:.3f} | {ms / total:.0%} |"
                  for op, ms in sorted(by_op.items(), key=lambda kv: -kv[1])]
    stamp = (f"Measured on the {data['device']} at commit {commit or 'unknown'} (the code sent to "
             f"the GPU machine), recorded {time.strftime('%Y-%m-%d')}.")
    write_section("gpu", "\n".join(lines), stamp)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prepare", type=Path, help="compile graphs and references into this folder")
    ap.add_argument("--graphs", type=Path, help="the folder --prepare wrote (on the GPU machine)")
    ap.add_argument("--out", type=Path, help="measure on this machine's GPU, write JSON here")
    ap.add_argument("--record", type=Path, help="write a measured JSON into bench/RESULTS.md")
    ap.add_argument("--commit", help="the commit the GPU run measured (for --record)")
    args = ap.parse_args()
    if args.prepare:
        prepare(args.prepare)
    elif args.record:
        record(args.record, args.commit)
    elif args.out and args.graphs:
        measure(args.graphs, args.out)
    else:
        ap.error("give --prepare DIR (here), --graphs DIR --out FILE (GPU machine) or --record FILE")


if __name__ == "__main__":
    main()
