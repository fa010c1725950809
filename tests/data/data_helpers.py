"""Helpers shared by the tests of quantscope.data: specs, batch collection and comparison."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from quantscope.data import Batch, Dataset
from quantscope.specs import TensorSpec

F32 = np.dtype(np.float32)
I64 = np.dtype(np.int64)


def spec(name: str, dtype: np.dtype, shape: tuple | None) -> TensorSpec:
    return TensorSpec(name, np.dtype(dtype), shape)


def collect(ds: Dataset, batch_size: int = 4, **kwargs: object) -> list[Batch]:
    return list(ds.batches(batch_size, **kwargs))


def stacked(batches: list[Batch]) -> dict[str, np.ndarray]:
    out = {k: np.concatenate([b.inputs[k] for b in batches]) for k in batches[0].inputs}
    if batches[0].labels is not None:
        out["__labels__"] = np.concatenate([b.labels for b in batches])
    for k in batches[0].meta:
        out[f"__meta_{k}__"] = np.concatenate([b.meta[k] for b in batches])
    out["__indices__"] = np.concatenate([b.indices for b in batches])
    return out


def assert_same_batches(a: list[Batch], b: list[Batch]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.inputs.keys() == y.inputs.keys()
        for k in x.inputs:
            np.testing.assert_array_equal(x.inputs[k], y.inputs[k])
            assert x.inputs[k].dtype == y.inputs[k].dtype
        if x.labels is None:
            assert y.labels is None
        else:
            np.testing.assert_array_equal(x.labels, y.labels)
        assert x.meta.keys() == y.meta.keys()
        for k in x.meta:
            np.testing.assert_array_equal(x.meta[k], y.meta[k])
        np.testing.assert_array_equal(x.indices, y.indices)


def assert_round_trip(ds: Dataset, data: dict[str, np.ndarray]) -> None:
    assert len(ds) == 10
    assert set(ds.input_names) == {"x", "ids"}
    for batch_size in (1, 3, 10, 64):
        got = stacked(collect(ds, batch_size))
        np.testing.assert_array_equal(got["x"], data["x"])
        np.testing.assert_array_equal(got["ids"], data["ids"])
        np.testing.assert_array_equal(got["__labels__"], data["labels"])
        np.testing.assert_array_equal(got["__meta_slice__"], data["meta_slice"])
        np.testing.assert_array_equal(got["__indices__"], np.arange(10))
    np.testing.assert_array_equal(ds.labels, data["labels"])
    np.testing.assert_array_equal(ds.meta["slice"], data["meta_slice"])
    assert_same_batches(collect(ds, 3), collect(ds, 3))


def write_folder(root: Path, data: dict[str, np.ndarray], splits: list[int]) -> None:
    root.mkdir(exist_ok=True)
    bounds = np.cumsum([0, *splits])
    for i, (lo, hi) in enumerate(itertools.pairwise(bounds)):
        np.savez(root / f"part_{i:03d}.npz", **{k: v[lo:hi] for k, v in data.items()})
