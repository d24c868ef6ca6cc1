"""One root for every error netfabric raises about something a user can act on.

The CLI catches :class:`NetfabricError` and prints its message as one line (exit status 2):
every subclass must say what went wrong and what to do about it. Each stage has its own
subclass so callers can tell them apart; the stage modules re-export theirs.
"""

from __future__ import annotations


class NetfabricError(RuntimeError):
    """A netfabric stage cannot go on; the message names the cause and the fix."""


class CompileError(NetfabricError):
    """The model cannot be compiled (unsupported layer, bit width, shape, corrupt file)."""


class UnsupportedOpError(CompileError):
    """A HW-layer op is not registered, or lacks a piece a backend needs."""


class GraphError(NetfabricError):
    """The HW-layer graph file is missing, corrupt or uses something the host cannot run."""


class StitchError(NetfabricError):
    """The HW-layer graph cannot be turned into RTL (unsupported node, widths, folding)."""


class SimulationError(NetfabricError):
    """An RTL simulation could not be built or run, or its results did not check out."""


class FlowError(NetfabricError):
    """A synthesis / place-and-route / bitstream step cannot go on."""


class DataError(NetfabricError):
    """A data set is missing, corrupt or cannot be fetched."""


class CheckpointError(NetfabricError):
    """A checkpoint is missing, corrupt or of the wrong kind."""


class BackendUnavailable(NetfabricError):
    """A runtime backend cannot run on this host (missing device, tool or package)."""


class BackendFailure(NetfabricError):
    """A runtime backend failed while running (device error, timeout, lost board), or every
    backend that could take over did too."""
