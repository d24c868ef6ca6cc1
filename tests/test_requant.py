import numpy as np
import pytest

from netfabric.host.requant import fit_requantizer


def _exhaustive_equal(thr, rq, proven, lo, hi) -> bool:
    acc = np.arange(lo, hi + 1)
    for c in np.flatnonzero(proven):
        ref = np.searchsorted(np.ceil(thr[c]), acc, side="right")
        got = np.clip((acc * rq.mult[c] + rq.add[c]) >> rq.shift, 0, rq.levels)
        if not np.array_equal(ref, got):
            return False
    return True


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_rounded_progressions_become_exact_requantizers(bits):
    rng = np.random.default_rng(bits)
    n = 2**bits - 1
    start = rng.uniform(-3000, 3000, size=(8, 1))
    step = rng.uniform(1.5, 90.0, size=(8, 1))
    thr = np.ceil(start + step * np.arange(n))
    lo, hi = -2**14, 2**14 - 1
    rq, proven = fit_requantizer(thr, lo, hi)
    assert proven.all()
    assert _exhaustive_equal(thr, rq, proven, lo, hi)


def test_a_non_progression_keeps_its_table():
    thr = np.array([[0, 1, 2, 50, 51, 52, 400]], dtype=float)
    assert fit_requantizer(thr, -1000, 1000) is None


def test_proof_agrees_with_exhaustive_check_on_the_shipped_mlp(mlp_graph):
    from netfabric.host.hwgraph import IntType, load_hwgraph

    g = load_hwgraph(mlp_graph)
    for node in g.nodes:
        if node.op_type != "MVAU" or node.attr("noActivation"):
            continue
        acc = IntType(node.attr("accDataType"))
        thr = np.clip(np.ceil(g.params[node.inputs[2]]), acc.min, acc.max + 1)
        fitted = fit_requantizer(thr, acc.min, acc.max)
        assert fitted is not None
        rq, proven = fitted
        assert proven.mean() > 0.5  # most channels of a BatchNorm + uniform quantizer fit
        assert _exhaustive_equal(thr, rq, proven, acc.min, acc.max)
