"""Fixtures of the quantscope.data tests: seeded arrays with inputs, labels and metadata."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def data(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        "x": rng.standard_normal((10, 3, 4)).astype(np.float32),
        "ids": rng.integers(0, 100, size=(10, 5)).astype(np.int64),
        "labels": np.arange(10) % 3,
        "meta_slice": np.array(["day", "night"] * 5),
    }
