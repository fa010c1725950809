"""Fixtures of the execution tests: tiny models on disk, and a real Dask cluster on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import execution_helpers
import pytest


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return execution_helpers.write_files(tmp_path_factory.mktemp("execution"))


@pytest.fixture(scope="module")
def cluster() -> Iterator[object]:
    """A LocalCluster of two worker processes (one thread each), stopped after the module."""
    pytest.importorskip("distributed")
    import cloudpickle

    from quantscope.execution import dask_executor

    # the workers need not import the tests' helper module: its functions travel by value
    cloudpickle.register_pickle_by_value(execution_helpers)
    executor = dask_executor(workers=2)
    try:
        yield executor
    finally:
        executor.shutdown()
        cloudpickle.unregister_pickle_by_value(execution_helpers)
