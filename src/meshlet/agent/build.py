"""Which build of the data path this process runs: compiled with mypyc, or pure Python.

``MESHLET_MYPYC=1 pip install .`` compiles the modules listed in ``setup.py`` (``make compiled``
builds such a tree for the benchmarks and the compiled test run); the source is the same.
"""

from __future__ import annotations

from importlib.machinery import EXTENSION_SUFFIXES

from meshlet.agent import tunnel

__all__ = ["data_path_build"]


def data_path_build() -> str:
    """``"compiled"`` when the tunnel module is a C extension (mypyc), else ``"pure Python"``."""
    return "compiled" if tunnel.__file__.endswith(tuple(EXTENSION_SUFFIXES)) else "pure Python"
