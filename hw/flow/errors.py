"""Errors the flow raises for conditions a user can act on.

The CLI prints a ``FlowError`` as one message, without a traceback: every subclass must say what
went wrong and what to do about it. ``FlowError`` itself is :class:`netfabric.errors.FlowError`,
so the flow's errors share the one root every netfabric CLI command catches.
"""

from __future__ import annotations

from pathlib import Path

from netfabric.errors import FlowError

__all__ = [
    "DesignDoesNotFitError",
    "FlowError",
    "ManifestError",
    "PllError",
    "ToolFailedError",
    "ToolNotFoundError",
    "UnknownBoardError",
]


class UnknownBoardError(FlowError):
    """The requested board is not in the registry."""


class ManifestError(FlowError):
    """The project folder's manifest.json is missing, malformed or names missing files."""


class ToolNotFoundError(FlowError):
    """A required executable (yosys, nextpnr, ecppack, icepack, vivado) is not installed."""


class ToolFailedError(FlowError):
    """A tool ran and returned an error; the message carries the tail of its log."""

    def __init__(self, message: str, log: Path | None = None) -> None:
        super().__init__(message)
        self.log = log


class DesignDoesNotFitError(FlowError):
    """The design needs more of some resource than the device has."""

    def __init__(self, message: str, resource: str, used: int, available: int) -> None:
        super().__init__(message)
        self.resource = resource
        self.used = used
        self.available = available


class PllError(FlowError):
    """No PLL configuration reaches the requested clock frequency."""
