"""Evaluation data checks (issue 15): NaN/inf named by input and sample; labels named and explained."""

from __future__ import annotations

import numpy as np
import pytest
from data_helpers import F32, collect, spec

import quantscope as qs
from quantscope.data import Dataset
from quantscope.data.labels import check_labels


def test_non_finite_evaluation_data_names_the_input_and_sample() -> None:
    x = np.zeros((6, 3), np.float32)
    x[4, 1] = np.nan
    ds = Dataset.from_arrays({"x": x}).require_finite("evaluation")
    with pytest.raises(qs.NonFiniteDataError) as info:
        collect(ds.bind([spec("x", F32, ("N", 3))]), 2)
    message = str(info.value)
    assert "input 'x': sample 4 holds 1 NaN and 0 infinite value(s)" in message
    assert "Evaluation needs finite data" in message
    bound_first = Dataset.from_arrays({"x": x}).bind([spec("x", F32, ("N", 3))]).require_finite()
    with pytest.raises(qs.NonFiniteDataError, match="sample 4"):
        collect(bound_first, 4)
    clean = Dataset.from_arrays({"x": np.ones((6, 3), np.float32)}).require_finite()
    assert len(collect(clean, 4)) == 2
    with pytest.raises(qs.ConfigError, match="purpose must be one of"):
        clean.require_finite("training")


def test_calibration_message_is_unchanged() -> None:
    x = np.full((2, 3), np.inf, np.float32)
    with pytest.raises(qs.NonFiniteDataError, match="Calibration needs finite data"):
        collect(Dataset.from_arrays(x), 2, require_finite=True)


def test_good_labels_become_int64_class_indices() -> None:
    np.testing.assert_array_equal(check_labels(np.array([0, 2, 1], np.int32), 3), [0, 2, 1])
    assert check_labels(np.array([[1], [0]]), 2).shape == (2,)
    assert check_labels(np.array([True, False]), 2).dtype == np.int64
    tokens = check_labels(np.zeros((2, 5), np.int64), 4, sample_shape=(5,))
    assert tokens.shape == (2, 5)


@pytest.mark.parametrize(
    ("labels", "num_classes", "pattern"),
    [
        (np.array([0, 3, 10, 2]), 10, r"1 sample\(s\) out of range \(sample 2: 10, the labels span 0\.\.10\); the model scores 10 classes, so labels must lie in 0\.\.9"),
        (np.array([0, -1]), 3, r"out of range \(sample 1: -1"),
        (np.array([0.0, 1.0]), 2, r"are float64 numbers.*labels\.astype\(np\.int64\)"),
        (np.array([0.2, 0.8]), 2, r"not whole numbers \(sample 0: 0\.2\).*Scores or probabilities are not labels"),
        (np.array([0.0, np.nan]), 2, r"not whole numbers \(sample 1"),
        (np.eye(3, dtype=np.int64), 3, r"shape \(3, 3\) \(\(3,\) per sample\); expected integer class indices, one per sample.*argmax"),
        (np.array(["cat", "dog"]), 2, r"are text \('cat', 'dog', \.\.\.\).*np\.unique\(labels, return_inverse=True\)"),
        (np.array(3), 2, r"a single value"),
    ],
)
def test_bad_labels_are_named_with_what_is_expected(labels: np.ndarray, num_classes: int, pattern: str) -> None:
    with pytest.raises(qs.DataError, match=pattern) as info:
        check_labels(labels, num_classes, what="the labels of eval.npz")
    assert str(info.value).startswith("the labels of eval.npz")
    assert info.value.exit_code == 3
