"""The metric registry, the evaluator, parameter bytes and the results schema migration."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

import quantscope as qs
import tinymodels
from quantscope.analysis.evaluate import Evaluator, predict
from quantscope.analysis.params import parameter_bytes
from quantscope.analysis.quality import METRICS, Metric, quality, resolve_metric
from quantscope.analysis.results import SCHEMA_VERSION, Results
from quantscope.analysis.robustness.data import robustness_metric
from quantscope.errors import ConfigError, DataError
from quantscope.reporting import load_results


def test_every_registered_metric_says_which_way_is_better_and_resolves() -> None:
    assert {"accuracy", "top5", "agreement", "kl", "cosine", "cosine_min", "sqnr_db", "max_abs", "mean_abs"} <= set(METRICS)
    for name, spec in METRICS.items():
        m = resolve_metric(name, has_labels=True)
        assert m == Metric(name, spec.higher_is_better)
    assert {n for n, s in METRICS.items() if not s.higher_is_better} == {"kl", "max_abs", "mean_abs"}


def test_class_indices_score_like_class_scores() -> None:
    rng = np.random.default_rng(0)
    scores = rng.standard_normal((50, 4)).astype(np.float32)
    other = scores + rng.standard_normal(scores.shape).astype(np.float32)
    labels = rng.integers(0, 4, 50)
    from_scores = quality([scores], [other], labels)
    idx_ref, idx_out = scores.argmax(1).astype(np.int64), other.argmax(1).astype(np.int64)
    from_indices = quality([idx_ref], [idx_out], labels)
    assert from_indices["accuracy"] == pytest.approx(from_scores["accuracy"])
    assert from_indices["agreement"] == pytest.approx(from_scores["agreement"])
    assert "cosine" not in from_indices  # fidelity of floating-point outputs only


def test_a_metric_that_cannot_be_computed_is_a_data_error() -> None:
    with pytest.raises(DataError, match="cannot be computed"):
        Metric("top5").score([np.zeros((4, 3), np.float32)], [np.zeros((4, 3), np.float32)], np.zeros(4, np.int64))


def test_robustness_refuses_a_metric_where_lower_is_better() -> None:
    assert robustness_metric("sqnr_db", has_labels=False).name == "sqnr_db"
    with pytest.raises(ConfigError, match="higher is better"):
        robustness_metric("max_abs", has_labels=False)


def test_the_evaluator_runs_arrays_and_datasets_alike(tmp_path: Path) -> None:
    path = tmp_path / "mlp.onnx"
    onnx.save(tinymodels.mlp(), path)
    model = qs.load(path)
    x = np.random.default_rng(0).standard_normal((37, 64)).astype(np.float32)
    ev = Evaluator(model, batch_size=8)
    (a,) = ev.run({"x": x})
    (b,) = ev.predict(qs.Dataset.from_arrays({"x": x}))
    (c,) = predict(model, qs.Dataset.from_arrays({"x": x}), batch_size=32)
    assert a.shape[0] == 37
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(a, c, rtol=1e-5, atol=1e-5)


def test_parameter_bytes_use_numpy_names(tmp_path: Path) -> None:
    path = tmp_path / "mlp.onnx"
    onnx.save(tinymodels.mlp(), path)
    model = qs.load(path)
    pb = parameter_bytes(model)
    assert set(pb) == {"float32"} and pb["float32"] == sum(model.parameter_bytes().values())


def test_a_version_1_results_file_is_migrated(tmp_path: Path) -> None:
    v1 = {
        "schema": "quantscope.results", "schema_version": 1,
        "model": {"name": "m"}, "data": {"samples": 3}, "metric": "accuracy", "max_drop": 0.1,
        "variants": [
            {"name": "float", "kind": "float", "path": None, "method": None, "config": None, "size_bytes": 100,
             "param_bytes": {"float": 90}, "quality": {"accuracy": 0.9}},
            {"name": "q", "kind": "onnx", "path": None, "method": "dynamic-int8", "config": None, "size_bytes": 40,
             "param_bytes": {"int8": 20, "float": 8, "float32": 2}, "quality": {"accuracy": 0.88}},
        ],
    }
    (tmp_path / "results.json").write_text(json.dumps(v1))
    r = load_results(tmp_path)
    assert r.objective == "size"
    assert r.variant("float").param_bytes == {"float32": 90}
    assert r.variant("q").param_bytes == {"int8": 20, "float32": 10}
    again = r.to_dict()
    assert again["schema_version"] == SCHEMA_VERSION == 4
    assert Results.from_dict(again) == r
    for bad in (0, True, "1"):
        with pytest.raises(ConfigError, match="version"):
            Results.from_dict({**v1, "schema_version": bad})
