"""``IntSoftmax``: the integer softmax as a QONNX node (float interface, integer inside).

Inputs: ``scores`` (float, on the grid of ``score_scale``: the output of the score ``Quant``),
``mask`` (bool, broadcastable, True = valid key). Output: probabilities ``p * 2^-out_frac_bits``
with ``p`` the UINT ``out_bits`` integers of models/INT_SOFTMAX.md. The exp table is an
attribute (``lut``, integers): the table, not the float scale, is the contract.
"""

from __future__ import annotations

import numpy as np
from onnx import helper
from qonnx.core.datatype import DataType
from qonnx.custom_op.base import CustomOp

from netfabric.ops.kernels import int_softmax_lut


class IntSoftmax(CustomOp):
    def get_nodeattr_types(self):
        return {
            "score_scale": ("f", True, 1.0),
            "score_bits": ("i", False, 8),
            "exp_bits": ("i", False, 15),
            "recip_bits": ("i", False, 31),
            "out_bits": ("i", False, 8),
            "out_frac_bits": ("i", False, 8),
            "lut": ("ints", True, []),
        }

    def make_shape_compatible_op(self, model):
        return helper.make_node("Identity", [self.onnx_node.input[0]], [self.onnx_node.output[0]])

    def infer_node_datatype(self, model):
        model.set_tensor_datatype(self.onnx_node.output[0], DataType["FLOAT32"])

    def execute_node(self, context, graph):
        node = self.onnx_node
        scale = self.get_nodeattr("score_scale")
        bits = self.get_nodeattr("score_bits")
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        q = np.clip(np.round(np.asarray(context[node.input[0]], np.float64) / scale), lo, hi)
        mask = context[node.input[1]].astype(bool) if len(node.input) > 1 else True
        p = int_softmax_lut(q.astype(np.int64), mask, np.array(self.get_nodeattr("lut")),
                            self.get_nodeattr("recip_bits"), self.get_nodeattr("out_frac_bits"),
                            self.get_nodeattr("out_bits"), lo)
        context[node.output[0]] = (p * 2.0 ** -self.get_nodeattr("out_frac_bits")).astype(np.float32)

    def verify_node(self):
        lut = self.get_nodeattr("lut")
        if len(lut) != 1 << self.get_nodeattr("score_bits"):
            return [f"{self.onnx_node.name}: lut has {len(lut)} entries, "
                    f"needs 2^score_bits = {1 << self.get_nodeattr('score_bits')}"]
        return []
