"""Suite-wide: which build of the data path the tests run, and tests that need the pure one
(marked ``pure_python``: they hand compiled classes stand-ins or replace their methods).

``make unit-compiled`` and ``make integration-compiled`` run the tests with
``PYTHONPATH=build/compiled`` and ``MESHLET_EXPECT_COMPILED=1``; the run stops at once if
meshlet was not loaded from there, so that a compiled run never silently tests the pure source.
"""

from __future__ import annotations

import os

import pytest

from meshlet.agent.build import data_path_build


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("MESHLET_EXPECT_COMPILED") == "1" and data_path_build() != "compiled":
        raise pytest.UsageError(
            "MESHLET_EXPECT_COMPILED=1 but meshlet's data path is pure Python here: "
            "run `make compiled` and put build/compiled on PYTHONPATH"
        )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if data_path_build() != "compiled":
        return
    skip = pytest.mark.skip(reason="compiled classes refuse stand-ins and replaced methods")
    for item in items:
        if item.get_closest_marker("pure_python") is not None:
            item.add_marker(skip)
