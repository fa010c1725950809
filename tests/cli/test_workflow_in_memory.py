"""Data as users hold it, at every public entry: NumPy arrays, dicts, feed lists, a torch Dataset;
a wrong kind is one clear DataError."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import quantscope as qs
import tinymodels
from quantscope.analysis.compare import AnalysisOptions
from quantscope.analysis.robustness import robustness

OPTIONS = AnalysisOptions(latency=False, memory=False, energy=False, layers=False, sensitivity=0)


@pytest.fixture
def model(tmp_path: Path) -> qs.Model:
    return qs.load(tinymodels.save(tinymodels.mlp(), tmp_path / "m.onnx"))


@pytest.fixture
def arrays() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.standard_normal((24, 64)).astype(np.float32), rng.integers(0, 10, 24)


def test_analyze_takes_arrays_dicts_feeds_and_torch(model: qs.Model, arrays: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = arrays
    q = qs.quantize(model, qs.DynamicInt8())
    by_array = qs.analyze(model, {"d": q}, x, options=OPTIONS)
    by_dict = qs.analyze(model, {"d": q}, {"x": x, "labels": y}, options=OPTIONS)
    by_feeds = qs.analyze(model, {"d": q}, [{"x": row} for row in x], options=OPTIONS)
    by_torch = qs.analyze(model, {"d": q}, torch.utils.data.TensorDataset(torch.from_numpy(x)), options=OPTIONS)
    agreement = by_array.variant("d").quality["agreement"]
    for other in (by_feeds, by_torch):
        assert other.variant("d").quality["agreement"] == pytest.approx(agreement)
    assert "accuracy" in by_dict.variant("d").quality
    with pytest.raises(qs.DataError, match=r"cannot use a builtins\.int as evaluation data"):
        qs.analyze(model, {"d": q}, 42, options=OPTIONS)


def test_sweep_tune_and_robustness_take_arrays(model: qs.Model, arrays: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = arrays
    swept = qs.sweep(model, x[:8], {"x": x, "labels": y}, methods=["dynamic-int8", "static-int8"], options=OPTIONS)
    assert {"dynamic-int8", "static-int8/minmax"} <= {v.name for v in swept.variants}
    best = qs.tune(model, x[:8], x, max_drop=0.5, methods=["dynamic-int8"])
    assert best.name == "dynamic-int8"
    rob = robustness(model, {"d": qs.quantize(model, qs.DynamicInt8()).model}, {"x": x, "labels": y},
                     modality="tabular", severities=(0.0, 1.0), calibration_sizes=None)
    assert rob.samples == 24
