"""Errors of the RTL backend that come from the input graph: each names the node and why."""


class StitchError(RuntimeError):
    """The HW-layer graph cannot be turned into RTL (unsupported node, widths, folding)."""
