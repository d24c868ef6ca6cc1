"""netfabric's qonnx custom-op domain: ``netfabric.hls.custom_ops``.

qonnx finds a node's implementation by importing the module named by the node's domain and
looking the op type up in its ``__all__`` (``qonnx.custom_op.registry``), so a node with
``domain="netfabric.hls.custom_ops"`` resolves here for ``getCustomOp`` and ``execute_onnx``
with no registration call. Ops:

- ``IntSoftmax``: the integer softmax of models/INT_SOFTMAX.md as a QONNX (float-interface)
  node, emitted by the transformer's QONNX export;
- ``SegmentPad``, ``SegmentAttention``, ``SegmentUnpad``: HW layers (FINN ``HWCustomOp``
  subclasses) of the transformer's HW-layer graph, where a segment is the streaming unit.

The HW ops import FINN, so they load lazily: the QONNX op works with qonnx alone.
"""

from __future__ import annotations

import importlib

DOMAIN = "netfabric.hls.custom_ops"

# QONNX-level (float-interface) ops; netfabric's HW-layer ops come from the op registry, whose
# entries name the class of each (``OpDef.finn_class``), so adding one needs no edit here.
_QONNX_OPS = {"IntSoftmax": f"{__name__}.int_softmax"}


def _hw_ops() -> dict[str, str]:
    """netfabric's HW ops -> the module of their qonnx class (from the op registry)."""
    from netfabric.ops.registry import ops

    return {name: op.finn_class.rsplit(".", 1)[0] for name, op in ops(()).items()
            if op.origin == "netfabric" and op.finn_class}


def __getattr__(name: str):
    # qonnx looks classes up through ``__all__``, read lazily here (PEP 562)
    if name == "__all__":
        return [*_QONNX_OPS, *_hw_ops()]
    if name == "HW_OPS":
        return frozenset(_hw_ops())
    hw = _hw_ops()
    if name in hw:  # FINN wants its settings before its modules are imported
        from ..finn_env import ensure_finn

        ensure_finn()
        return getattr(importlib.import_module(hw[name]), name)
    if name in _QONNX_OPS:
        return getattr(importlib.import_module(_QONNX_OPS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
