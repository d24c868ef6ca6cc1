"""Errors of the RTL backend that come from the input graph: each names the node and why.

:class:`StitchError` lives in :mod:`netfabric.errors` (one root the CLI catches); this module
keeps the import location the RTL backend already has.
"""

from netfabric.errors import StitchError

__all__ = ["StitchError"]
