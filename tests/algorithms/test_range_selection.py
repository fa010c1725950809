"""static-int8's range choice: auto by default, model inputs never clipped, heavy clipping reported."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

import quantscope as qs
import tinymodels
from quantscope.config.calibration import Calibration


def _mlp(tmp_path) -> qs.Model:
    path = tmp_path / "mlp.onnx"
    onnx.save(tinymodels.mlp(), str(path))
    return qs.load(path)


def _heavy_tailed(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_t(1.5, size=(n, 64)).astype(np.float32)


def test_auto_is_the_default_and_never_clips_an_input(tmp_path) -> None:
    model = _mlp(tmp_path)
    name = model.inputs[0].name
    x = _heavy_tailed(256, 0)
    q = qs.quantize(model, qs.StaticInt8(smoothquant=False), qs.Dataset.from_arrays({name: x}))
    assert qs.StaticInt8().calibration == "auto"
    by_tensor = {t.tensor: t for t in q.plan.activations}
    lo, hi = by_tensor[name].range
    assert lo <= float(x.min()) and hi >= float(x.max()) * (1 - 1e-6)
    assert by_tensor[name].source == "calibrated:auto/minmax, model input"
    ranges = q.plan.extra["ranges"]
    assert ranges["protected_inputs"] == [name] and sum(ranges["rules"].values()) >= 2
    assert not any("saturates" in w for w in q.plan.warnings)


def test_an_explicit_calibrator_that_clips_an_input_is_reported(tmp_path) -> None:
    model = _mlp(tmp_path)
    name = model.inputs[0].name
    calib = qs.Dataset.from_arrays({name: _heavy_tailed(256, 1)})
    config = qs.StaticInt8(calibration="percentile", percentile=99.0, smoothquant=False, range_guard=False)
    q = qs.quantize(model, config, calib)
    warning = next(w for w in q.plan.warnings if "saturates" in w)
    assert f"{name!r} (a model input)" in warning and "%" in warning
    assert q.plan.extra["ranges"]["saturated_share"][name] > 0.005
    by_tensor = {t.tensor: t for t in q.plan.activations}
    assert by_tensor[name].source == "calibrated:percentile"


def test_a_smoothed_input_keeps_its_whole_range(tmp_path) -> None:
    model = _mlp(tmp_path)
    name = model.inputs[0].name
    x = _heavy_tailed(256, 0)
    q = qs.quantize(model, qs.StaticInt8(smoothquant=True), qs.Dataset.from_arrays({name: x}))
    smoothed = {r["input"]: r for r in q.plan.extra["smoothquant"]}
    by_tensor = {t.tensor: t for t in q.plan.activations}
    if name in smoothed:  # its Mul output is quantized with the min/max range the scales give
        s = np.asarray(smoothed[name]["scales"])
        lo, hi = by_tensor[f"{name}_smoothquant"].range
        low, high = float((x / s).min()), float((x / s).max())
        assert lo <= low + 1e-5 * abs(low) and hi >= high - 1e-5 * abs(high)
    else:
        assert by_tensor[name].source == "calibrated:auto/minmax, model input"


def test_the_guard_keeps_min_max_where_an_explicit_calibrator_clips_heavily(tmp_path) -> None:
    model = _mlp(tmp_path)
    name = model.inputs[0].name
    x = _heavy_tailed(256, 1)
    q = qs.quantize(model, qs.StaticInt8(calibration="percentile", percentile=99.99, smoothquant=False),
                    qs.Dataset.from_arrays({name: x}))
    assert qs.StaticInt8().range_guard and qs.StaticInt8().as_calibration().guard
    by_tensor = {t.tensor: t for t in q.plan.activations}
    lo, hi = by_tensor[name].range
    assert lo <= float(x.min()) and hi >= float(x.max()) * (1 - 1e-6)  # the input is not clipped
    assert by_tensor[name].source == "calibrated:minmax, guard against percentile"
    ranges = q.plan.extra["ranges"]
    assert ranges["guard"] is True and ranges["guarded"][name]["saturated_share"] > 0
    assert ranges["rules"]["minmax (guard)"] == len(ranges["guarded"])
    assert "saturated_share" not in ranges  # nothing heavily clipped was kept
    warning = next(w for w in q.plan.warnings if "range guard" in w)
    assert f"{name!r} (a model input)" in warning and "% saturated" in warning
    # tensors the calibrator clips little keep its range
    assert any(t.source == "calibrated:percentile" for t in q.plan.activations)


def test_the_guard_round_trips_and_checks_its_type() -> None:
    on = qs.StaticInt8(calibration="entropy").as_calibration()
    off = qs.StaticInt8(calibration="entropy", range_guard=False).as_calibration()
    assert on.guard and not off.guard
    assert Calibration.from_dict(off.to_dict()) == off
    with pytest.raises(qs.ConfigError):
        Calibration(guard="yes")  # type: ignore[arg-type]
    with pytest.raises(qs.ConfigError):
        qs.StaticInt8(range_guard=1)  # type: ignore[arg-type]
