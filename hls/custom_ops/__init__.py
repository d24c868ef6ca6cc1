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

_WHERE = {
    "IntSoftmax": ".int_softmax",
    "SegmentPad": ".segment_ops",
    "SegmentUnpad": ".segment_ops",
    "SegmentAttention": ".segment_ops",
}
HW_OPS = frozenset({"SegmentPad", "SegmentUnpad", "SegmentAttention"})
__all__ = list(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if name in HW_OPS:  # FINN wants its settings before its modules are imported
        from ..finn_env import ensure_finn

        ensure_finn()
    return getattr(importlib.import_module(_WHERE[name], __name__), name)
