"""The stitcher's project folder, without simulating it (see test_accelerator_sim.py for that).

``residual_block_graph`` and ``uint8_threshold_graph`` build small hand-made HW-layer graphs
that test_accelerator_sim.py simulates too.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from netfabric.errors import StitchError, UnsupportedOpError
from netfabric.host.hwgraph import load_hwgraph
from netfabric.hw.stitch import RTL_DIR, load_manifest, plan_stages, rtl_dependencies, stitch
from netfabric.ops.graphbuild import HWGraphBuilder
from netfabric.sim import golden

# ---------------------------------------------------------------------------------------------
# hand-built graphs


def residual_block_graph(path: Path, channels: int = 32, tokens: int = 7, seed: int = 0,
                         simd: int = 4, pe: int = 4, fork_pe: int = 2, add_pe: int = 2) -> Path:
    """x -> MVAU -> DuplicateStreams -> (MVAU) + (skip) -> ElementwiseAdd -> Thresholding.

    ``tokens`` vectors of ``channels`` UINT4 per frame; both MVAUs C x C with INT4 weights and
    UINT4 activations, the add UINT4 + UINT4 -> UINT5, requantized back to UINT4."""
    rng = np.random.default_rng(seed)
    c, vec, shape = channels, [1, tokens], [1, tokens, channels]
    b = HWGraphBuilder("residual_block")
    x = b.input("x", shape, "UINT4")

    def mvau(name: str, inp: str, out: str) -> str:
        w = rng.integers(-8, 8, size=(c, c))  # FINN layout (MW, MH)
        acc = rng.integers(0, 16, size=(256, c)) @ w
        t = np.sort(rng.integers(int(acc.min()), int(acc.max()) + 1, size=(c, 15)), axis=1)
        b.node("MVAU", [inp, b.param(f"{name}_w", w, "INT4"), b.param(f"{name}_t", t)],
               [(out, shape, "UINT4")], name=name, MW=c, MH=c, SIMD=simd, PE=pe,
               inputDataType="UINT4", weightDataType="INT4", outputDataType="UINT4",
               accDataType="INT16", ActVal=0, noActivation=0, binaryXnorMode=0, numInputVectors=vec)
        return out

    a = mvau("MVAU_0", x, "a")
    b.node("DuplicateStreams", [a], [("a0", shape, "UINT4"), ("a1", shape, "UINT4")], name="fork",
           NumChannels=c, PE=fork_pe, NumOutputStreams=2, inputDataType="UINT4", numInputVectors=vec)
    r = mvau("MVAU_1", "a0", "r")
    b.node("ElementwiseAdd", [r, "a1"], [("s", shape, "UINT5")], name="add", lhs_dtype="UINT4",
           rhs_dtype="UINT4", out_dtype="UINT5", lhs_shape=shape, rhs_shape=shape, out_shape=shape,
           lhs_style="input", rhs_style="input", PE=add_pe)
    t = np.sort(rng.integers(0, 32, size=(c, 15)), axis=1)
    b.node("Thresholding", ["s", b.param("requant_t", t)], [("y", shape, "UINT4")], name="requant",
           NumChannels=c, PE=add_pe, numSteps=15, inputDataType="UINT5", weightDataType="UINT5",
           outputDataType="UINT4", ActVal=0, numInputVectors=vec)
    b.output("y")
    return b.save(path)


def residual_bottleneck_cycles(path: Path) -> int:
    """The expected cycles per frame, from the graph's attributes alone (no stitcher, no
    registry): the slowest layer. An MVAU does one (SIMD x PE) block per cycle:
    vectors * MW/SIMD * MH/PE; the streaming layers one beat per cycle: elements / PE."""
    g = load_hwgraph(path)
    cycles = []
    for n in g.nodes:
        vectors = int(np.prod(g.shapes[n.outputs[0]][:-1]))
        if n.op_type == "MVAU":
            cycles.append(vectors * n.attr("MW") // n.attr("SIMD") * n.attr("MH") // n.attr("PE"))
        else:
            cycles.append(vectors * g.shapes[n.outputs[0]][-1] // n.attr("PE"))
    return max(cycles)


def uint8_threshold_graph(path: Path, channels: int = 8, tokens: int = 4, pe: int = 2) -> Path:
    """UINT8 -> Thresholding -> UINT4 with thresholds at the top of the input range: 255,
    256 (reached by no input) and 300 (clipped to 256)."""
    rng = np.random.default_rng(5)
    t = np.sort(rng.integers(0, 257, size=(channels, 15)), axis=1)
    t[:, -3:] = [255, 256, 300]
    t[0, :] = 256  # a channel that never fires
    t[1, :] = 0  # one that always fires fully
    shape = [1, tokens, channels]
    b = HWGraphBuilder("uint8_thresholds")
    b.input("x", shape, "UINT8")
    b.node("Thresholding", ["x", b.param("t", t)], [("y", shape, "UINT4")], name="Thresholding_0",
           NumChannels=channels, PE=pe, numSteps=15, inputDataType="UINT8", weightDataType="UINT9",
           outputDataType="UINT4", ActVal=0, numInputVectors=[1, tokens])
    b.output("y")
    return b.save(path)


def bnn_full_agreement_graph(path: Path, out_type: str = "UINT4") -> Path:
    """Two binary XNOR-popcount MVAUs whose accDataType is FINN's (sized for the +-1 dot
    product, INT7 for 64 bits: too narrow for the popcount 0..64): x = column 0 of the first
    weights agrees on all 64 bits with channels 0 and 7 (popcount 64; thresholds 64 and 65,
    65 never reached), and the second layer's channel 0 then counts 8 of 8 (noActivation,
    ``out_type`` out; its accDataType INT4 is FINN's again).
    Inputs ``bnn_full_agreement_inputs``."""
    rng = np.random.default_rng(11)
    w1 = rng.integers(0, 2, size=(64, 8))
    w1[:, 7] = w1[:, 0]
    t1 = np.array([[64], [0], [0], [0], [0], [0], [0], [65]])
    w2 = rng.integers(0, 2, size=(8, 4))
    w2[:, 0] = [1, 1, 1, 1, 1, 1, 1, 0]
    b = HWGraphBuilder("bnn_full_agreement")
    b.input("x", [1, 64], "BINARY")
    xnor = dict(inputDataType="BINARY", weightDataType="BINARY", binaryXnorMode=1, ActVal=0,
                numInputVectors=[1])
    b.node("MVAU", ["x", b.param("w1", w1, "BINARY"), b.param("t1", t1)],
           [("h", [1, 8], "BINARY")], name="MVAU_0", MW=64, MH=8, SIMD=8, PE=2,
           accDataType="INT7", outputDataType="BINARY", noActivation=0, **xnor)
    b.node("MVAU", ["h", b.param("w2", w2, "BINARY")], [("y", [1, 4], out_type)],
           name="MVAU_1", MW=8, MH=4, SIMD=2, PE=2, accDataType="INT4", outputDataType=out_type,
           noActivation=1, **xnor)
    b.output("y")
    return b.save(path)


def bnn_full_agreement_inputs(path: Path) -> np.ndarray:
    """Rows: full agreement with channel 0 (output channel 0 = 8), its complement (only
    channels 1..6 on: output channel 0 = 7), then random bits."""
    w1 = load_hwgraph(path).params["w1"].astype(np.int64)
    rand = np.random.default_rng(12).integers(0, 2, size=(4, 64))
    return np.concatenate([w1[None, :, 0], 1 - w1[None, :, 0], rand])


def deep_weight_graph(path: Path, mw: int = 2048, mh: int = 12) -> Path:
    """One MVAU (PE = SIMD = 1, accumulator out, 4-bit weights) whose weight ROM holds
    mw * mh words: at the defaults 24576, six 4096-word banks (4096 x 4 block RAMs)."""
    rng = np.random.default_rng(8)
    b = HWGraphBuilder("deep_weights")
    b.input("x", [1, mw], "UINT4")
    b.node("MVAU", ["x", b.param("w", rng.integers(-8, 8, size=(mw, mh)), "INT4")],
           [("y", [1, mh], "INT20")], name="MVAU_0", MW=mw, MH=mh, SIMD=1, PE=1,
           inputDataType="UINT4", weightDataType="INT4", accDataType="INT20",
           outputDataType="INT20", noActivation=1, ActVal=0, numInputVectors=[1])
    b.output("y")
    return b.save(path)


def const_add_graph(path: Path, channels: int = 8, tokens: int = 7, pe: int = 2) -> Path:
    """x (UINT8 stream) + a constant INT6 table [1, tokens, channels] (a position embedding)."""
    rng = np.random.default_rng(9)
    shape = [1, tokens, channels]
    b = HWGraphBuilder("const_add")
    b.input("x", shape, "UINT8")
    b.param("pos", rng.integers(-32, 32, size=shape), "INT6")
    b.node("ElementwiseAdd", ["x", "pos"], [("y", shape, "INT10")], name="pos_add",
           lhs_dtype="UINT8", rhs_dtype="INT6", out_dtype="INT10", lhs_shape=shape, rhs_shape=shape,
           out_shape=shape, lhs_style="input", rhs_style="const", PE=pe)
    b.output("y")
    return b.save(path)


def _instances(top_text: str) -> dict[str, str]:
    """instance name -> module, from the generated top."""
    return {m.group(2): m.group(1)
            for m in re.finditer(r"^\s{4}(\w+) #\(\n(?:.*\n)*?\s{4}\) (u_\w+) \(", top_text, re.M)}


# ---------------------------------------------------------------------------------------------
# the shipped MLP


def test_every_module_takes_reset_from_a_register_of_its_own(mlp_graph, tmp_path):
    """A reset tree: one kept register per instance (no reset net spans the chip; the
    transformer's bitstream had its reset routed 3.5 ns across it into a ROM address)."""
    top = (stitch(mlp_graph, tmp_path / "rtl").folder / "nf_accel.v").read_text()
    inst = _instances(top)
    assert len(inst) > 5
    for name in inst:
        assert f"(* keep *) always @(posedge clk) {name}_rst_n <= rst_n;" in top, name
        assert re.search(rf"\) {name} \(\n\s*\.clk\(clk\), \.rst_n\({name}_rst_n\)", top), name
    assert not re.search(r"\.rst_n\(rst_n\)", top)


def test_mlp_project_folder(mlp_graph, tmp_path):
    project = stitch(mlp_graph, tmp_path / "rtl")
    man = load_manifest(project.folder)
    assert man == project.manifest
    names = {p.name for p in project.folder.iterdir()}
    assert set(man["sources"]) <= names and set(man["mem_files"]) <= names
    assert not [n for n in tmp_path.iterdir() if n.name.startswith(".")]  # no temp leftovers
    # the top instantiates one module per layer of the graph and one FIFO per inner edge
    top = (project.folder / f"{man['top']}.v").read_text()
    inst = _instances(top)
    g = load_hwgraph(mlp_graph)
    layers = [n for n in g.nodes if n.op_type not in ("StreamingFIFO", "StreamingDataWidthConverter")]
    covered = [node for layer in man["layers"] for node in layer["nodes"]]
    assert sorted(covered) == sorted(n.name for n in layers)
    assert {f"u_{layer['name']}": layer["module"] for layer in man["layers"]} == inst
    assert list(inst.values()).count("mvau") == 4 and "label_select" in inst.values()
    inner = [e for e in man["edges"] if e["from"] != "<input>" and e["to"] != "<output>"]
    assert len(inner) == len(layers) - 1 and all(f"u_{e['fifo']}" in inst for e in inner)
    assert man["input"]["beats_per_frame"] * man["input"]["elems_per_beat"] == 784


def test_ideal_cycles_match_finn_estimates(mlp_graph, tmp_path):
    """The stitcher's per-layer cycles equal FINN's own get_exp_cycles() of the same node."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.custom_op.registry import getCustomOp

    from netfabric.hls.finn_env import ensure_finn

    ensure_finn()
    man = stitch(mlp_graph, tmp_path / "rtl").manifest
    model = ModelWrapper(str(mlp_graph))
    finn = {n.name: int(getCustomOp(n).get_exp_cycles()) for n in model.graph.node
            if n.op_type.startswith(("MVAU", "Thresholding"))}
    ours = {node: layer["ideal_cycles"] for layer in man["layers"] for node in layer["nodes"]
            if node in finn}
    assert finn and ours == finn
    assert man["ideal_cycles_per_frame"] >= max(finn.values())


def test_weight_memory_round_trips(mlp_graph, tmp_path):
    """The first layer's weight file decodes back to FINN's weight matrix."""
    project = stitch(mlp_graph, tmp_path / "rtl")
    g = load_hwgraph(mlp_graph)
    node = g.nodes[0]
    pe, simd = node.attr("PE"), node.attr("SIMD")
    w = g.params[node.inputs[1]].astype(np.int64).T  # [MH, MW]
    words = [int(line, 16) for line in (project.folder / f"{node.name.lower()}_w.hex").read_text().split()]
    assert words == golden.mvau_weight_words(w, pe, simd, 8)
    decoded = golden.unpack_beats(words, pe * simd, 8, signed=True).reshape(-1, pe, simd)
    nf, sf = w.shape[0] // pe, w.shape[1] // simd
    rebuilt = decoded.reshape(nf, sf, pe, simd).transpose(0, 2, 1, 3).reshape(w.shape)
    assert np.array_equal(rebuilt, w)


def test_deep_weight_rom_is_written_in_banks(tmp_path):
    """A weight ROM deeper than one block-RAM aspect for its width: one file per bank,
    WEIGHT_FILE their prefix, WBANK_AW on the instance; the bank files end to end are the
    one-bank memory."""
    graph = deep_weight_graph(tmp_path / "d.onnx")
    project = stitch(graph, tmp_path / "rtl")
    g = load_hwgraph(graph)
    w = g.params["w"].astype(np.int64).T
    names = [p.name for p in golden.bank_file_names("mvau_0_w", 6)]
    assert [f for f in load_manifest(project.folder)["mem_files"] if "_w" in f] == names
    words = [int(line, 16) for n in names for line in (project.folder / n).read_text().split()]
    assert words == golden.mvau_weight_words(w, 1, 1, 4)
    assert len((project.folder / names[0]).read_text().split()) == 4096
    top = (project.folder / "nf_accel.v").read_text()
    assert re.search(r"\.WBANK_AW\(12\)", top) and '"mvau_0_w"' in top


def test_every_instantiated_module_is_in_the_folder(mlp_graph, tmp_path):
    """Library files come from a scan of instantiations (mvau.v's shared output stage, ...):
    every module any copied file instantiates is defined by a copied file."""
    project = stitch(mlp_graph, tmp_path / "rtl")
    files = [project.folder / s for s in project.manifest["sources"]]
    defined = {m for f in files for m in re.findall(r"^\s*module\s+(\w+)", f.read_text(), re.M)}
    library = {p.stem for p in RTL_DIR.glob("*.v")}
    used = set()
    for f in files:
        text = re.sub(r"//[^\n]*|/\*.*?\*/", " ", f.read_text(), flags=re.S)
        used |= {m for m in re.findall(r"\b(\w+)\s*#\s*\(", text) if m in library}
    assert used and used <= defined
    assert {"thresh_search.v", "fifo.v"} <= set(rtl_dependencies(["mvau.v"]))


def test_unsupported_node_is_named(mlp_graph, tmp_path):
    import onnx

    model = onnx.load(str(mlp_graph))
    model.graph.node[1].op_type = "VectorVectorActivation_hls"
    name = model.graph.node[1].name
    bad = tmp_path / "bad.onnx"
    onnx.save(model, str(bad))
    with pytest.raises(UnsupportedOpError, match=rf"node {name} \(VectorVectorActivation\)") as exc:
        plan_stages(load_hwgraph(bad))
    assert "\n" not in str(exc.value)


def test_missing_manifest_is_reported(tmp_path):
    with pytest.raises(StitchError, match="not a stitched project"):
        load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{oops")
    with pytest.raises(StitchError, match="corrupt"):
        load_manifest(tmp_path)


def test_manifest_matches_the_flow_schema(mlp_graph, tmp_path):
    from netfabric.hw.flow.manifest import load_manifest as flow_manifest

    project = stitch(mlp_graph, tmp_path / "rtl")
    parsed = flow_manifest(project.folder)
    man = project.manifest
    assert parsed.top == "nf_accel"
    assert parsed.in_width_bits == golden.axis_width(man["input"]["elems_per_beat"] * man["input"]["bits"])
    assert parsed.out_width_bits == golden.axis_width(man["output"]["elems_per_beat"] * man["output"]["bits"])


# ---------------------------------------------------------------------------------------------
# a residual block: fork, join, FIFO analysis


def test_residual_block_topology_and_fifo_analysis(tmp_path):
    graph = residual_block_graph(tmp_path / "res.onnx")
    project = stitch(graph, tmp_path / "rtl")
    man = project.manifest
    inst = _instances((project.folder / "nf_accel.v").read_text())
    assert {m for m in inst.values()} == {"mvau", "dup_streams", "eltwise_add", "thresholding",
                                          "fifo", "dwc"}
    assert {"dup_streams.v", "eltwise_add.v", "fifo.v"} <= set(man["sources"])
    edges = {e["tensor"]: e for e in man["edges"]}
    assert (edges["a0"]["from"], edges["a0"]["to"]) == ("fork", "mvau_1")
    assert (edges["a1"]["from"], edges["a1"]["to"]) == ("fork", "add")
    # Skip path (fork -> add): MVAU_1 needs its whole 32-element input vector before its first
    # output, so the skip FIFO holds 31 elements more than the branch, + 1 join beat (2), +
    # the branch's extra pipeline latency (mvau 31 cycles + 1 FIFO) at the fork's steady rate
    # 224 elements / 448 cycles = 16 elements: 49 elements = 25 beats of 2 -> 32.
    assert edges["a1"]["depth"] == 32 and "mvau_1" in edges["a1"]["why"]
    # the branch MVAU parks a vector (2 x 32 elements in 4-element beats = 16)
    assert edges["a0"]["depth"] == 16 and "parks" in edges["a0"]["why"]
    assert man["ideal_cycles_per_frame"] == residual_bottleneck_cycles(graph) == 7 * 8 * 8
    # a wider vector needs a deeper skip FIFO: 64 channels, 1 element per fork beat
    wide = residual_block_graph(tmp_path / "wide.onnx", channels=64, fork_pe=1, add_pe=1)
    e = {e["tensor"]: e for e in stitch(wide, tmp_path / "wide").manifest["edges"]}["a1"]
    assert e["depth"] >= 64 and e["depth"] & (e["depth"] - 1) == 0


def test_fifo_depth_override_and_unknown_edge(tmp_path):
    graph = residual_block_graph(tmp_path / "res.onnx")
    man = stitch(graph, tmp_path / "rtl", fifo_depths={"a1": 8}).manifest
    assert {e["tensor"]: e["depth"] for e in man["edges"] if "depth" in e}["a1"] == 8
    with pytest.raises(StitchError, match="names no FIFO edge: nope"):
        stitch(graph, tmp_path / "rtl", fifo_depths={"nope": 8})


def test_stream_with_two_consumers_needs_a_fork(tmp_path):
    b = HWGraphBuilder()
    shape = [1, 4, 8]
    b.input("x", shape, "UINT4")
    t = np.sort(np.random.default_rng(0).integers(0, 16, size=(8, 3)), axis=1)
    for i in range(2):
        b.node("Thresholding", ["x", b.param(f"t{i}", t)], [(f"y{i}", shape, "UINT2")], name=f"th{i}",
               NumChannels=8, PE=2, inputDataType="UINT4", outputDataType="UINT2", ActVal=0,
               numInputVectors=[1, 4])
    b.node("ElementwiseAdd", ["y0", "y1"], [("z", shape, "UINT3")], name="add", lhs_dtype="UINT2",
           rhs_dtype="UINT2", out_dtype="UINT3", lhs_shape=shape, rhs_shape=shape, out_shape=shape, PE=2)
    b.output("z")
    with pytest.raises(StitchError, match="tensor x feeds both th0 and th1.*DuplicateStreams"):
        stitch(b.save(tmp_path / "g.onnx"), tmp_path / "rtl")
    assert not (tmp_path / "rtl").exists()  # nothing half-written


def test_uint8_thresholds_get_a_wide_enough_comparison(tmp_path):
    """UINT8 inputs: thresholds clipped at 256 and the padding need a 10-bit signed word."""
    project = stitch(uint8_threshold_graph(tmp_path / "t.onnx"), tmp_path / "rtl")
    params = project.manifest["layers"][0]["params"]
    assert params["TBITS"] == 10
    words = (project.folder / "thresholding_0_t_s0.hex").read_text().split()
    assert int(words[0], 16) & 0x3FF == 256  # channel 0: the unreachable threshold, as is


def test_constant_add_operand_becomes_a_rom(tmp_path):
    graph = const_add_graph(tmp_path / "c.onnx")
    project = stitch(graph, tmp_path / "rtl")
    layer = project.manifest["layers"][0]
    assert layer["module"] == "eltwise_add" and layer["params"]["CONST_RHS"] == 1
    pos = load_hwgraph(graph).params["pos"].astype(np.int64)
    words = [int(w, 16) for w in (project.folder / "pos_add_rhs.hex").read_text().split()]
    assert layer["params"]["RHS_WORDS"] == len(words) == pos.size // 2
    assert np.array_equal(golden.unpack_beats(words, 2, 6, True), pos.reshape(-1))
    assert json.loads((project.folder / "manifest.json").read_text())["input"]["bits"] == 8


def test_xnor_mvau_sizes_the_popcount_from_mw(tmp_path):
    """Binary MVAUs become mvau.v with XNOR=1 and 1-bit weight words; the accumulator is sized
    for the popcount 0..MW, not FINN's narrower accDataType (64 needs 7 bits unsigned); a
    popcount output leaves at its declared type, which must hold MW."""
    project = stitch(bnn_full_agreement_graph(tmp_path / "b.onnx"), tmp_path / "rtl")
    l0, l1 = (next(lay for lay in project.manifest["layers"] if lay["module"] == "mvau" and
                   lay["name"] == name) for name in ("mvau_0", "mvau_1"))
    assert l0["params"]["XNOR"] == 1 and l0["params"]["WBITS"] == 1
    assert l0["params"]["ACCBITS"] == 9  # thresholds 0..65: UINT7 + compare headroom
    assert l1["params"]["ACCBITS"] == 4 and l1["params"]["USE_ACT"] == 0  # UINT4: 0..8
    with pytest.raises(StitchError, match=r"MVAU_1: the XNOR popcount reaches MW = 8, which its "
                                          r"outputDataType INT4 cannot hold \(needs UINT4 or INT5\)"):
        stitch(bnn_full_agreement_graph(tmp_path / "n.onnx", "INT4"), tmp_path / "rtl_n")
