"""Tests of the data sources: arrays, .npz files, folders, iterables, bad and empty data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from data_helpers import (
    F32,
    assert_round_trip,
    assert_same_batches,
    collect,
    spec,
    stacked,
    write_folder,
)

from quantscope.data import UNNAMED, Dataset
from quantscope.errors import ConfigError, DataError, DataMismatchError, EmptyDatasetError


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


# ---------------------------------------------------------------------------
# from_path: the source picked by the kind of path.


def test_from_path_picks_the_source_by_kind(tmp_path: Path, data: dict[str, np.ndarray]) -> None:
    npz = tmp_path / "calib.npz"
    np.savez(npz, **data)
    assert_same_batches(collect(Dataset.from_path(npz), 3), collect(Dataset.from_npz(npz), 3))
    assert_round_trip(Dataset.from_path(str(npz)), data)
    upper = tmp_path / "CALIB.NPZ"
    upper.write_bytes(npz.read_bytes())
    assert_round_trip(Dataset.from_path(upper), data)

    npy = tmp_path / "x.npy"
    np.save(npy, data["x"])
    ds = Dataset.from_path(npy)
    assert ds.input_names == (UNNAMED,)
    np.testing.assert_array_equal(stacked(collect(ds, 4))[UNNAMED], data["x"])

    folder = tmp_path / "f"
    write_folder(folder, data, [4, 6])
    assert_round_trip(Dataset.from_path(folder), data)
    np.savez(folder / "other.npz", x=data["x"][:1])
    assert_round_trip(Dataset.from_path(folder, pattern="part_*.npz"), data)

    np.savez(tmp_path / "g.npz", x=data["x"], ids=data["ids"], group=data["labels"])
    ds = Dataset.from_path(tmp_path / "g.npz", meta_keys=["group"], labels_key=None)
    assert ds.input_names == ("x", "ids") and ds.labels is None
    np.testing.assert_array_equal(ds.meta["group"], data["labels"])


def test_from_path_refuses_unknown_kinds(tmp_path: Path, data: dict[str, np.ndarray]) -> None:
    csv = tmp_path / "calib.csv"
    csv.write_text("1,2,3\n")
    with pytest.raises(DataError) as info:
        Dataset.from_path(csv)
    message = str(info.value)
    assert "'.csv'" in message and "calib.csv" in message
    assert ".npz" in message and ".npy" in message and "folder" in message
    bare = tmp_path / "calib"
    bare.write_text("data")
    with pytest.raises(DataError, match=r"no suffix"):
        Dataset.from_path(bare)

    with pytest.raises(DataError, match=r"missing\.npz does not exist"):
        Dataset.from_path(tmp_path / "missing.npz")
    with pytest.raises(DataError, match=r"nowhere does not exist"):
        Dataset.from_path(tmp_path / "nowhere")

    npz = tmp_path / "d.npz"
    np.savez(npz, **data)
    with pytest.raises(ConfigError, match=r"\['pattern'\] do not apply to a \.npz file"):
        Dataset.from_path(npz, pattern="*.npz")
    with pytest.raises(ConfigError, match=r"\['batched'\] do not apply to a folder"):
        Dataset.from_path(tmp_path, batched=True)
