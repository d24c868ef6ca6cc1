"""The requantizer path of the activation (requant.v in requant_act.v, through thresholding.v)
against the numpy reference (golden.multithreshold: FINN's threshold count on the raw table).

Random tables that are rounded arithmetic progressions become requantizers (host/requant.py's
proof); channels whose table is perturbed off any progression, and a whole table that is no
progression, must go to the threshold search, and the outputs stay bit-exact either way.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_rtl_modules import DATA_ROOT, _run

from netfabric.host.hwgraph import int_type
from netfabric.hw.rtl_ops import plan_activation, thresholding_latency
from netfabric.sim import golden

CH, PE, IBITS, OBITS = 8, 2, 12, 4


def _progressions(rng: np.random.Generator, rejected: list[int]) -> np.ndarray:
    """Rounded progressions inside the INT12 range; ``rejected`` rows get one threshold
    moved by 3, which no progression rounds to."""
    n = 2**OBITS - 1
    start = rng.uniform(-1500, -200, size=(CH, 1))
    step = rng.uniform(20.0, 120.0, size=(CH, 1))
    t = np.round(start + step * np.arange(n)).astype(np.int64)
    t[rejected, 7] += 3
    return t


def _case(name: str, t: np.ndarray, simulator: str) -> tuple[dict, dict]:
    dt = int_type(f"INT{IBITS}")
    tbits = IBITS + 1
    case_dir = DATA_ROOT / f"requant_{name}"
    case_dir.mkdir(parents=True, exist_ok=True)
    act = plan_activation(t, tbits, PE, dt, OBITS, "thresh", "rq.hex")
    latency = thresholding_latency(act)
    for spec in act.mem.values():
        spec[1](case_dir)
    np.save(case_dir / "thresholds.npy", t)
    hdl = dict(CHANNELS=CH, PE=PE, IBITS=IBITS, ISIGNED=1, TBITS=tbits, OBITS=OBITS, OSIGNED=0,
               ACT_BIAS=0, NVEC=3, THRESH_FILE=case_dir / "thresh", **act.params)
    if "RQ_FILE" in act.mem:
        hdl["RQ_FILE"] = case_dir / "rq.hex"
    tb = {"thresholds_npy": str(case_dir / "thresholds.npy"), "seed": 9, "frames": 4}
    rep = _run("thresholding", f"requant_{name}", hdl, tb, simulator)
    # thresholding.v's header: 4*OBITS + 3 cycles, 7 with the requantizer alone (NT = 0);
    # the stitcher must never assume less (its FIFOs would be too shallow)
    assert rep["first_beat_latency"] == (7 if act.params.get("NT") == 0 else 4 * OBITS + 3)
    assert rep["first_beat_latency"] <= latency
    return act.params | {"proven": act.proven}, rep


@pytest.mark.sim
@pytest.mark.parametrize("simulator", ["verilator", "icarus"])
def test_mixed_table_requantizes_proven_channels_and_searches_the_rest(simulator):
    rng = np.random.default_rng(11)
    t = _progressions(rng, rejected=[3, 7])
    params, rep = _case("mixed", t, simulator)
    # channels 3 and 7 (lane 1, folds 1 and 3): two tables in lane 1, none needed in lane 0
    assert (params["RQ"], params["NT"], params["proven"]) == (1, 2, CH - 2)
    assert rep["interval"] <= 1.05 * rep["ideal"]


@pytest.mark.sim
def test_all_proven_needs_no_table():
    params, rep = _case("all_proven", _progressions(np.random.default_rng(12), []), "icarus")
    assert (params["RQ"], params["NT"], params["proven"]) == (1, 0, CH)
    assert rep["interval"] <= 1.05 * rep["ideal"]


@pytest.mark.sim
def test_a_table_the_proof_rejects_goes_to_threshold_search():
    rng = np.random.default_rng(13)
    t = np.sort(rng.integers(-2000, 2000, size=(CH, 2**OBITS - 1)), axis=1)
    params, rep = _case("rejected", t, "icarus")
    assert "RQ" not in params and params["proven"] == 0
    assert rep["interval"] <= 1.05 * rep["ideal"]


def test_requantizer_constants_reproduce_the_table_exhaustively(tmp_path):
    """The RQ_FILE words decode to constants that give the table's count on every input
    (the arithmetic requant.v does, in numpy), and the search tables hold the rest."""
    t = _progressions(np.random.default_rng(11), rejected=[3, 7])
    act = plan_activation(t, IBITS + 1, PE, int_type(f"INT{IBITS}"), OBITS, "thresh", "rq.hex")
    p = act.params
    mb, bb = p["RQ_MBITS"], p["RQ_BBITS"]
    rw = 1 + bb + mb
    x = np.arange(-(2 ** (IBITS - 1)), 2 ** (IBITS - 1))
    ref = golden.multithreshold(np.repeat(x[:, None], CH, axis=1), t)
    act.mem["RQ_FILE"][1](tmp_path)
    words = [int(w, 16) for w in (tmp_path / "rq.hex").read_text().split()]
    for c in range(CH):
        k = (words[c // PE] >> ((c % PE) * rw)) & ((1 << rw) - 1)
        use, m = k >> (rw - 1), k & ((1 << mb) - 1)
        b = golden.wrap(np.array([(k >> mb) & ((1 << bb) - 1)]), bb, True)[0]
        if use:
            y = np.clip((x * m + int(b)) >> p["RQ_SHIFT"], 0, p["RQ_LEVELS"])
            assert np.array_equal(y, ref[:, c]), c
        else:
            assert c in (3, 7)
