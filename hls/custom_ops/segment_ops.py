"""HW layers for segmented attention; a segment of ``SegLen`` tokens is the streaming unit.

Token streams elsewhere in the graph are ``[1, n, 1, C]`` (a sequence as an n x 1 image,
channels last, as FINN lays out 1-D data). Around attention:

    SegmentPad       [1, n, 1, C]  -> [1, m, s, C]    Shift zero tokens in front, zeros behind
    SegmentAttention [1, m, s, 3d] -> [1, m, s, d]    one segment in, its s context tokens out
    SegmentUnpad     [1, m, s, C]  -> [1, n, 1, C]    drops the padded rows

Token order is unchanged by the padding (a segment is a contiguous run of the token stream), so
in hardware SegmentPad inserts zero words, SegmentAttention buffers one segment's q/k/v
(s x 3d values) and emits that segment's s context rows, and SegmentUnpad drops words.
``execute_node`` of each op *is* its integer definition (``kernels.py``); values travel as
float32 holding integers, as everywhere in FINN.

Why not FINN's ``ScaledDotProductAttention``: its softmax is floating point (``AccASoftmax`` is
always FLOAT32, ``DequantSoftmax`` a float scale) and its masks are float -inf additions;
netfabric's contract is the integer LUT softmax with padded keys masked, so the op is ours.
Its two requantizers are FINN-style threshold tables (inputs 1 and 3).
"""

from __future__ import annotations

import numpy as np
from finn.custom_op.fpgadataflow.hwcustomop import HWCustomOp
from qonnx.core.datatype import DataType

from netfabric.ops.kernels import segment_attention, segment_pad, segment_unpad, segment_valid


def _ints(x: np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(x)
    r = np.round(x)
    if not np.array_equal(r, x):
        raise ValueError(f"{what} holds non-integer values")
    return r.astype(np.int64)


class _SegmentOp(HWCustomOp):
    """Shared geometry: n tokens, segments of s, ``Shift`` zero tokens in front."""

    def get_nodeattr_types(self):
        attrs = super().get_nodeattr_types()
        attrs.update({
            "NumTokens": ("i", True, 0),
            "SegLen": ("i", True, 0),
            "Shift": ("i", False, 0),
            "NumChannels": ("i", True, 0),  # channels of the input stream
            "PE": ("i", False, 1),  # channels per cycle
            "inputDataType": ("s", True, ""),
            "outputDataType": ("s", False, ""),  # empty: same as the input
        })
        return attrs

    @property
    def num_segments(self) -> int:
        n, s, shift = (self.get_nodeattr(a) for a in ("NumTokens", "SegLen", "Shift"))
        return -(-(shift + n) // s)

    def token_shape(self, channels: int) -> list[int]:
        return [1, self.get_nodeattr("NumTokens"), 1, channels]

    def segment_shape(self, channels: int) -> list[int]:
        return [1, self.num_segments, self.get_nodeattr("SegLen"), channels]

    def get_input_datatype(self, ind=0):
        return DataType[self.get_nodeattr("inputDataType")]

    def get_output_datatype(self, ind=0):
        return DataType[self.get_nodeattr("outputDataType") or self.get_nodeattr("inputDataType")]

    def _fold(self, shape: list[int]) -> list[int]:
        pe = self.get_nodeattr("PE")
        if shape[-1] % pe:
            raise ValueError(f"{self.onnx_node.name}: PE={pe} does not divide {shape[-1]} channels")
        return [*shape[:-1], shape[-1] // pe, pe]

    def get_folded_input_shape(self, ind=0):
        return self._fold(list(self.get_normal_input_shape(ind)))

    def get_folded_output_shape(self, ind=0):
        return self._fold(list(self.get_normal_output_shape(ind)))

    def get_instream_width(self, ind=0):
        return self.get_nodeattr("PE") * self.get_input_datatype(ind).bitwidth()

    def get_outstream_width(self, ind=0):
        return self.get_nodeattr("PE") * self.get_output_datatype().bitwidth()

    def infer_node_datatype(self, model):
        node = self.onnx_node
        self.set_nodeattr("inputDataType", model.get_tensor_datatype(node.input[0]).name)
        model.set_tensor_datatype(node.output[0], self.get_output_datatype())

    def get_exp_cycles(self):
        """The op registry's cost model (netfabric/ops/defs/segments.py): one definition,
        read by the stitcher, the folding and FINN's analyses alike."""
        from onnx import helper

        from netfabric.host.hwgraph import HWNode, _attr_value
        from netfabric.ops.registry import get

        n = self.onnx_node
        attrs = {a.name: _attr_value(helper.get_attribute_value(a)) for a in n.attribute}
        node = HWNode(n.name, n.op_type, "", list(n.input), list(n.output), attrs)
        return int(get(n.op_type).cycles(node, None))

    def verify_node(self):
        n, s, shift = (self.get_nodeattr(a) for a in ("NumTokens", "SegLen", "Shift"))
        if n <= 0 or s <= 0 or not 0 <= shift < s:
            return [f"{self.onnx_node.name}: need NumTokens > 0, SegLen > 0, 0 <= Shift < SegLen"]
        return []

    def _check_input(self, x: np.ndarray, ind: int = 0) -> np.ndarray:
        want = list(self.get_normal_input_shape(ind))
        if list(x.shape) != want:
            raise ValueError(f"{self.onnx_node.name} ({self.onnx_node.op_type}): input {ind} has "
                             f"shape {list(x.shape)}, expected {want}")
        return _ints(x, f"{self.onnx_node.name} input {ind}")


class SegmentPad(_SegmentOp):
    """[1, n, 1, C] -> [1, m, s, C]: ``Shift`` zero tokens before, zeros after to whole segments."""

    def get_normal_input_shape(self, ind=0):
        return self.token_shape(self.get_nodeattr("NumChannels"))

    def get_normal_output_shape(self, ind=0):
        return self.segment_shape(self.get_nodeattr("NumChannels"))

    def execute_node(self, context, graph):
        node = self.onnx_node
        x = self._check_input(context[node.input[0]])[:, :, 0, :]
        y = segment_pad(x, self.get_nodeattr("SegLen"), self.get_nodeattr("Shift"))
        context[node.output[0]] = y.astype(np.float32)


class SegmentUnpad(_SegmentOp):
    """[1, m, s, C] -> [1, n, 1, C]: the padded rows of every segment are dropped."""

    def get_normal_input_shape(self, ind=0):
        return self.segment_shape(self.get_nodeattr("NumChannels"))

    def get_normal_output_shape(self, ind=0):
        return self.token_shape(self.get_nodeattr("NumChannels"))

    def execute_node(self, context, graph):
        node = self.onnx_node
        x = self._check_input(context[node.input[0]])
        y = segment_unpad(x, self.get_nodeattr("NumTokens"), self.get_nodeattr("Shift"))
        context[node.output[0]] = y[:, :, None, :].astype(np.float32)


class SegmentAttention(_SegmentOp):
    """Multi-head integer attention inside each segment.

    Input 0: q | k | v of the segment tokens, [1, m, s, 3d] (``NumChannels`` = 3d, each part
    head-major: channel h * HeadDim + j). Input 1: score thresholds [1, 2^B - 1] (one table,
    count(acc >= T) + ScoreActVal on q_h . k_h). Input 2: the softmax exp LUT [2^ScoreBits]
    (UINT ExpBits). Input 3: context thresholds [1, 2^B - 1] on the UINT8 probabilities . v_h
    accumulator (+ CtxActVal). Output: INT context [1, m, s, d].

    Keys in padded slots (positions outside [Shift, Shift + NumTokens) of the padded sequence)
    are masked out of the softmax; padded query rows are computed and later dropped.
    """

    def get_nodeattr_types(self):
        attrs = super().get_nodeattr_types()
        attrs.update({
            "Heads": ("i", True, 0),
            "HeadDim": ("i", True, 0),
            "scoreDataType": ("s", True, ""),
            "probDataType": ("s", True, ""),
            "ScoreActVal": ("i", True, 0),
            "CtxActVal": ("i", True, 0),
            "ExpBits": ("i", True, 0),
            "RecipBits": ("i", True, 0),
            "ProbFracBits": ("i", True, 0),
            "accQKDataType": ("s", False, ""),
            "accAVDataType": ("s", False, ""),
            "inFIFODepths": ("ints", False, [2, 2, 2, 2]),
        })
        return attrs

    @property
    def dim(self) -> int:
        return self.get_nodeattr("Heads") * self.get_nodeattr("HeadDim")

    @property
    def score_type(self):
        return DataType[self.get_nodeattr("scoreDataType")]

    def get_normal_input_shape(self, ind=0):
        levels = {1: self.score_type, 3: self.get_output_datatype()}
        if ind == 0:
            return self.segment_shape(3 * self.dim)
        if ind == 2:
            return [1 << self.score_type.bitwidth()]
        return [1, (1 << levels[ind].bitwidth()) - 1]

    def get_normal_output_shape(self, ind=0):
        return self.segment_shape(self.dim)

    def get_folded_input_shape(self, ind=0):
        return self._fold(list(self.get_normal_input_shape(0)))

    def verify_node(self):
        msgs = super().verify_node()
        if self.get_nodeattr("NumChannels") != 3 * self.dim:
            msgs.append(f"{self.onnx_node.name}: NumChannels must be 3 * Heads * HeadDim")
        return msgs

    def execute_node(self, context, graph):
        node = self.onnx_node
        qkv = self._check_input(context[node.input[0]])
        score_thr, lut, ctx_thr = (_ints(context[node.input[i]], f"{node.name} input {i}")
                                   for i in (1, 2, 3))
        valid = segment_valid(*(self.get_nodeattr(a) for a in ("NumTokens", "SegLen", "Shift")))
        softmax = {"recip_bits": self.get_nodeattr("RecipBits"),
                   "out_frac_bits": self.get_nodeattr("ProbFracBits"),
                   "out_bits": DataType[self.get_nodeattr("probDataType")].bitwidth(),
                   "score_min": int(self.score_type.min())}
        ctx = segment_attention(qkv, self.get_nodeattr("Heads"), valid,
                                score_thr, self.get_nodeattr("ScoreActVal"), lut,
                                ctx_thr, self.get_nodeattr("CtxActVal"), softmax)
        context[node.output[0]] = ctx.astype(np.float32)
