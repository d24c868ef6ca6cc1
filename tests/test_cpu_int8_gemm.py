"""The CPU engine's int8 path (host/cpu_int8.py): a chain of 8-bit MVAUs as one onnxruntime
session gives exactly the HW-layer graph's integers (random widths, signed and unsigned inputs,
weights and activations, every threshold form), and its probes do their job: a GEMM kernel that
saturates like vpmaddubsw on CPUs without VNNI is caught and replaced (u8 x u8 weights, or the
numpy plan), and a threshold line that is off somewhere fails its check points."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from netfabric.host import cpu_int8
from netfabric.host.cpu_engine import CpuEngine
from netfabric.host.cpu_thresholds import ThresholdEval
from netfabric.host.hwgraph import IntType, load_hwgraph
from netfabric.ops.execute import run_graph
from netfabric.ops.graphbuild import HWGraphBuilder

LEVELS = 15  # thresholds per channel: 4-bit activations between layers


def _progression(rng, channels: int, lo: int, hi: int) -> np.ndarray:
    """Thresholds as streamlining makes them: ceil(k * u - v), per channel."""
    u = rng.uniform(1.5, (hi - lo) / (LEVELS + 1), size=(channels, 1))
    v = -rng.uniform(lo, lo + (hi - lo) / 4, size=(channels, 1))
    return np.ceil(np.arange(1, LEVELS + 1) * u - v).astype(np.int64)


def _thresholds(rng, kind: str, channels: int, lo: int, hi: int) -> np.ndarray:
    span = (lo // 4, hi // 4)
    thr = _progression(rng, channels, *span)
    if kind == "fixes":  # FINN's float32 rounding: thresholds one off the progression
        thr[::2, 6] += 1
        thr[1::3, 2] -= 1
    elif kind == "search":  # some channels no progression at all
        thr[::3] = np.sort(rng.integers(*span, size=(len(thr[::3]), LEVELS)), axis=1)
    elif kind == "shared":
        thr = thr[:1]
    return np.sort(thr, axis=1)


def _chain(tmp_path, rng, widths, itype: str, wtypes, kinds, acts):
    """MVAUs widths[0] -> widths[1] -> ...; layer i has ``wtypes[i]`` weights, thresholds of
    ``kinds[i]`` ('line', 'fixes', 'search', 'shared'; 'none': noActivation, last layer only)
    and ActVal ``acts[i]`` (-8: signed INT4 outputs, 0: UINT4)."""
    b = HWGraphBuilder("chain")
    b.input("x", [1, widths[0]], itype)
    src, src_type = "x", IntType(itype)
    for i, (mw, mh) in enumerate(zip(widths, widths[1:], strict=False)):
        wt = IntType(wtypes[i])
        w = rng.integers(wt.min, wt.max + 1, size=(mw, mh))
        b.param(f"w{i}", w, wt.name)
        lo = int(np.minimum(w * src_type.min, w * src_type.max).sum(0).min())
        hi = int(np.maximum(w * src_type.min, w * src_type.max).sum(0).max())
        bits = max(abs(lo), abs(hi)).bit_length() + 1
        attrs = dict(MW=mw, MH=mh, SIMD=1, PE=1, inputDataType=src_type.name,
                     weightDataType=wt.name, accDataType=f"INT{bits}", binaryXnorMode=0,
                     numInputVectors=[1])
        inputs = [src, f"w{i}"]
        if kinds[i] == "none":
            out_type = f"INT{bits}"
            attrs.update(outputDataType=out_type, ActVal=0, noActivation=1)
        else:
            b.param(f"t{i}", _thresholds(rng, kinds[i], mh, lo, hi))
            inputs.append(f"t{i}")
            out_type = "INT4" if acts[i] < 0 else "UINT4"
            attrs.update(outputDataType=out_type, ActVal=acts[i], noActivation=0)
        b.node("MVAU", inputs, [(f"h{i}", [1, mh], out_type)], name=f"fc{i}", **attrs)
        src, src_type = f"h{i}", IntType(out_type)
    b.output(src)
    return b.save(tmp_path / "chain.onnx")


def _inputs(rng, itype: str, widths, batch: int) -> np.ndarray:
    t = IntType(itype)
    x = rng.integers(t.min, t.max + 1, size=(batch, widths[0]))
    x[0], x[-1] = t.max, t.min  # the extreme rows
    return x


CASES = [  # widths, input type, weight types, threshold kinds, ActVals
    ([40, 24, 16, 10], "UINT8", ["INT8"] * 3, ["fixes", "line", "none"], [0, 0, 0]),
    ([33, 17, 9], "INT8", ["INT8", "INT4"], ["fixes", "search"], [-8, 0]),
    ([64, 31, 12, 5], "UINT4", ["INT4", "INT8", "INT2"], ["shared", "fixes", "none"], [-8, 0, 0]),
    ([100, 7, 3], "INT4", ["UINT8", "INT8"], ["search", "none"], [0, 0]),
    ([20, 48, 30], "UINT8", ["INT8", "UINT4"], ["line", "shared"], [0, -8]),
]


@pytest.mark.parametrize("case", CASES, ids=[str(i) for i in range(len(CASES))])
def test_int8_chain_equals_graph_semantics(tmp_path, case):
    widths, itype, wtypes, kinds, acts = case
    rng = np.random.default_rng(len(widths) * 100 + widths[0])
    path = _chain(tmp_path, rng, widths, itype, wtypes, kinds, acts)
    engine = CpuEngine(path)
    assert engine.mode == "int8"
    x = _inputs(rng, itype, widths, 37)
    want = run_graph(load_hwgraph(path), x)["output"]
    assert np.array_equal(engine.run(x), want)
    assert np.array_equal(engine.run(x[:1]), want[:1])
    assert engine.run(x).dtype == np.int64


def _vpmaddubsw_gemm(w: np.ndarray, w_zero: int, x_zero: int, x: np.ndarray) -> np.ndarray:
    """MLAS's u8 x s8 kernel on x86 without VNNI, in numpy: adjacent products summed in int16
    with saturation, then widened and summed; zero points corrected afterwards. Exact for
    uint8 weights (the u8 x u8 kernel widens to 16 bits before multiplying)."""
    xr, wr = x.astype(np.int64), w.astype(np.int64)
    if w.dtype == np.int8:
        prod = xr[:, :, None] * wr[None]  # [M, K, N]
        if prod.shape[1] % 2:
            prod = np.concatenate([prod, np.zeros_like(prod[:, :1])], axis=1)
        raw = np.clip(prod[:, 0::2] + prod[:, 1::2], -(2**15), 2**15 - 1).sum(1)
    else:
        raw = xr @ wr
    k = x.shape[1]
    out = raw - x_zero * wr.sum(0) - w_zero * xr.sum(1, keepdims=True) + k * x_zero * w_zero
    return out.astype(np.int32)


def test_saturating_kernel_is_caught_and_replaced(tmp_path):
    """INT8 weights against UINT8 inputs overflow the int16 pair sums: the probe rejects the
    u8 x s8 kernel there and the chain runs u8 x u8, still exact. INT4 weights cannot overflow
    (255 * 7 * 2 < 2^15): that layer keeps u8 x s8."""
    rng = np.random.default_rng(7)
    widths = [48, 20, 10]
    path = _chain(tmp_path, rng, widths, "UINT8", ["INT8", "INT4"], ["fixes", "none"], [0, 0])
    graph = load_hwgraph(path)
    chain = cpu_int8.build_chain(graph, 0, 255, [graph.output_name], 1, gemm=_vpmaddubsw_gemm)
    assert chain is not None and chain.kinds == ["u8", "s8"]
    x = _inputs(rng, "UINT8", widths, 21)
    assert np.array_equal(chain.run(x), run_graph(graph, x)["output"])
    # the emulation really is wrong on this layer's extremes (the probe saw a real failure)
    layer = cpu_int8.plan_layers(graph, cpu_int8.chain_nodes(graph, [graph.output_name]), 0, 255)[0]
    assert not cpu_int8.probe_gemm(layer, "s8", _vpmaddubsw_gemm)
    # onnxruntime's own u8 x s8 kernel: exact where the CPU has VNNI (vpdpbusd sums in int32),
    # the same saturating vpmaddubsw as the emulation on plain AVX2 / AVX-512BW
    vnni = _x86_has_vnni()
    if vnni is not None:
        assert cpu_int8.probe_gemm(layer, "s8", cpu_int8.ort_gemm) == vnni


def _x86_has_vnni() -> bool | None:
    """Whether this x86 CPU has VNNI (AVX-512 or AVX); None off x86 or without /proc."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    flags = next((ln.split(":", 1)[1].split() for ln in text.splitlines()
                  if ln.startswith("flags")), None)
    if flags is None or "sse2" not in flags:
        return None
    return "avx512_vnni" in flags or "avx_vnni" in flags


def _broken_gemm(w: np.ndarray, w_zero: int, x_zero: int, x: np.ndarray) -> np.ndarray:
    """A kernel that saturates its int32 result at 2^13 whatever the weights (both kinds)."""
    exact = (x.astype(np.int64) - x_zero) @ (w.astype(np.int64) - w_zero)
    return np.clip(exact, -(2**13), 2**13).astype(np.int32)


def test_engine_falls_back_to_the_plan_when_no_kernel_is_exact(tmp_path, monkeypatch):
    rng = np.random.default_rng(8)
    widths = [30, 12, 6]
    path = _chain(tmp_path, rng, widths, "UINT8", ["INT8", "INT8"], ["line", "none"], [0, 0])
    monkeypatch.setattr(cpu_int8, "ort_gemm", _broken_gemm)
    engine = CpuEngine(path)
    assert engine.mode == "plan" and engine.int8 is None
    with pytest.raises(Exception, match="no exact int8 path"):
        CpuEngine(path, mode="int8")
    x = _inputs(rng, "UINT8", widths, 9)
    assert np.array_equal(engine.run(x), run_graph(load_hwgraph(path), x)["output"])


def test_graphs_outside_the_chain_keep_the_plan(tmp_path):
    """Wider-than-8-bit inputs have no uint8 operand: the plan runs them."""
    rng = np.random.default_rng(9)
    path = _chain(tmp_path, rng, [16, 8], "INT14", ["INT8"], ["none"], [0])
    assert CpuEngine(path).mode == "plan"


def _threshold_runner(ev: ThresholdEval, zero: int, fast: bool):
    from onnx import TensorProto

    model = cpu_int8.threshold_model(ev, zero, TensorProto.INT64, fast)
    run = cpu_int8.session(model, 1).run
    return lambda acc: run(None, {"acc": acc.astype(np.int32)})[0]


@pytest.mark.parametrize("zero", [0, 128])
@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("seed", [10, 12, 15])
def test_onnx_thresholds_on_every_integer(zero, fast, seed):
    """The session's line (+ fixes, + table search channels) on every accumulator value: the
    probe's verdict on its check points is the verdict on the whole range, and the form with
    the fixes after the floor always passes."""
    rng = np.random.default_rng(seed)
    lo, hi = -3000, 5000
    thr = _thresholds(rng, "fixes", 12, lo * 4, hi * 4)
    thr[3, 5] += 2  # two off: table search for that channel
    thr[5, 0], thr[7, -1] = lo - 5, hi + 7  # levels always / never reached: clipped at the ends
    thr = np.sort(thr, axis=1)
    ev = ThresholdEval(thr, 12, lo, hi, -8 if zero else 0, np.float32, permutable=True)
    assert ev.kind == "line" and not ev.good.all() and np.any(ev.deltas != 0)
    x = np.tile(np.arange(lo, hi + 1)[:, None], (1, 12))
    want = (x[..., None] >= np.clip(thr, lo, hi + 1)).sum(-1) + ev.act + zero
    exact = np.array_equal(_threshold_runner(ev, zero, fast)(x[:, ev.order]), want[:, ev.order])
    assert cpu_int8.probe_thresholds(ev, zero, cpu_int8._I64, fast) == exact
    assert exact or fast


def test_threshold_probe_catches_an_off_line():
    """A line nudged so that one channel steps one value early somewhere fails the probe."""
    rng = np.random.default_rng(11)
    thr = _thresholds(rng, "line", 6, -80000, 80000)
    ev = ThresholdEval(thr, 6, -20000, 20000, 0, np.float32, permutable=True)
    assert ev.good.all() and cpu_int8.probe_thresholds(ev, 0, cpu_int8._I64)
    a, b, clo, chi = ev.line
    b = b.copy()
    b[2] += a[2] * 1.5  # channel 2 steps 1-2 accumulator values early
    ev.line = (a, b, clo, chi)
    assert not cpu_int8.probe_thresholds(ev, 0, cpu_int8._I64)
