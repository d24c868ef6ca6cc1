"""Errors the compile path raises for bad input: each names the problem and what to do."""


class CompileError(RuntimeError):
    """The model cannot be compiled (unsupported layer, bit width, shape, corrupt file)."""
