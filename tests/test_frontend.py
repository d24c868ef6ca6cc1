import json

import pytest
import torch
from torch import nn

from netfabric.hls.errors import CompileError
from netfabric.hls.frontend import CompileConfig, compile_qonnx
from netfabric.host.hwgraph import load_hwgraph
from netfabric.models.export import export_qonnx
from netfabric.models.zoo import ModelConfig, PixelScale, build_model


def _ops(graph_path):
    return [n.op_type for n in load_hwgraph(graph_path).nodes]


def test_mlp_compiles_to_mvaus_and_label_select(mlp_graph):
    assert _ops(mlp_graph) == ["MVAU"] * 4 + ["LabelSelect"]
    g = load_hwgraph(mlp_graph)
    assert g.input_shape == [1, 784] and g.dtypes[g.input_name].name == "UINT8"
    assert g.host_steps("host_pre") == [{"op": "Reshape", "shape": [1, 784]}]
    est = json.loads((mlp_graph.parent / "estimates.json").read_text())
    # folded for 100k frames/s at 100 MHz: every layer within 1000 cycles
    assert 0 < est["bottleneck_cycles"] <= 1000
    assert {layer["name"] for layer in est["layers"]} == {n.name for n in g.nodes}


def test_logits_graph_keeps_integer_output_and_scale(mlp_logits_graph):
    g = load_hwgraph(mlp_logits_graph)
    assert [n.op_type for n in g.nodes] == ["MVAU"] * 4
    assert g.nodes[-1].attr("noActivation") == 1
    assert g.output_scale and g.output_scale > 0


def test_explicit_folding_config_is_applied(mlp_qonnx, mlp_graph, compile_helper, tmp_path):
    fold = json.loads((mlp_graph.parent / "folding.json").read_text())
    first = next(k for k in fold if k.startswith("MVAU"))
    fold[first] = {"PE": 4, "SIMD": 8}
    cfg = tmp_path / "fold.json"
    cfg.write_text(json.dumps(fold))
    graph = compile_helper(mlp_qonnx, tmp_path / "hw", folding_json=cfg)
    node = next(n for n in load_hwgraph(graph).nodes if n.name == first)
    assert (node.attr("PE"), node.attr("SIMD")) == (4, 8)


def test_bad_folding_json_is_reported(mlp_qonnx, tmp_path):
    bad = tmp_path / "fold.json"
    bad.write_text("{not json")
    with pytest.raises(CompileError, match="not valid JSON"):
        compile_qonnx(mlp_qonnx, CompileConfig(folding_json=bad))


def test_missing_and_corrupt_model_files(tmp_path):
    with pytest.raises(CompileError, match="does not exist"):
        compile_qonnx(tmp_path / "nope.onnx", CompileConfig())
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00\x01garbage")
    with pytest.raises(CompileError, match="not a readable ONNX"):
        compile_qonnx(junk, CompileConfig())


def test_too_many_bits_names_the_node(tmp_path):
    from brevitas.nn import QuantLinear

    model = nn.Sequential(
        PixelScale(), nn.Flatten(), QuantLinear(64, 10, bias=False, weight_bit_width=12)
    )
    path = export_qonnx(model, (1, 8, 8), tmp_path / "m.onnx")
    with pytest.raises(CompileError, match=r"Quant.*12 bits"):
        compile_qonnx(path, CompileConfig())


def test_unsupported_layer_names_the_node(tmp_path):
    """A float nonlinearity between layers has no hardware layer: the error names it."""
    from brevitas.nn import QuantLinear

    model = nn.Sequential(
        PixelScale(),
        nn.Flatten(),
        QuantLinear(64, 16, bias=False),
        nn.Sigmoid(),
        QuantLinear(16, 10, bias=False),
    )
    path = export_qonnx(model.eval(), (1, 8, 8), tmp_path / "m.onnx")
    with pytest.raises(CompileError, match=r"node .* could not be mapped"):
        compile_qonnx(path, CompileConfig())


def test_cnn_compiles_to_swg_mvau_and_pool(tmp_path):
    cfg = ModelConfig(arch="cnn", conv_channels=[4, 4, 8, 8], fc_hidden=16)
    model = build_model(cfg).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics
        model(torch.rand(16, 1, 28, 28) * 255)
    path = export_qonnx(model, (1, 28, 28), tmp_path / "cnn.onnx")
    result = compile_qonnx(path, CompileConfig())
    ops = [n.op_type.removesuffix("_hls").removesuffix("_rtl") for n in result.model.graph.node]
    assert ops.count("ConvolutionInputGenerator") == 6  # 4 convolutions + 2 pooling windows
    assert ops.count("Pool") == 2 and ops.count("MVAU") == 6 and ops[-1] == "LabelSelect"


def test_registry_cost_model_matches_finn_estimate(mlp_graph):
    """One cost model (the op registry's), checked against FINN's own estimate layer by layer
    where FINN has one: MVAU and LabelSelect cycles are the same formula in both."""
    est = json.loads((mlp_graph.parent / "estimates.json").read_text())
    compared = [layer for layer in est["layers"] if "finn_cycles" in layer]
    assert {layer["op_type"] for layer in compared} >= {"MVAU", "LabelSelect"}
    for layer in compared:
        assert layer["cycles"] == layer["finn_cycles"], layer["name"]
    assert est["bottleneck_cycles"] == est["finn_bottleneck_cycles"]


def test_compile_refuses_ops_without_a_cpu_lowering():
    """FINN layers netfabric cannot run (StreamingMaxPool, FMPadding) stop the compile with the
    node named, instead of compiling and failing at run time."""
    from qonnx.core.modelwrapper import ModelWrapper

    from netfabric.errors import UnsupportedOpError
    from netfabric.hls.frontend import check_supported
    from netfabric.ops.graphbuild import HWGraphBuilder

    for op_type in ("StreamingMaxPool", "FMPadding"):
        b = HWGraphBuilder()
        b.input("x", [1, 4, 4, 2], "UINT4")
        b.node(op_type, ["x"], [("y", [1, 2, 2, 2], "UINT4")], name=f"{op_type}_0")
        b.output("y")
        with pytest.raises(UnsupportedOpError, match=f"{op_type}_0"):
            check_supported(ModelWrapper(b.build()))
