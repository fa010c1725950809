"""Tests of Dataset.bind: names, shapes and dtypes against the model's input specs."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from data_helpers import F32, I64, collect, spec, stacked

from quantscope.data import Dataset
from quantscope.errors import ConfigError, DataMismatchError


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


def test_bind_missing_and_extra_names(
    data: dict[str, np.ndarray], caplog: pytest.LogCaptureFixture
) -> None:
    ds = Dataset.from_arrays({"x": data["x"], "ids": data["ids"]})
    specs = [spec("x", F32, ("N", 3, 4)), spec("token_ids", I64, ("N", 5))]
    with pytest.raises(DataMismatchError) as info:
        ds.bind(specs)
    message = str(info.value)
    assert "['token_ids']" in message  # missing
    assert "'ids'" in message and "'x'" in message  # what the data has
    assert "token_ids: int64[N, 5]" in message  # the model's specs

    with caplog.at_level(logging.WARNING, logger="quantscope.data"):
        ignored = ds.bind([spec("x", F32, ("N", 3, 4))])  # extra data: ignored, with a warning
    assert ignored.input_names == ("x",)
    assert all(set(b.inputs) == {"x"} for b in collect(ignored))
    np.testing.assert_array_equal(stacked(collect(ignored))["x"], data["x"])
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "['ids']" in warned[0] and "does not take" in warned[0]
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
    # batches shrink to the model's fixed batch size, with no option and no error
    for batch_size in (4, 64):
        batches = collect(bound, batch_size)
        assert [b.size for b in batches] == [1] * 10
        assert all(b.inputs["x"].shape == (1, 3, 4) for b in batches)
        np.testing.assert_array_equal(stacked(batches)["x"], data["x"])
    # a fixed batch of 2 takes exactly 2 samples per run, whatever was asked
    two = Dataset.from_arrays({"x": data["x"]}).bind([spec("x", F32, (2, 3, 4))])
    for batch_size in (1, 3, 16):
        assert [b.size for b in collect(two, batch_size)] == [2] * 5
    odd = Dataset.from_arrays({"x": data["x"][:9]}).bind([spec("x", F32, (2, 3, 4))])
    with pytest.raises(
        DataMismatchError, match=r"fixed batch size of 2 .*sample 8 holds 1 samples"
    ):
        collect(odd, 4)


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
    warnings = [r for r in caplog.records if r.name.startswith("quantscope.data")]
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
