"""Set FINN up as a library without a settings file or Vivado."""

from __future__ import annotations

import functools
import os
import tempfile

from .errors import CompileError


@functools.cache
def ensure_finn() -> None:
    """Import FINN once with dummy settings; a clear error when the compile extra is missing."""
    os.environ.setdefault("FINN_BUILD_DIR", os.path.join(tempfile.gettempdir(), "netfabric-finn"))
    os.makedirs(os.environ["FINN_BUILD_DIR"], exist_ok=True)  # FINN refuses a missing one
    try:
        from finn.util.settings import initialize_dummy_settings
    except ImportError as exc:
        raise CompileError(
            "the FINN front end is not installed: run `make setup` (installs finn-plus)"
        ) from exc
    try:
        initialize_dummy_settings()
    except Exception:  # already initialised
        pass
