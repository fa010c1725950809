"""Tests of Dataset: batching, subsets, map, fingerprints, and caller data left alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from data_helpers import F32, I64, collect, spec, stacked
from hypothesis import given, settings
from hypothesis import strategies as st

from quantscope.data import UNNAMED, Dataset
from quantscope.errors import ConfigError, DataMismatchError


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 40),
    batch_size=st.integers(1, 17),
    splits=st.lists(st.integers(1, 9), min_size=1, max_size=6),
    take=st.one_of(st.none(), st.integers(1, 45)),
    seed=st.one_of(st.none(), st.integers(0, 5)),
)
def test_batches_cover_every_sample_once(
    n: int, batch_size: int, splits: list[int], take: int | None, seed: int | None
) -> None:
    values = np.arange(n, dtype=np.float32)[:, None] * np.ones((1, 2), np.float32)
    # cut the samples into elements of the given sizes (cycled) to exercise chunk joins
    elements, start, i = [], 0, 0
    while start < n:
        stop = min(n, start + splits[i % len(splits)])
        elements.append({"v": values[start:stop], "labels": np.arange(start, stop)})
        start, i = stop, i + 1
    sources = [
        Dataset.from_arrays({"v": values}, labels=np.arange(n)),
        Dataset.from_iterable(elements, batched=True),
        Dataset.from_iterable(lambda: iter(elements), batched=True),
    ]
    for ds in sources:
        if take is not None:
            ds = ds.take(take, seed=seed)
        expected = min(n, take) if take is not None else n
        batches = collect(ds, batch_size)
        sizes = [len(b) for b in batches]
        assert all(size == batch_size for size in sizes[:-1])
        assert 1 <= sizes[-1] <= batch_size
        indices = np.concatenate([b.indices for b in batches])
        np.testing.assert_array_equal(indices, np.arange(expected))
        chosen = np.concatenate([b.labels for b in batches])
        assert len(np.unique(chosen)) == expected  # each source sample at most once
        assert np.all(np.diff(chosen) > 0)  # subsets keep dataset order
        got = np.concatenate([b.inputs["v"][:, 0] for b in batches])
        np.testing.assert_array_equal(got, chosen.astype(np.float32))
        if take is not None and seed is None:
            np.testing.assert_array_equal(chosen, np.arange(expected))
        if expected >= batch_size:
            dropped = collect(ds, batch_size, drop_last=True)
            assert sum(len(b) for b in dropped) == expected // batch_size * batch_size


def test_take_is_deterministic_and_seeded(data: dict[str, np.ndarray]) -> None:
    ds = Dataset.from_arrays(np.arange(100).reshape(100, 1), labels=np.arange(100))
    a = ds.take(10, seed=7).labels
    np.testing.assert_array_equal(a, ds.take(10, seed=7).labels)
    assert not np.array_equal(a, ds.take(10, seed=8).labels)
    assert np.all(np.diff(a) > 0)
    np.testing.assert_array_equal(ds.take(10, seed=None).labels, np.arange(10))
    assert len(ds.take(500)) == 100  # clamped
    nested = ds.take(50, seed=1).take(5, seed=2)
    assert len(nested) == 5
    assert set(nested.labels) <= set(ds.take(50, seed=1).labels)
    with pytest.raises(ConfigError):
        ds.take(0)
    with pytest.raises(ConfigError):
        ds.take(3, seed=-1)


def test_take_on_a_source_of_unknown_length(data: dict[str, np.ndarray]) -> None:
    samples = [{"x": data["x"][i], "labels": i} for i in range(10)]
    lazy = Dataset.from_iterable(lambda: iter(samples))
    eager = Dataset.from_iterable(samples)
    np.testing.assert_array_equal(lazy.take(4, seed=3).labels, eager.take(4, seed=3).labels)
    first = lazy.take(4, seed=None)
    assert first.num_samples is None
    np.testing.assert_array_equal(first.labels, np.arange(4))


def test_batch_size_and_drop_last_validation(data: dict[str, np.ndarray]) -> None:
    ds = Dataset.from_arrays(data["x"])
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ConfigError):
            ds.batches(bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="drop_last"):
        ds.batches(11, drop_last=True)
    assert [len(b) for b in collect(ds, 4, drop_last=True)] == [4, 4]


def test_ragged_samples_batch_one_at_a_time(data: dict[str, np.ndarray]) -> None:
    samples = [np.zeros((3,), np.float32), np.zeros((3,), np.float32), np.zeros((5,), np.float32)]
    ds = Dataset.from_iterable(samples)
    assert len(collect(ds, 1)) == 3
    with pytest.raises(DataMismatchError, match="sample 2"):
        collect(ds, 3)


def test_map_is_lazy_and_per_batch(data: dict[str, np.ndarray]) -> None:
    calls: list[int] = []

    def shift(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        calls.append(len(inputs["x"]))
        return {"x": inputs["x"] + 1.0, "ids": inputs["ids"]}

    ds = Dataset.from_arrays({"x": data["x"], "ids": data["ids"]}, labels=data["labels"])
    shifted = ds.map(shift)
    assert calls == []
    got = stacked(collect(shifted, 4))
    assert calls == [4, 4, 2]
    np.testing.assert_array_equal(got["x"], data["x"] + 1.0)
    np.testing.assert_array_equal(got["__labels__"], data["labels"])
    renamed = ds.map(lambda d: {"pixels": d["x"], "ids": d["ids"]})
    assert set(renamed.input_names) == {"pixels", "ids"}

    with pytest.raises(ConfigError, match="dict of arrays"):
        collect(ds.map(lambda d: d["x"]))
    with pytest.raises(ConfigError, match=r"first \(sample\) axis"):
        collect(ds.map(lambda d: {"x": d["x"][:1]}))
    with pytest.raises(ConfigError):
        ds.map("not callable")  # type: ignore[arg-type]


def test_fingerprint(tmp_path: Path, data: dict[str, np.ndarray]) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, **data)
    a = Dataset.from_npz(path)
    b = Dataset.from_arrays(
        {"x": data["x"], "ids": data["ids"]},
        labels=data["labels"],
        meta={"slice": data["meta_slice"]},
    )
    assert a.fingerprint() == b.fingerprint(batch_size=3) == a.fingerprint(batch_size=1)
    assert a.fingerprint() != a.take(5).fingerprint()
    assert b.fingerprint() != b.map(lambda d: {"x": d["x"] * 2, "ids": d["ids"]}).fingerprint()


def test_caller_arrays_are_never_mutated(data: dict[str, np.ndarray]) -> None:
    x = data["x"].astype(np.float64)
    ids = data["ids"].astype(np.int32)
    labels = data["labels"].copy()
    for arr in (x, ids, labels):
        arr.flags.writeable = False
    before = {"x": x.copy(), "ids": ids.copy(), "labels": labels.copy()}
    ds = Dataset.from_arrays({"x": x, "ids": ids}, labels=labels)
    bound = ds.take(8, seed=3).map(lambda d: {"x": d["x"] * 2, "ids": d["ids"]})
    bound = bound.bind([spec("x", F32, ("N", 3, 4)), spec("ids", I64, ("N", 5))])
    collect(bound, 3, require_finite=True)
    bound.fingerprint()
    for batch in collect(ds, 4):
        assert not batch.inputs["x"].flags.writeable  # views of caller data are read-only
        with pytest.raises(ValueError):
            batch.inputs["x"][0] = 0.0
    with pytest.raises(ValueError):
        collect(ds.map(_in_place))
    np.testing.assert_array_equal(x, before["x"])
    np.testing.assert_array_equal(ids, before["ids"])
    np.testing.assert_array_equal(labels, before["labels"])

    writable = data["x"].copy()
    reference = writable.copy()
    ds = Dataset.from_arrays(writable)
    for batch in collect(ds, 4):
        assert not batch.inputs[UNNAMED].flags.writeable
    assert writable.flags.writeable  # our read-only views leave the caller's flag alone
    np.testing.assert_array_equal(writable, reference)


def _in_place(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    inputs["x"] *= 2
    return inputs
