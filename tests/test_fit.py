"""The fit model (hw/flow/fit.py): calibration against recorded Yosys/nextpnr reports, the
fit check before synthesis, and folding for a board (hls/boardfold.py)."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import pytest

from netfabric.hw.flow import DesignDoesNotFitError
from netfabric.hw.flow.fit import check_fit, compare, predict

RECORDS = json.loads((Path(__file__).parent / "fixtures" / "fit_calibration.json").read_text())
# Largest |predicted - reported| / reported on the recorded designs (MLP INT8, TFC-w1a1 x2,
# CNV-w1a1): block RAMs and multipliers are counted per memory and lane, LUT4 / FF are
# per-module estimates under one fitted scale each. Measured: BRAM -3..+8%, DSP 0%,
# LUT4 -15..+15%, FF -20..+20%.
BOUNDS = {"BRAM": 0.10, "DSP": 0.0, "LUT4": 0.16, "FF": 0.21}


@pytest.mark.parametrize("record", RECORDS["records"], ids=lambda r: r["name"])
def test_calibration_errors_within_bounds(record):
    pred = predict(record["layers"], record["board"])
    errors = compare(pred, record["reported"])
    for kind, bound in BOUNDS.items():
        err = errors[kind]["error"] or 0.0
        assert abs(err) <= bound + 1e-9, f"{record['name']} {kind}: {errors[kind]}"


def test_fit_check_refuses_oversize_folding_in_seconds():
    """The MLP record with its first layer unfolded to 64 x 784 lanes: refused with the
    numbers, long before any tool would run."""
    layers = copy.deepcopy(next(r for r in RECORDS["records"] if r["name"] == "mlp_int8")["layers"])
    first = next(layer for layer in layers if layer["module"] == "mvau")
    first["params"].update(PE=64, SIMD=784)
    t0 = time.perf_counter()
    with pytest.raises(DesignDoesNotFitError) as info:
        check_fit(layers, "ulx3s-85f")
    assert time.perf_counter() - t0 < 5
    msg = str(info.value)
    assert "DSP (MULT18X18D) needs 50," in msg and "device has 156" in msg
    assert "\n" not in msg


def test_recorded_designs_pass_the_fit_check():
    for record in RECORDS["records"]:
        check_fit(record["layers"], record["board"])


def test_board_folding_fits_and_is_no_slower_than_fully_folded(mlp_qonnx, compile_helper,
                                                                tmp_path):
    """The shipped MLP asked for 10M frames/s on the ulx3s: the search settles on a folding
    that is predicted to fit, no slower than the fully folded one, and the summary names
    what bounded the bottleneck."""
    compile_helper(mlp_qonnx, tmp_path, target_fps=10_000_000, board="ulx3s-85f")
    est = json.loads((tmp_path / "estimates.json").read_text())
    search = est["folding"]["board"]
    assert all(search["predicted"][k] <= search["capacity"][k] for k in search["capacity"])
    slowest = sum(layer["cycles"] for layer in est["layers"])  # a bound on PE = SIMD = 1
    assert est["bottleneck_cycles"] <= slowest
    assert all("bound" in layer for layer in est["layers"])
    if search["limited_by"]:
        assert any(layer["bound"].startswith("board: ") for layer in est["layers"])
