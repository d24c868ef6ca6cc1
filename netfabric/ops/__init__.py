"""Hardware-layer ops: one registry (``registry.py``), one definition per op (``defs/``)."""

from .registry import OpDef, define_op, generic_name, get, matrix, ops, register_piece, require

__all__ = ["OpDef", "define_op", "generic_name", "get", "matrix", "ops", "register_piece",
           "require"]
