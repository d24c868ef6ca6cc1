"""The back half every front end shares: specialize, fold, check, estimate, save.

Both front ends (QONNX through FINN's streamliner in ``frontend.py``; the transformer built
from its integers in ``transformer.py``) emit a generic HW-layer graph; from there the same
named steps, each ``fn(model, cfg) -> model`` (FINN's builder style), run on it. The cost model
is the op registry's; FINN's own estimate is recorded beside it wherever FINN has one.
"""

from __future__ import annotations

import json
import logging
from math import gcd
from pathlib import Path

from netfabric.errors import CompileError
from netfabric.ops.graphbuild import FINN_DOMAIN, NETFABRIC_DOMAIN

HW_GRAPH = "hw_graph.onnx"


def _hw_view(model):
    from netfabric.host.hwgraph import hwgraph_from_proto

    return hwgraph_from_proto(model.model)


def step_specialize(model, cfg):
    """Types and shapes, thresholds rounded to integers, FINN's HLS/RTL variant per node.
    SpecializeLayers renames every node and, with foreign-domain nodes in between, may reorder
    them: sort again and keep each node's name (keyed by its first output)."""
    from finn.transformation.fpgadataflow.specialize_layers import SpecializeLayers
    from finn.transformation.streamline.round_thresholds import RoundAndClipThresholds
    from qonnx.transformation.general import SortGraph
    from qonnx.transformation.infer_datatypes import InferDataTypes
    from qonnx.transformation.infer_shapes import InferShapes

    names = {n.output[0]: n.name for n in model.graph.node}
    model = model.transform(InferShapes()).transform(InferDataTypes())
    model = model.transform(RoundAndClipThresholds())
    model = model.transform(SpecializeLayers(cfg.fpga_part)).transform(SortGraph())
    _restore_names(model, names)
    return model


def step_fold(model, cfg):
    """PE/SIMD from an explicit FINN folding config; for a board (``cfg.board``), the fastest
    folding whose predicted resources fit it (``boardfold.py``); or for a throughput target:
    FINN's SetFolding for FINN's layers, the registry's cost model for netfabric's. Then
    FINN's accumulator minimization. What bounded each layer is recorded for the summary."""
    from finn.transformation.fpgadataflow.minimize_accumulator_width import (
        MinimizeAccumulatorWidth,
    )
    from finn.transformation.general import ApplyConfig

    target, search = cfg.target_cycles(), None
    if cfg.folding_json:
        path = Path(cfg.folding_json)
        if not path.is_file():
            raise CompileError(f"folding config {path} does not exist")
        try:
            json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise CompileError(f"folding config {path} is not valid JSON: {exc}") from exc
        model = model.transform(ApplyConfig(str(path)))
        model = model.transform(MinimizeAccumulatorWidth())
        _widen_xnor_popcounts(model)
        target = 0
    elif getattr(cfg, "board", None):
        from .boardfold import fold_for_board

        model, search = fold_for_board(model, cfg, log=logging.getLogger("netfabric.fold").info)
        target = search["target_cycles"]
    elif cfg.target_fps:
        model = fold_for_target(model, cfg, target)
    else:
        model = model.transform(MinimizeAccumulatorWidth())
        _widen_xnor_popcounts(model)
    model.set_metadata_prop(FOLD_RECORD, json.dumps(
        {"target_cycles": target, "search": search,
         "bounds": layer_bounds(model, cfg, target, search)}))
    return model


FOLD_RECORD = "netfabric_folding"


def fold_for_target(model, cfg, target_cycles: int):
    """FINN's SetFolding for ``target_cycles`` (its per-node warnings to the log at debug
    level), the registry's cost model for netfabric's nodes, accumulator minimization."""
    from finn.transformation.fpgadataflow.minimize_accumulator_width import (
        MinimizeAccumulatorWidth,
    )
    from finn.transformation.fpgadataflow.set_folding import SetFolding

    from .boardfold import quiet_finn_folding

    names = {n.output[0]: n.name for n in model.graph.node}
    # FINN's second folding pass analyses the whole dataflow and knows only FINN's
    # domains, so it runs only on graphs of FINN layers alone
    foreign = any(n.domain == NETFABRIC_DOMAIN for n in model.graph.node)
    with quiet_finn_folding():
        model = model.transform(SetFolding(target_cycles, mvau_wwidth_max=cfg.mvau_wwidth_max,
                                           two_pass_relaxation=not foreign))
    _restore_names(model, names)
    _fold_netfabric(model, target_cycles)
    model = model.transform(MinimizeAccumulatorWidth())
    _widen_xnor_popcounts(model)
    return model


def layer_bounds(model, cfg, target: int, search: dict | None) -> dict[str, str]:
    """Per layer, what its folding stopped at: the target met, the largest PE/SIMD the layer
    has, FINN's weight-width limit (``mvau_wwidth_max``), or the board's resources."""
    from netfabric.ops.registry import get

    graph = _hw_view(model)
    cycles = {n.name: int(get(n.op_type).cycles(n, graph)) for n in graph.nodes}
    bottleneck = max(cycles.values(), default=0)
    bounds = {}
    for node in graph.nodes:
        cyc = cycles[node.name]
        if not target:
            bounds[node.name] = "folding config" if cfg.folding_json else "unfolded"
        elif cyc <= target and not (search and search.get("limited_by") and cyc == bottleneck):
            bounds[node.name] = "target met"
        elif search and search.get("limited_by") and cyc == bottleneck:
            bounds[node.name] = f"board: {search['limited_by']}"
        else:
            bounds[node.name] = _parallel_limit(node, cfg)
    return bounds


def _parallel_limit(node, cfg) -> str:
    from netfabric.host.hwgraph import int_type

    op = node.op_type
    pe, simd = node.attr("PE"), node.attr("SIMD")
    if op == "MVAU":
        mw, mh = int(node.attr("MW")), int(node.attr("MH"))
        if simd == mw and pe == mh:
            return "max PE/SIMD"
        wbits = int_type(node.attr("weightDataType")).bits
        larger = [d for d in range(int(simd) + 1, mw + 1) if mw % d == 0]
        if larger and larger[0] * wbits > cfg.mvau_wwidth_max:
            return "mvau_wwidth_max"
        return "FINN: weight stream width" if simd == mw else "FINN folding"
    if simd is not None and node.attr("IFMChannels") is not None and simd == node.attr("IFMChannels"):
        return "max SIMD"
    if pe is not None:
        return "max PE"
    return "not foldable"


def _widen_xnor_popcounts(model) -> None:
    """An XNOR MVAU without activation outputs its popcount, 0..MW. FINN sizes its
    accumulator for a sum of MW +-1 products (e.g. INT7 for MW = 64), which cannot hold MW
    itself: give such layers, their output tensor and its consumers UINT(bits of MW), the
    width the popcount needs, so every backend (and the RTL's port width) agrees."""
    from qonnx.core.datatype import DataType
    from qonnx.custom_op.registry import getCustomOp

    for node in model.graph.node:
        if not node.op_type.startswith("MVAU"):
            continue
        inst = getCustomOp(node)
        if not (inst.get_nodeattr("binaryXnorMode") and inst.get_nodeattr("noActivation")):
            continue
        popcount = DataType[f"UINT{int(inst.get_nodeattr('MW')).bit_length()}"]
        inst.set_nodeattr("accDataType", popcount.name)
        inst.set_nodeattr("outputDataType", popcount.name)
        model.set_tensor_datatype(node.output[0], popcount)
        for consumer in model.find_consumers(node.output[0]) or []:
            consumer_inst = getCustomOp(consumer)
            if "inputDataType" in consumer_inst.get_nodeattr_types():
                consumer_inst.set_nodeattr("inputDataType", popcount.name)


def step_check(model, cfg):
    """Every node is a registered HW op with a CPU lowering (the backend every graph must
    run on); anything else stops here, with the node named, instead of failing at run time."""
    from netfabric.ops.registry import require

    for node in model.graph.node:
        if not node.domain.startswith(FINN_DOMAIN) and node.domain != NETFABRIC_DOMAIN:
            raise CompileError(f"node {node.name} ({node.domain or 'onnx'}.{node.op_type}) is not "
                               "a hardware layer")
        require(node.op_type, ("cpu",), node.name)
    return model


BACK_HALF = {"specialize": step_specialize, "fold": step_fold, "check": step_check}


def run_steps(model, steps: dict, cfg, progress=None):
    """Apply named steps in order. A step that fails for any reason other than a
    CompileError becomes one, naming the step; netfabric's metadata (host-side layout steps,
    output scale) survives FINN passes that rebuild the model without it."""
    for name, fn in steps.items():
        if progress:
            progress(name)
        kept = {p.key: p.value for p in [*model.model.metadata_props,
                                          *model.graph.metadata_props]}
        try:
            model = fn(model, cfg)
        except CompileError:
            raise
        except Exception as exc:
            raise CompileError(f"compile step {name} failed: {type(exc).__name__}: {exc}") from exc
        for key, value in kept.items():
            if model.get_metadata_prop(key) is None:
                model.set_metadata_prop(key, value)
    return model


def _restore_names(model, names: dict[str, str]) -> None:
    for node in model.graph.node:
        node.name = names.get(node.output[0], node.name)


def _fold_netfabric(model, target_cycles: int) -> None:
    """Smallest PE (a divisor of every stream width of the node) meeting the cycle target,
    by the registry's cost model."""
    from onnx import helper

    from netfabric.ops.registry import generic_name, get

    for node in model.graph.node:
        if node.domain != NETFABRIC_DOMAIN:
            continue
        graph = _hw_view(model)
        view = next(n for n in graph.nodes if n.name == node.name)
        widths = [graph.shapes[t][-1] for t in [*view.inputs[:1], *view.outputs]]
        limit = gcd(*widths)
        op = get(generic_name(node.op_type))
        pe_attr = next(a for a in node.attribute if a.name == "PE") if any(
            a.name == "PE" for a in node.attribute) else None
        for pe in (p for p in range(1, limit + 1) if limit % p == 0):
            view.attrs["PE"] = pe
            if op.cycles(view, graph) <= target_cycles:
                break
        if pe_attr is not None:
            node.attribute.remove(pe_attr)
        node.attribute.append(helper.make_attribute("PE", pe))


def estimate(model, cfg) -> dict:
    """Per layer: the registry's cycles and resources, FINN's estimate beside them where FINN
    has one (its cycle and resource models of its own layers)."""
    from netfabric.ops.registry import get

    graph = _hw_view(model)
    finn_cycles, finn_res = _finn_estimates(model, cfg)
    fold = json.loads(model.get_metadata_prop(FOLD_RECORD) or "{}")
    bounds = fold.get("bounds", {})
    layers = []
    for node in graph.nodes:
        op = get(node.op_type)
        layer = {"name": node.name, "op_type": node.op_type,
                 **{a: node.attr(a) for a in ("PE", "SIMD") if node.attr(a) is not None},
                 "cycles": int(op.cycles(node, graph)),
                 "resources": op.resources(node, graph) if op.resources else {}}
        if node.name in bounds:
            layer["bound"] = bounds[node.name]
        if node.name in finn_cycles and op.origin == "finn":
            layer["finn_cycles"] = int(finn_cycles[node.name])
            layer["finn_resources"] = finn_res.get(node.name, {})
        layers.append(layer)
    bottleneck = max((layer["cycles"] for layer in layers), default=0)
    finn_bottleneck = max((layer.get("finn_cycles", 0) for layer in layers), default=0)
    return {
        "clock_mhz": cfg.clock_mhz,
        "cost_model": "netfabric op registry; finn_* fields: FINN's own estimate",
        "layers": layers,
        "bottleneck_cycles": bottleneck,
        "est_fps": cfg.clock_mhz * 1e6 / bottleneck if bottleneck else None,
        "finn_bottleneck_cycles": finn_bottleneck or None,
        "total_resources": _sum([layer["resources"] for layer in layers]),
        "finn_total_resources": _sum([layer.get("finn_resources", {}) for layer in layers]),
        "folding": {"target_cycles": fold.get("target_cycles"), "board": fold.get("search")},
    }


def _finn_estimates(model, cfg) -> tuple[dict, dict]:
    import copy
    import logging

    from finn.analysis.fpgadataflow.exp_cycles_per_layer import exp_cycles_per_layer
    from finn.analysis.fpgadataflow.res_estimation import res_estimation
    from qonnx.core.modelwrapper import ModelWrapper

    finn_only = model
    if any(n.domain == NETFABRIC_DOMAIN for n in model.graph.node):
        # FINN's analyses do not know netfabric's domain: run them on FINN's nodes alone
        finn_only = ModelWrapper(copy.deepcopy(model.model))
        for node in [n for n in finn_only.graph.node if n.domain == NETFABRIC_DOMAIN]:
            finn_only.graph.node.remove(node)
    try:
        cycles = finn_only.analysis(exp_cycles_per_layer)
    except Exception as exc:  # FINN's estimate is a peer, never a reason to fail a compile
        logging.getLogger(__name__).warning("FINN cycle estimate failed: %s", exc)
        cycles = {}
    try:
        resources = finn_only.analysis(lambda m: res_estimation(m, cfg.fpga_part))
    except Exception as exc:
        logging.getLogger(__name__).warning("FINN resource estimate failed: %s", exc)
        resources = {}
    return cycles, resources


def _sum(per_layer: list[dict]) -> dict:
    total: dict[str, float] = {}
    for res in per_layer:
        for key, value in res.items():
            if isinstance(value, (int, float)):
                total[key] = total.get(key, 0) + value
    return total


def folding_config(model) -> dict:
    """FINN's folding config format (editable, accepted back by ``--folding``)."""
    from qonnx.custom_op.registry import getCustomOp

    cfg: dict = {"Defaults": {}}
    for node in model.graph.node:
        inst = getCustomOp(node)
        entry = {}
        for key in ("PE", "SIMD", "parallel_window", "ram_style", "resType"):
            try:
                entry[key] = inst.get_nodeattr(key)
            except Exception:
                continue
        if entry:
            cfg[node.name] = entry
    return cfg


def save(model, estimates: dict, out_dir: Path) -> Path:
    """``hw_graph.onnx``, ``estimates.json`` and ``folding.json`` in ``out_dir``, each written
    atomically; returns the graph's path."""
    from netfabric.files import atomic_path, atomic_write

    out_dir = Path(out_dir)
    graph_path = out_dir / HW_GRAPH
    with atomic_path(graph_path) as tmp:
        model.save(str(tmp))
    atomic_write(out_dir / "estimates.json", json.dumps(estimates, indent=2))
    atomic_write(out_dir / "folding.json", json.dumps(folding_config(model), indent=2))
    return graph_path
