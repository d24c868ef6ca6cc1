"""Errors the compile path raises for bad input: each names the problem and what to do.

The classes live in :mod:`netfabric.errors` (one root the CLI catches); this module keeps the
import location the compile modules and users already have.
"""

from netfabric.errors import CompileError, UnsupportedOpError

__all__ = ["CompileError", "UnsupportedOpError"]
