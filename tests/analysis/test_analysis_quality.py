"""Quality numbers: the new pure-NumPy metrics, and quality() against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from quantscope.analysis.quality import Metric, quality, resolve_metric
from quantscope.errors import ConfigError, DataError
from quantscope.numerics.metrics import accuracy, kl_divergence, softmax, topk_accuracy


def test_softmax_rows_sum_to_one_and_are_shift_invariant() -> None:
    x = np.array([[1.0, 2.0, 3.0], [1000.0, 1000.0, 1000.0]])
    p = softmax(x)
    np.testing.assert_allclose(p.sum(axis=-1), 1.0)
    np.testing.assert_allclose(p[1], [1 / 3] * 3)
    np.testing.assert_allclose(softmax(x[:1] + 50.0), p[:1])


def test_kl_against_a_hand_computation() -> None:
    ref = np.log(np.array([[0.5, 0.5]]))
    test = np.log(np.array([[0.9, 0.1]]))
    expected = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)
    assert kl_divergence(ref, test) == pytest.approx(expected)
    assert kl_divergence(ref, ref) == pytest.approx(0.0, abs=1e-12)


def test_accuracy_and_topk_by_hand() -> None:
    logits = np.array([[0.1, 0.5, 0.4], [0.9, 0.05, 0.05], [0.2, 0.3, 0.5], [0.3, 0.4, 0.3]])
    labels = np.array([1, 0, 1, 2])
    assert accuracy(logits, labels) == pytest.approx(2 / 4)
    # top-2 sets: {1,2}, {0,1 or 2}, {2,1}, {1,0 or 2}: rows 0, 1, 2 hold their label; row 3 ties 0/2
    assert topk_accuracy(logits, labels, 2) == pytest.approx(3 / 4)
    assert topk_accuracy(logits, labels, 3) == 1.0
    with pytest.raises(ConfigError, match="k="):
        topk_accuracy(logits, labels, 4)
    with pytest.raises(ConfigError, match="labels"):
        accuracy(logits, labels[:3])


def test_quality_numbers_match_a_hand_computation() -> None:
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((40, 6)).astype(np.float32)
    test = ref + rng.standard_normal((40, 6)).astype(np.float32) * 0.3
    labels = rng.integers(0, 6, 40)
    q = quality([ref], [test], labels)
    assert q["accuracy"] == pytest.approx(np.mean(test.argmax(1) == labels))
    assert q["agreement"] == pytest.approx(np.mean(test.argmax(1) == ref.argmax(1)))
    noise = np.sum((ref.astype(np.float64) - test) ** 2)
    assert q["sqnr_db"] == pytest.approx(10 * np.log10(np.sum(ref.astype(np.float64) ** 2) / noise))
    assert q["max_abs"] == pytest.approx(np.max(np.abs(ref - test)))
    assert q["mean_abs"] == pytest.approx(np.mean(np.abs(ref - test)), rel=1e-6)
    cos = np.sum(ref * test, 1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(test, axis=1)
    assert q["cosine"] == pytest.approx(np.mean(cos), rel=1e-6)
    assert q["cosine_min"] == pytest.approx(np.min(cos), rel=1e-6)
    assert q["top5"] == pytest.approx(topk_accuracy(test, labels, 5))
    assert q["kl"] > 0


def test_custom_metric_and_its_failures() -> None:
    ref = np.eye(3, dtype=np.float32)

    def margin(outputs: list[np.ndarray], labels: np.ndarray | None) -> float:
        return float(outputs[0].max())

    metric = resolve_metric(margin, has_labels=False)
    assert metric == Metric("margin", True, margin)
    assert quality([ref], [ref * 2], None, metric)["margin"] == 2.0
    broken = resolve_metric(lambda outputs, labels: 1 / 0, has_labels=False, name="broken")
    with pytest.raises(ConfigError, match="broken"):
        quality([ref], [ref], None, broken)


def test_metric_names_are_checked() -> None:
    assert resolve_metric("auto", has_labels=True).name == "accuracy"
    assert resolve_metric("auto", has_labels=False).name == "agreement"
    assert resolve_metric("kl", has_labels=False).higher_is_better is False
    with pytest.raises(ConfigError, match="unknown metric"):
        resolve_metric("acuracy", has_labels=True)
    with pytest.raises(DataError, match="needs labels"):
        resolve_metric("accuracy", has_labels=False)
