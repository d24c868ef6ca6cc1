"""`netfabric deploy --board pynq-z2`: the package is complete, its Tcl says what Vivado must
do (checked as text: no Vivado here), the board script needs numpy and pynq only, the stream
packing round-trips, and the pynq backend says why it cannot run off a board."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import types
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from netfabric import deploy as dp
from netfabric.errors import BackendUnavailable
from netfabric.host import pynq_stream

FILES = {"README.md", "block_design.tcl", "build.sh", "build.tcl", "dataset_x.npy",
         "dataset_y.npy", "manifest.json", "netfabric.hwh", "package_ip.tcl", "pynq_stream.py",
         "rtl", "run_on_board.py"}


@pytest.fixture(scope="module")
def package(mlp_graph, tmp_path_factory) -> Path:
    return dp.write_package(mlp_graph, tmp_path_factory.mktemp("deploy") / "pkg",
                            dp.DeployConfig(count=30))


def test_package_is_complete(package, mlp_graph):
    assert {p.name for p in package.iterdir()} == FILES
    man = json.loads((package / "manifest.json").read_text())
    rtl_man = json.loads((package / "rtl" / "manifest.json").read_text())
    for src in [*rtl_man["sources"], *rtl_man["mem_files"], f"{dp.IP_NAME}.v"]:
        assert (package / "rtl" / src).is_file(), src
    inp, outp = man["input"], man["output"]
    assert inp["beat_bits"] == rtl_man["in_width_bits"]
    assert inp["words_per_beat"] == -(-inp["beat_bits"] // 32)
    assert inp["words_per_frame"] * 32 >= 784 * 8  # the MLP's 784 UINT8 pixels
    assert (inp["dtype"], inp["min"], inp["max"]) == ("UINT8", 0, 255)
    assert man["output_kind"] == "label" and outp["words_per_frame"] == 1
    assert man["dma"]["max_transfer_bytes"] == 2**26 - 1
    x, y = np.load(package / "dataset_x.npy"), np.load(package / "dataset_y.npy")
    assert x.shape == (30, *inp["host_shape"][1:]) and x.dtype == np.uint8 and y.shape == (30,)
    assert os.access(package / "build.sh", os.X_OK)


def _balanced(text: str) -> bool:
    depth = 0
    for ch in re.sub(r"\\.", "", text):
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth < 0:
            return False
    return depth == 0


def test_ip_packaging_tcl(package):
    tcl = (package / "package_ip.tcl").read_text()
    assert _balanced(tcl)
    for want in ["-part xc7z020clg400-1", "add_files [glob ./rtl/*.v]",
                 f"set_property top {dp.IP_NAME}", "ipx::package_project -root_dir ./ip_repo",
                 "ipx::infer_bus_interfaces xilinx.com:interface:axis_rtl:1.0",
                 "ipx::infer_bus_interface clk xilinx.com:signal:clock_rtl:1.0",
                 "ipx::infer_bus_interface rst_n xilinx.com:signal:reset_rtl:1.0",
                 "ACTIVE_LOW", "-busif s_axis -clock clk", "-busif m_axis -clock clk",
                 "ipx::save_core"]:
        assert want in tcl, want


def test_block_design_tcl(package):
    tcl = (package / "block_design.tcl").read_text()
    assert _balanced(tcl)
    vlnv = f"{dp.VENDOR}:{dp.LIBRARY}:{dp.IP_NAME}:{dp.VERSION}"
    for want in ["xilinx.com:ip:processing_system7:5.5", "CONFIG.PCW_USE_S_AXI_HP0 {1}",
                 "xilinx.com:ip:axi_dma:7.1 axi_dma_0", "CONFIG.c_include_sg {0}",
                 "CONFIG.c_sg_length_width {26}", "CONFIG.c_m_axis_mm2s_tdata_width {32}",
                 "CONFIG.c_s_axis_s2mm_tdata_width {32}", f"-vlnv {vlnv} netfabric_0",
                 "[get_bd_intf_pins axi_dma_0/M_AXIS_MM2S] [get_bd_intf_pins netfabric_0/s_axis]",
                 "[get_bd_intf_pins netfabric_0/m_axis] [get_bd_intf_pins axi_dma_0/S_AXIS_S2MM]",
                 '"/processing_system7_0/S_AXI_HP0"', '"/processing_system7_0/M_AXI_GP0"',
                 "ip_repo_paths ./ip_repo", "validate_bd_design", "make_wrapper"]:
        assert want in tcl, want
    build = (package / "build.tcl").read_text()
    assert _balanced(build)
    assert build.index("source package_ip.tcl") < build.index("source block_design.tcl")
    assert "write_bitstream" in build and "netfabric.bit" in build
    assert "hw_handoff/netfabric_bd.hwh] 0] netfabric.hwh" in build


def test_wrapper_has_tlast_and_32_bit_ports(package):
    v = (package / "rtl" / f"{dp.IP_NAME}.v").read_text()
    assert f"module {dp.IP_NAME} (" in v
    for port in ["input  wire [31:0] s_axis_tdata", "input  wire s_axis_tlast",
                 "output wire [31:0] m_axis_tdata", "output wire m_axis_tlast"]:
        assert port in v
    assert "nf_accel u_accel" in v


def test_build_sh_stops_clearly_without_vivado(package, tmp_path):
    if shutil.which("vivado"):
        pytest.skip("Vivado is installed here")
    proc = subprocess.run(["/bin/sh", str(package / "build.sh")], capture_output=True,
                          text=True, env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2
    assert "vivado" in proc.stderr and "settings64.sh" in proc.stderr
    from netfabric.hw.flow.errors import ToolNotFoundError

    with pytest.raises(ToolNotFoundError, match="Vivado"):
        dp.build_package(package)


def test_hwh_describes_the_block_design(package):
    root = ET.parse(package / "netfabric.hwh").getroot()
    mods = {m.get("INSTANCE"): m for m in root.iter("MODULE")}
    ps = mods["processing_system7_0"]
    assert [r.get("INSTANCE") for r in ps.iter("MEMRANGE")] == ["axi_dma_0"]
    acc = mods["netfabric_0"]
    assert acc.get("MODTYPE") == dp.IP_NAME
    ports = {p.get("NAME"): p for p in acc.iter("PORT")}
    assert ports["clk"].get("SIGIS") == "clk" and ports["rst_n"].get("POLARITY") == "ACTIVE_LOW"
    acc_bus = {b.get("NAME"): b.get("BUSNAME") for b in acc.iter("BUSINTERFACE")}
    dma_bus = {b.get("NAME"): b.get("BUSNAME") for b in mods["axi_dma_0"].iter("BUSINTERFACE")}
    assert acc_bus["s_axis"] == dma_bus["M_AXIS_MM2S"]
    assert acc_bus["m_axis"] == dma_bus["S_AXIS_S2MM"]
    wrapper = (package / "rtl" / f"{dp.IP_NAME}.v").read_text()
    for pm in acc.iter("PORTMAP"):
        assert re.search(rf"\b{pm.get('PHYSICAL')}\b", wrapper)


def _imports(path: Path) -> list[tuple[str, ast.AST]]:
    tree = ast.parse(path.read_text())
    parents = {c: p for p in ast.walk(tree) for c in ast.iter_child_nodes(p)}
    found = []
    for node in ast.walk(tree):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
        found += [(n.split(".")[0], parents.get(node)) for n in names]
    return found


def test_board_side_imports_only_numpy_pynq_and_stdlib(package):
    allowed = set(sys.stdlib_module_names) | {"numpy", "pynq", "pynq_stream", "__future__"}
    for name in ["run_on_board.py", "pynq_stream.py"]:
        for mod, parent in _imports(package / name):
            if mod == "cocotbpynq":  # only behind the co-simulation switch
                assert isinstance(parent, ast.If) and "COSIM" in ast.unparse(parent.test)
                continue
            assert mod in allowed, f"{name} imports {mod}"


@pytest.mark.parametrize("elems,bits,signed", [(16, 8, False), (3, 5, False), (10, 7, True),
                                               (1, 4, False), (5, 16, True), (2, 32, True)])
def test_stream_packing_matches_the_simulator_and_round_trips(elems, bits, signed):
    from netfabric.sim import golden

    width = -(-elems * bits // 8) * 8
    port = {"elems_per_beat": elems, "bits": bits, "signed": signed, "words_per_beat": -(-width // 32)}
    rng = np.random.default_rng(bits)
    lo, hi = golden.int_range(bits, signed)
    frames = rng.integers(lo, hi + 1, size=(6, elems * 3))
    words = pynq_stream.pack_words(frames, port)
    assert words.dtype == np.uint32 and len(words) == 18 * port["words_per_beat"]
    beats = golden.pack_beats(frames.reshape(-1), elems, bits)
    wpb = port["words_per_beat"]
    assert [sum(int(w) << (32 * i) for i, w in enumerate(words[k * wpb:(k + 1) * wpb]))
            for k in range(len(beats))] == beats
    np.testing.assert_array_equal(pynq_stream.unpack_words(words, port), frames.reshape(-1))


def test_prepare_input_checks_shape_and_range(package):
    man = json.loads((package / "manifest.json").read_text())
    x = np.load(package / "dataset_x.npy")
    assert pynq_stream.prepare_input(x, man).shape == (len(x), 784)
    with pytest.raises(ValueError, match="shape"):
        pynq_stream.prepare_input(x[:, :, :27], man)
    with pytest.raises(ValueError, match="lie in"):
        pynq_stream.prepare_input(x.astype(np.int32) + 300, man)


def test_pynq_backend_says_why_it_cannot_run(package, mlp_graph, tmp_path, monkeypatch):
    from netfabric.host.pynq_backend import PynqBackend

    with pytest.raises(BackendUnavailable, match="netfabric deploy"):
        PynqBackend(mlp_graph)
    with pytest.raises(BackendUnavailable, match="build.sh"):
        PynqBackend(mlp_graph, package=package)  # not built: no .bit
    built = tmp_path / "built"
    shutil.copytree(package, built)
    (built / "netfabric.bit").write_bytes(b"\0")
    monkeypatch.setitem(sys.modules, "pynq", None)  # not importable
    with pytest.raises(BackendUnavailable, match="`pynq` package"):
        PynqBackend(mlp_graph, package=built)

    def no_device(_bitfile):
        raise RuntimeError("No Devices Found")

    monkeypatch.setitem(sys.modules, "pynq", types.SimpleNamespace(Overlay=no_device,
                                                                   allocate=np.empty))
    with pytest.raises(BackendUnavailable, match="No Devices Found"):
        PynqBackend(mlp_graph, package=built)
    assert PynqBackend.name == "pynq"


def test_cli_deploy(mlp_graph, tmp_path):
    from click.testing import CliRunner

    from netfabric.cli import main

    out = tmp_path / "pkg"
    res = CliRunner().invoke(main, ["deploy", "--graph", str(mlp_graph), "--count", "5",
                                    "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "build.sh" in res.output and len(np.load(out / "dataset_y.npy")) == 5
    res = CliRunner().invoke(main, ["deploy", "--board", "ulx3s-85f", "--graph", str(mlp_graph),
                                    "--out", str(tmp_path / "no")])
    assert res.exit_code == 2 and "not a PYNQ board" in res.output
