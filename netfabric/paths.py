"""Where netfabric writes its caches, and where its shipped data lives.

Caches (Verilator builds, generated RTL projects) go to a per-user folder, never next to the
code: an installed package sits in site-packages, which may be read-only or shared.

* ``NETFABRIC_CACHE`` if set, else
* ``$XDG_CACHE_HOME/netfabric`` if ``XDG_CACHE_HOME`` is an absolute path, else
* ``~/.cache/netfabric``.

Shipped data (RTL library, board constraints, pretrained checkpoints) is read from the
installed package, whatever the layout (repository checkout, editable or wheel install).
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """The cache folder (not created); read from the environment on every call."""
    env = os.environ.get("NETFABRIC_CACHE")
    if env:
        return Path(env).expanduser().resolve()
    xdg = os.environ.get("XDG_CACHE_HOME")
    # The XDG spec says to ignore a relative XDG_CACHE_HOME.
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "netfabric"


def cache_dir(*parts: str, create: bool = True) -> Path:
    """``cache_root() / parts...``, created (with parents) unless ``create`` is False."""
    path = cache_root().joinpath(*parts)
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def package_dir(subpackage: str) -> Path:
    """Folder of ``netfabric.<subpackage>`` (e.g. ``"models"``, ``"hw"``), without importing it.

    The subpackages map onto top-level folders of the repository (see setup.py), so their
    location relative to this file differs between a checkout and a wheel install.
    """
    from importlib.util import find_spec

    spec = find_spec(f"netfabric.{subpackage}")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"netfabric.{subpackage} is not installed")
    return Path(next(iter(spec.submodule_search_locations))).resolve()
