"""The stitcher's project folder, without simulating it (see test_accelerator_sim.py for that)."""

import json

import numpy as np
import pytest

from netfabric.host.hwgraph import load_hwgraph
from netfabric.hw.errors import StitchError
from netfabric.hw.stitch import fifo_depth, load_manifest, plan_stages, stitch
from netfabric.sim import golden


def test_mlp_project_folder(mlp_graph, tmp_path):
    project = stitch(mlp_graph, tmp_path / "rtl")
    man = load_manifest(project.folder)
    assert man == project.manifest
    names = {p.name for p in project.folder.iterdir()}
    assert set(man["sources"]) <= names and set(man["mem_files"]) <= names
    assert not [n for n in names if n.startswith(".")]  # no temp leftovers
    modules = [layer["module"] for layer in man["layers"]]
    assert modules.count("mvau") == 4 and modules[-1] == "label_select"
    # a FIFO between every pair of layers; a width converter where the beat widths differ
    for a, b in zip(man["layers"], man["layers"][1:], strict=False):
        if a["module"] not in ("fifo", "dwc") and b["module"] not in ("fifo", "dwc"):
            pytest.fail(f"{a['name']} -> {b['name']} without a FIFO")
    assert man["input"]["beats_per_frame"] * man["input"]["elems_per_beat"] == 784
    assert man["ideal_cycles_per_frame"] == max(layer["ideal_cycles"] for layer in man["layers"])


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


def test_fifo_depth_parks_one_mvau_vector():
    from netfabric.hw.stitch import Stage

    mvau = Stage("m", "mvau", {"MW": 784, "SIMD": 8}, 8, 8, 1, 8, False, 0, [])
    assert fifo_depth(mvau) == 256  # 2 * 98 beats, rounded up to a power of two
    other = Stage("s", "swg", {}, 1, 8, 1, 8, False, 0, [])
    assert fifo_depth(other) == 16


def test_unsupported_node_is_named(mlp_graph, tmp_path):
    import onnx

    model = onnx.load(str(mlp_graph))
    model.graph.node[1].op_type = "VectorVectorActivation_hls"
    bad = tmp_path / "bad.onnx"
    onnx.save(model, str(bad))
    with pytest.raises(StitchError, match=r"MVAU_hls_1 \(VectorVectorActivation\) has no RTL module"):
        plan_stages(load_hwgraph(bad))


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
    assert parsed.top == "nf_accel"
    assert json.loads((project.folder / "manifest.json").read_text())["in_width_bits"] == 128
