"""tflite.add_to_results adds its rows to the Results it is given (and returns it); a failure
adds none. The TFLite measurement itself is replaced here: test_tflite.py runs the real one."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

import quantscope as qs
import tinymodels
from quantscope.analysis.compare import AnalysisOptions
from quantscope.analysis.results import VariantResult
from quantscope.backends import tflite
from quantscope.errors import ConfigError

OPTIONS = AnalysisOptions(latency=False, memory=False, energy=False, layers=False, sensitivity=0)


def fake_measure(variant: Any, data: Any, **_: Any) -> tuple[VariantResult, list[np.ndarray]]:
    if variant.name == "tflite-broken":
        raise ConfigError("cannot run it")
    row = VariantResult(name=variant.name, kind="tflite", path=None, method=None, config=None, size_bytes=10,
                        param_bytes={}, quality={"agreement": 1.0})
    return row, []


def test_rows_are_added_in_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tflite, "measure", fake_measure)
    model = qs.load(tinymodels.save(tinymodels.mlp(), tmp_path / "m.onnx"))
    x = np.random.default_rng(0).standard_normal((16, 64)).astype(np.float32)
    results = qs.analyze(model, {}, x, options=OPTIONS)  # in-memory data: a NumPy array
    variants = [SimpleNamespace(name="tflite-dynamic"), SimpleNamespace(name="tflite-float16")]
    returned = tflite.add_to_results(results, model, variants, {"x": x}, options=OPTIONS)
    assert returned is results
    assert [v.name for v in results.variants] == ["float", "tflite-dynamic", "tflite-float16"]
    with pytest.raises(ConfigError, match="cannot run it"):
        tflite.add_to_results(results, model, [SimpleNamespace(name="tflite-int8"),
                                               SimpleNamespace(name="tflite-broken")], x, options=OPTIONS)
    assert len(results.variants) == 3  # nothing half-added
    with pytest.raises(ConfigError, match="already have a variant"):
        tflite.add_to_results(results, model, [SimpleNamespace(name="tflite-float16")], x, options=OPTIONS)
