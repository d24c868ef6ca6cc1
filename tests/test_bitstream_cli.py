"""`make bitstream` entry point: the Vivado boundary for pynq-z2 (no Vivado here)."""

import shutil

import pytest

from netfabric import bitstream


@pytest.mark.skipif(shutil.which("vivado") is not None, reason="Vivado is installed here")
def test_pynq_z2_writes_hls_sources_then_names_what_is_missing(mlp_graph, tmp_path, capsys):
    rc = bitstream.main(["--graph", str(mlp_graph), "--board", "pynq-z2", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2
    assert "Vivado" in err and "Vitis HLS" in err and "Traceback" not in err
    cpp = list((tmp_path / "hls").rglob("*.cpp"))
    assert len(cpp) >= 3  # one per HLS layer (MVAUs, LabelSelect)


def test_unknown_board_is_reported(mlp_graph, tmp_path, capsys):
    rc = bitstream.main(["--graph", str(mlp_graph), "--board", "de10-nano", "--out", str(tmp_path)])
    assert rc == 2
    assert "de10-nano" in capsys.readouterr().err
