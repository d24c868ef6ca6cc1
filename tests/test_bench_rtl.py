"""bench/rtl.py --collect: a bitstream with no build folder keeps its last recorded row, marked
with the commit it was measured at, and the table says it was not rebuilt; a build folder's
row is used as it is. (No tools run: the rows come from JSON written here.)"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "rtl.py"


def _bench():
    sys.path.insert(0, str(BENCH.parent))
    spec = importlib.util.spec_from_file_location("bench_rtl", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _report(fmax: float) -> dict:
    return {"fmax_mhz": fmax, "seed_runs": [{"seed": 1, "fmax_mhz": fmax}], "timing_met": True,
            "resources": [{"kind": "BRAM", "used": 30, "available": 208}],
            "steps": {"synth": 10.0, "pnr": 20.0}}


def test_collect_keeps_old_rows_marked_and_uses_new_builds(tmp_path, monkeypatch):
    rtl = _bench()
    results = tmp_path / "bench"
    (results / "results").mkdir(parents=True)
    old = {"provenance": "measured at commit abc1234 on a machine", "open_flow": [
        {"board": "ulx3s-85f", "model": "cnn", "target_mhz": 100.0, "seeds": 3,
         "fmax_mhz": 76.2, "fmax_min": 76.2, "fmax_median": 76.2, "fmax_max": 76.2,
         "fmax_per_seed": {"1": 76.2}, "timing_met": False, "wall_s": 900.0},
        {"board": "ulx3s-85f", "model": "mlp", "target_mhz": 100.0, "seeds": 3,
         "fmax_mhz": 90.0, "wall_s": 100.0}]}
    (results / "results" / "rtl.json").write_text(json.dumps(old))
    monkeypatch.setattr(rtl, "BENCH", results)
    work = tmp_path / "build"
    built = work / "bit_mlp_ulx3s-85f" / "bitstream"
    built.mkdir(parents=True)
    (built / "report.json").write_text(json.dumps(_report(131.5)))

    rows = rtl.build_all([("ulx3s-85f", "mlp", 100.0, 3), ("ulx3s-85f", "cnn", 100.0, 3)],
                         work, jobs=1, collect=True)
    mlp, cnn = rows
    assert mlp["fmax_per_seed"] == {"1": 131.5} and "reused_from" not in mlp
    assert cnn["fmax_per_seed"] == {"1": 76.2} and cnn["reused_from"] == "abc1234"
    table = rtl.markdown("python bench/rtl.py --collect", [], rows)
    cnn_line = next(line for line in table.splitlines() if "| cnn |" in line)
    mlp_line = next(line for line in table.splitlines() if "| mlp |" in line)
    assert "not rebuilt: row of abc1234" in cnn_line
    assert "not rebuilt" not in mlp_line and "131.5" in mlp_line


def test_fmax_plot_written_only_when_a_build_has_seeds(tmp_path):
    rtl = _bench()
    path = tmp_path / "fmax.png"
    assert not rtl.plot_fmax([{"board": "b", "model": "m", "target_mhz": 100.0,
                               "error": "refused before synthesis"}], path)
    assert not path.exists()
    rows = [{"board": "ulx3s-85f", "model": "cnn", "target_mhz": 100.0,
             "fmax_per_seed": {"1": 102.1, "2": 98.6, "3": None}},
            {"board": "icebreaker", "model": "digits", "target_mhz": 24.0,
             "fmax_per_seed": {"1": 35.0}}]
    assert rtl.plot_fmax(rows, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_stopped_build_claims_timing_only_for_its_finished_seeds(tmp_path, monkeypatch):
    """Two of three seeds finished (the third stopped): the row does not say timing is met
    on every seed; it says on how many finished seeds it was."""
    rtl = _bench()
    report = {"fmax_mhz": 111.9, "timing_met": True,
              "seed_runs": [{"seed": 1, "fmax_mhz": 111.9, "met": True},
                            {"seed": 2, "fmax_mhz": 109.7, "met": True}],
              "resources": [{"kind": "BRAM", "used": 84, "available": 208}]}
    monkeypatch.setattr(rtl, "_finished_seeds", lambda out, board: report)
    row = rtl.open_flow("ulx3s-85f", "transformer", 100.0, 3, tmp_path, collect=True)
    assert row["seeds_finished"] == 2 and row["timing_met"] is None
    assert row["timing_met_on_finished_seeds"] is True
    line = next(x for x in rtl.markdown("cmd", [], [row]).splitlines() if "| transformer |" in x)
    assert "met on the 2 finished seeds of 3" in line
    assert "stopped: 2 of 3 seeds finished" in line


def test_only_keeps_the_other_models_rows_marked(tmp_path, monkeypatch):
    """``--only mlp``: the MLP's new rows, every other model's rows of the last recorded run
    marked with their commit, in the tables' usual order."""
    rtl = _bench()
    results = tmp_path / "bench"
    (results / "results").mkdir(parents=True)
    sim = {"frames": 20, "measured": 5184, "finn_estimate": 5184, "finn_covers_all_ops": True,
           "registry_cycles": 5184, "ideal": 5184, "first_frame_latency": 9000,
           "bit_exact_vs_cpu_engine": True}
    old = {"provenance": "measured at commit abc1234 on a machine",
           "simulation": [{**sim, "model": "mlp", "measured": 999}, {**sim, "model": "cnn"}],
           "open_flow": [{"board": "ulx3s-85f", "model": "cnn", "target_mhz": 100.0, "seeds": 3,
                          "fmax_min": 101.0, "fmax_median": 104.5, "fmax_max": 105.9,
                          "fmax_per_seed": {"1": 101.0}, "timing_met": True, "wall_s": 900.0},
                         {"board": "ulx3s-85f", "model": "mlp", "target_mhz": 100.0,
                          "seeds": 3, "fmax_min": 90.0, "wall_s": 100.0}]}
    (results / "results" / "rtl.json").write_text(json.dumps(old))
    monkeypatch.setattr(rtl, "BENCH", results)
    new_sim = {**sim, "model": "mlp", "measured": 784}
    new_flow = {"board": "ulx3s-85f", "model": "mlp", "target_mhz": 100.0, "seeds": 3,
                "fmax_min": 127.0, "fmax_median": 130.0, "fmax_max": 132.0,
                "fmax_per_seed": {"1": 127.0}, "timing_met": True, "wall_s": 1200.0}
    sims, flows = rtl.keep_other_rows([new_sim], [new_flow], bitstreams=True)
    assert [r["model"] for r in sims] == ["mlp", "cnn"]
    assert sims[0] is new_sim and sims[1]["reused_from"] == "abc1234"
    assert [r["model"] for r in flows] == ["mlp", "cnn"]
    assert flows[0] is new_flow and flows[1]["reused_from"] == "abc1234"
    table = rtl.markdown("python bench/rtl.py --only mlp", sims, flows).splitlines()
    assert "not rerun: row of abc1234" in next(line for line in table if "| cnn (" in line)
    mlp_lines = [line for line in table if line.startswith("| mlp |") or "| mlp |" in line]
    assert all("abc1234" not in line for line in mlp_lines) and len(mlp_lines) == 2
    assert "784" in mlp_lines[0] and "127.0 / 130.0 / 132.0" in mlp_lines[1]
