"""Package layout of the wheel; everything else (metadata, dependencies, data) is pyproject.toml.

The ``netfabric`` distribution is one import package whose subpackages live in top-level
folders of the repository (``models/`` is ``netfabric.models``, ``hw/`` is ``netfabric.hw``,
...). setuptools' own discovery cannot map folders onto other package names, so the package
list is computed here: every folder under a root that holds Python files is a package, which
picks up new subpackages (``netfabric.ops.defs``, ``netfabric.hw.flow``, ...) without a list
to keep in sync. tests/test_packaging.py checks the wheel against the source tree.
"""

from pathlib import Path

from setuptools import setup

HERE = Path(__file__).resolve().parent

# import package -> source folder (relative to this file)
ROOTS = {
    "netfabric": "netfabric",
    "netfabric.models": "models",
    "netfabric.hls": "hls",
    "netfabric.hw": "hw",
    "netfabric.sim": "sim",
    "netfabric.host": "host",
}


def _packages() -> list[str]:
    packages = []
    for pkg, folder in ROOTS.items():
        root = HERE / folder
        for d in sorted([root, *(p for p in root.rglob("*") if p.is_dir())]):
            rel = d.relative_to(root)
            if not all(part.isidentifier() and part != "__pycache__" for part in rel.parts):
                continue
            if not any(d.glob("*.py")):
                continue
            packages.append(".".join([pkg, *rel.parts]))
    return packages


setup(package_dir=ROOTS, packages=_packages())
