"""Tests of quantscope.data: sources, batching, subsets, binding and data checks."""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quantscope.data import UNNAMED, Batch, Dataset
from quantscope.errors import (
    ConfigError,
    DataError,
    DataMismatchError,
    EmptyDatasetError,
    NonFiniteDataError,
)
from quantscope.specs import TensorSpec

F32 = np.dtype(np.float32)
I64 = np.dtype(np.int64)


def spec(name: str, dtype: np.dtype, shape: tuple | None) -> TensorSpec:
    return TensorSpec(name, np.dtype(dtype), shape)


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


# ---------------------------------------------------------------------------
# Sources round-trip.


def test_from_arrays_round_trip(data: dict[str, np.ndarray]) -> None:
    ds = Dataset.from_arrays(
        {"x": data["x"], "ids": data["ids"]},
        labels=data["labels"],
        meta={"slice": data["meta_slice"]},
    )
    assert_round_trip(ds, data)


def test_from_npz_round_trip(tmp_path: Path, data: dict[str, np.ndarray]) -> None:
    path = tmp_path / "calib.npz"
    np.savez_compressed(path, **data)
    assert_round_trip(Dataset.from_npz(path), data)


def test_from_npz_meta_keys_and_no_labels(tmp_path: Path, data: dict[str, np.ndarray]) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, x=data["x"], ids=data["ids"], group=data["labels"])
    ds = Dataset.from_npz(path, meta_keys=["group"])
    assert ds.input_names == ("x", "ids")
    assert ds.labels is None
    np.testing.assert_array_equal(ds.meta["group"], data["labels"])
    assert collect(ds)[0].labels is None


def test_from_npz_accepts_memory_mapped_npy(tmp_path: Path, data: dict[str, np.ndarray]) -> None:
    path = tmp_path / "x.npy"
    np.save(path, data["x"])
    ds = Dataset.from_npz(path)
    assert ds.input_names == (UNNAMED,)
    got = stacked(collect(ds, 3))[UNNAMED]
    np.testing.assert_array_equal(got, data["x"])
    assert all(not isinstance(b.inputs[UNNAMED], np.memmap) for b in collect(ds, 3))


def test_from_folder_round_trip(tmp_path: Path, data: dict[str, np.ndarray]) -> None:
    write_folder(tmp_path / "f", data, [3, 0, 4, 1, 2])
    (tmp_path / "f" / "README.txt").write_text("ignored")
    ds = Dataset.from_folder(tmp_path / "f")
    assert_round_trip(ds, data)


def test_from_folder_order_is_sorted_and_pattern_selects(
    tmp_path: Path, data: dict[str, np.ndarray]
) -> None:
    root = tmp_path / "f"
    root.mkdir()
    # written in reverse order: the dataset still follows sorted file names
    for i in reversed(range(10)):
        np.savez(root / f"s{i:02d}.npz", **{k: v[i : i + 1] for k, v in data.items()})
    np.savez(root / "other.npz", x=data["x"][:1])
    ds = Dataset.from_folder(root, pattern="s*.npz")
    assert_round_trip(ds, data)


def test_from_folder_of_npy_files(tmp_path: Path, data: dict[str, np.ndarray]) -> None:
    root = tmp_path / "f"
    root.mkdir()
    np.save(root / "a.npy", data["x"][:6])
    np.save(root / "b.npy", data["x"][6:])
    ds = Dataset.from_folder(root)
    assert len(ds) == 10
    assert ds.input_names == (UNNAMED,)
    bound = ds.bind([spec("image", F32, ("N", 3, 4))])
    got = stacked(collect(bound, 4))["image"]
    np.testing.assert_array_equal(got, data["x"])


def test_from_folder_streams_file_by_file(tmp_path: Path, data: dict[str, np.ndarray]) -> None:
    root = tmp_path / "f"
    write_folder(root, data, [5, 5])
    ds = Dataset.from_folder(root)
    # break the second file after the headers were read: the first file still streams
    (root / "part_001.npz").write_bytes(b"garbage")
    first = ds.take(5, seed=None)
    np.testing.assert_array_equal(stacked(collect(first, 2))["x"], data["x"][:5])
    with pytest.raises(DataError, match=r"part_001\.npz"):
        collect(ds, 2)


def test_from_folder_errors(tmp_path: Path, data: dict[str, np.ndarray]) -> None:
    with pytest.raises(DataError, match="does not exist"):
        Dataset.from_folder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(EmptyDatasetError, match=r"no \.npz or \.npy"):
        Dataset.from_folder(tmp_path / "empty")

    mixed = tmp_path / "mixed"
    write_folder(mixed, data, [10])
    np.save(mixed / "z.npy", data["x"])
    with pytest.raises(DataError, match=r"mixes \.npz and \.npy"):
        Dataset.from_folder(mixed)

    keys = tmp_path / "keys"
    keys.mkdir()
    np.savez(keys / "a.npz", x=data["x"][:5], ids=data["ids"][:5])
    np.savez(keys / "b.npz", x=data["x"][5:])
    with pytest.raises(DataMismatchError, match=r"b\.npz does not match .*a\.npz"):
        Dataset.from_folder(keys)

    lengths = tmp_path / "lengths"
    lengths.mkdir()
    np.savez(lengths / "a.npz", x=data["x"][:5], ids=data["ids"][:4])
    with pytest.raises(DataMismatchError, match="different numbers of samples"):
        Dataset.from_folder(lengths)

    zero = tmp_path / "zero"
    zero.mkdir()
    np.savez(zero / "a.npz", x=data["x"][:0])
    with pytest.raises(EmptyDatasetError):
        Dataset.from_folder(zero)

    (mixed / "notes.txt").write_text("not data")
    with pytest.raises(ConfigError, match=r"neither \.npz nor"):
        Dataset.from_folder(mixed, pattern="*")


def test_from_iterable_samples_batches_and_callables(data: dict[str, np.ndarray]) -> None:
    samples = [
        {"x": data["x"][i], "ids": data["ids"][i], "labels": data["labels"][i],
         "meta_slice": data["meta_slice"][i]}
        for i in range(10)
    ]  # fmt: skip
    assert_round_trip(Dataset.from_iterable(samples), data)
    assert_round_trip(Dataset.from_iterable(tuple(samples)), data)

    chunks = [{k: v[lo : lo + 4] for k, v in data.items()} for lo in (0, 4, 8)]
    assert_round_trip(Dataset.from_iterable(chunks, batched=True), data)

    def factory() -> object:
        return iter(samples)

    lazy = Dataset.from_iterable(factory)
    assert lazy.num_samples is None
    with pytest.raises(TypeError, match="unknown"):
        len(lazy)
    assert set(lazy.input_names) == {"x", "ids"}
    np.testing.assert_array_equal(lazy.labels, data["labels"])
    a, b = collect(lazy, 3), collect(lazy, 3)
    assert_same_batches(a, b)
    assert_same_batches(a, collect(Dataset.from_iterable(samples), 3))


def test_from_iterable_bare_arrays(data: dict[str, np.ndarray]) -> None:
    ds = Dataset.from_iterable(list(data["x"]))
    assert ds.input_names == (UNNAMED,)
    assert len(ds) == 10
    np.testing.assert_array_equal(stacked(collect(ds, 3))[UNNAMED], data["x"])


def test_one_shot_iterators_are_rejected(data: dict[str, np.ndarray]) -> None:
    def gen() -> object:
        yield from data["x"]

    with pytest.raises(ConfigError, match="pass a list, or a callable"):
        Dataset.from_iterable(gen())
    with pytest.raises(ConfigError, match="one-shot"):
        Dataset.from_iterable(iter([data["x"][0]]))
    # a generator *function* is a fine factory
    assert len(collect(Dataset.from_iterable(gen), 4)) == 3

    same = gen()
    reused = Dataset.from_iterable(lambda: same)
    assert reused.input_names == (UNNAMED,)  # a peek: the first call
    with pytest.raises(ConfigError, match="fresh iterator"):
        collect(reused)
    shared = iter([data["x"][0]])  # list iterators take no weak references
    exhausted = Dataset.from_iterable(lambda: shared)
    collect(exhausted)
    with pytest.raises(DataError, match="fresh iterator"):
        collect(exhausted)
    with pytest.raises(ConfigError, match="from_arrays"):
        Dataset.from_iterable(data["x"])


def test_from_iterable_inconsistent_keys_name_the_element(data: dict[str, np.ndarray]) -> None:
    samples = [{"x": data["x"][0]}, {"x": data["x"][1]}, {"y": data["x"][2]}]
    with pytest.raises(DataMismatchError, match="element 2"):
        Dataset.from_iterable(samples)
    with pytest.raises(DataMismatchError, match="element 2"):
        collect(Dataset.from_iterable(lambda: iter(samples)))


# ---------------------------------------------------------------------------
# Batching and subsets.


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


# ---------------------------------------------------------------------------
# bind.


def test_bind_names_a_bare_array(data: dict[str, np.ndarray]) -> None:
    ds = Dataset.from_arrays(data["x"]).bind([spec("pixels", F32, ("batch", 3, 4))])
    assert ds.input_names == ("pixels",)
    np.testing.assert_array_equal(stacked(collect(ds))["pixels"], data["x"])


def test_bind_bare_array_with_several_model_inputs(data: dict[str, np.ndarray]) -> None:
    specs = [spec("a", F32, ("N", 3, 4)), spec("b", I64, ("N", 5))]
    with pytest.raises(DataMismatchError) as info:
        Dataset.from_arrays(data["x"]).bind(specs)
    message = str(info.value)
    assert "single unnamed array" in message and "2 inputs" in message
    assert "a: float32[N, 3, 4]" in message and "b: int64[N, 5]" in message


def test_bind_missing_and_extra_names(data: dict[str, np.ndarray]) -> None:
    ds = Dataset.from_arrays({"x": data["x"], "ids": data["ids"]})
    specs = [spec("x", F32, ("N", 3, 4)), spec("token_ids", I64, ("N", 5))]
    with pytest.raises(DataMismatchError) as info:
        ds.bind(specs)
    message = str(info.value)
    assert "['token_ids']" in message  # missing
    assert "'ids'" in message and "'x'" in message  # what the data has
    assert "token_ids: int64[N, 5]" in message  # the model's specs

    with pytest.raises(DataMismatchError, match=r"\['ids'\] that the model does not take"):
        ds.bind([spec("x", F32, ("N", 3, 4))])
    # labels and metadata never count as extra inputs
    with_labels = Dataset.from_arrays(
        {"x": data["x"]}, labels=data["labels"], meta={"s": data["labels"]}
    )
    assert with_labels.bind([spec("x", F32, ("N", 3, 4))]).input_names == ("x",)


def test_bind_shape_mismatches(data: dict[str, np.ndarray]) -> None:
    ds = Dataset.from_arrays({"x": data["x"]})
    with pytest.raises(DataMismatchError) as info:
        ds.bind([spec("x", F32, ("N", 3, 5))])
    message = str(info.value)
    assert "'x'" in message and "(3, 4)" in message and "(3, 5)" in message
    with pytest.raises(DataMismatchError, match="rank mismatch"):
        ds.bind([spec("x", F32, ("N", 12))])
    # symbolic and unknown dims accept anything; unknown rank accepts any rank
    assert ds.bind([spec("x", F32, ("N", "c", None))]).input_names == ("x",)
    assert ds.bind([spec("x", F32, None)]).input_names == ("x",)


def test_bind_checks_later_samples_while_streaming() -> None:
    samples = [np.zeros((3,), np.float32)] * 5 + [np.zeros((4,), np.float32)]
    bound = Dataset.from_iterable(samples).bind([spec("x", F32, ("N", 3))])
    batches = bound.batches(1)
    for _ in range(5):
        next(batches)
    with pytest.raises(DataMismatchError, match=r"sample 5 .*\(4,\).*\(3,\)"):
        next(batches)


def test_bind_fixed_batch_dimension(data: dict[str, np.ndarray]) -> None:
    bound = Dataset.from_arrays({"x": data["x"]}).bind([spec("x", F32, (1, 3, 4))])
    assert len(collect(bound, 1)) == 10
    with pytest.raises(DataMismatchError, match="fixed batch size of 1"):
        collect(bound, 4)


def test_bind_dtypes(data: dict[str, np.ndarray], caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(DataMismatchError) as info:
        Dataset.from_arrays({"x": data["x"].astype(np.float16)}).bind([spec("x", F32, None)])
    assert "float32" in str(info.value) and "float16" in str(info.value)
    assert "astype(np.float32)" in str(info.value)
    with pytest.raises(DataMismatchError, match=r"astype\(np.int64\)"):
        Dataset.from_arrays({"ids": data["ids"].astype(np.float32)}).bind([spec("ids", I64, None)])

    wide = {"x": data["x"].astype(np.float64), "ids": data["ids"].astype(np.int32)}
    with caplog.at_level(logging.WARNING, logger="quantscope.data"):
        bound = Dataset.from_arrays(wide).bind([spec("x", F32, None), spec("ids", I64, None)])
        batches = collect(bound, 3)
    assert all(b.inputs["x"].dtype == F32 and b.inputs["ids"].dtype == I64 for b in batches)
    np.testing.assert_array_equal(stacked(batches)["x"], data["x"])
    np.testing.assert_array_equal(stacked(batches)["ids"], data["ids"])
    warnings = [r for r in caplog.records if r.name == "quantscope.data"]
    assert len(warnings) == 2  # one per converted input, not one per batch

    huge = np.ones((4, 2)) * np.array([[1.0], [1.0], [1e300], [1.0]])
    bound = Dataset.from_arrays(huge).bind([spec("x", F32, ("N", 2))])
    with pytest.raises(DataMismatchError, match=r"sample 2 .*float32 range"):
        collect(bound, 4)


def test_bind_argument_errors(data: dict[str, np.ndarray]) -> None:
    ds = Dataset.from_arrays({"x": data["x"]})
    with pytest.raises(ConfigError):
        ds.bind([])
    with pytest.raises(ConfigError, match="repeat"):
        ds.bind([spec("x", F32, None), spec("x", F32, None)])


# ---------------------------------------------------------------------------
# map, finiteness, fingerprint.


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


def test_nan_detection_names_the_sample(data: dict[str, np.ndarray]) -> None:
    x = data["x"].copy()
    x[6, 0, :3] = np.nan
    x[6, 1, 0] = np.inf
    ds = Dataset.from_arrays({"x": x, "ids": data["ids"]}, labels=np.arange(10))
    assert len(collect(ds)) == 3  # unchecked by default
    with pytest.raises(NonFiniteDataError) as info:
        collect(ds, 4, require_finite=True)
    message = str(info.value)
    assert "'x'" in message and "sample 6" in message
    assert "3 NaN" in message and "1 infinite" in message
    with pytest.raises(NonFiniteDataError, match="sample 6"):
        ds.check_finite()

    sub = next(s for s in (ds.take(4, seed=k) for k in range(100)) if 6 in s.labels)
    position = int(np.flatnonzero(sub.labels == 6)[0])
    with pytest.raises(NonFiniteDataError, match=rf"sample {position} \(sample 6 of the source\)"):
        collect(sub, 2, require_finite=True)

    clean = Dataset.from_arrays({"x": data["x"], "ids": data["ids"]})
    clean.check_finite()
    with pytest.raises(NonFiniteDataError, match="sample 0"):
        clean.map(lambda d: {"x": d["x"] * np.inf, "ids": d["ids"]}).check_finite()


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


# ---------------------------------------------------------------------------
# Bad files, empty data, caller data.


def test_bad_npz_files(tmp_path: Path, data: dict[str, np.ndarray]) -> None:
    with pytest.raises(DataError, match="does not exist"):
        Dataset.from_npz(tmp_path / "missing.npz")
    good = tmp_path / "good.npz"
    np.savez_compressed(good, **data)
    raw = good.read_bytes()
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match=r"truncated\.npz.*not a valid"):
        Dataset.from_npz(truncated)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"this is not numpy data at all")
    with pytest.raises(DataError, match=r"garbage\.npz"):
        Dataset.from_npz(garbage)
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match=r"empty\.npz"):
        Dataset.from_npz(empty)
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "a.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match=r"a\.npz"):
        Dataset.from_folder(folder)
    lengths = tmp_path / "lengths.npz"
    np.savez(lengths, x=data["x"], ids=data["ids"][:7])
    with pytest.raises(DataMismatchError, match="different numbers of samples"):
        Dataset.from_npz(lengths)


def test_empty_datasets(tmp_path: Path, data: dict[str, np.ndarray]) -> None:
    with pytest.raises(EmptyDatasetError):
        Dataset.from_arrays(data["x"][:0])
    path = tmp_path / "empty.npz"
    np.savez(path, x=data["x"][:0])
    with pytest.raises(EmptyDatasetError):
        Dataset.from_npz(path)
    with pytest.raises(EmptyDatasetError):
        Dataset.from_iterable([])
    lazy = Dataset.from_iterable(lambda: iter([]))
    with pytest.raises(EmptyDatasetError):
        collect(lazy)
    with pytest.raises(EmptyDatasetError):
        lazy.bind([spec("x", F32, None)])


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


def test_constructor_and_argument_errors(data: dict[str, np.ndarray]) -> None:
    with pytest.raises(ConfigError):
        Dataset("nope")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="from_iterable"):
        Dataset.from_arrays([data["x"][0], data["x"][1]])  # type: ignore[arg-type]
    with pytest.raises(DataMismatchError, match="different numbers of samples"):
        Dataset.from_arrays({"x": data["x"]}, labels=data["labels"][:3])
    with pytest.raises(DataMismatchError, match="scalar"):
        Dataset.from_arrays({"x": np.float32(1.0)})
    assert "samples=10" in repr(Dataset.from_arrays(data["x"]))
