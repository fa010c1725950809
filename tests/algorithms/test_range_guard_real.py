"""The range guard on a real model (the bundled digits CNN): what an explicit calibrator would clip
heavily keeps its min-max range, everything else keeps the calibrator's, and accuracy on held-out
images stays within half a point of min-max's."""

from __future__ import annotations

import numpy as np
import pytest

import quantscope as qs
from quantscope.examples import DIGITS_CALIB, DIGITS_EVAL, DIGITS_MODEL, example_path
from quantscope.runtime import make_session, run


@pytest.fixture(scope="module")
def digits() -> qs.Model:
    return qs.load(example_path(DIGITS_MODEL))


@pytest.fixture(scope="module")
def calib() -> qs.Dataset:
    return qs.Dataset.from_npz(example_path(DIGITS_CALIB))


@pytest.fixture(scope="module")
def quantized(digits: qs.Model, calib: qs.Dataset) -> dict[str, qs.Quantized]:
    runs = {"minmax": dict(calibration="minmax"), "entropy": dict(calibration="entropy"),
            "entropy-unguarded": dict(calibration="entropy", range_guard=False),
            "percentile": dict(calibration="percentile", percentile=99.9)}
    return {key: qs.quantize(digits, qs.StaticInt8(measure=False, **kw), calib) for key, kw in runs.items()}


def _accuracy(q: qs.Quantized) -> float:
    with np.load(example_path(DIGITS_EVAL)) as z:  # the bundled evaluation split, not the calibration one
        images, labels = z["image"], z["labels"]
    logits = run(make_session(q.model), {"image": images})[0]
    return float((logits.argmax(axis=1) == labels).mean())


def _ranges(q: qs.Quantized) -> dict[str, tuple[float, float]]:
    """The calibrated ranges (tensors sharing another's range, such as a MaxPool's output, left out)."""
    return {a.tensor: tuple(a.range) for a in q.plan.activations if a.source.startswith("calibrated")}


def test_the_guard_replaces_exactly_the_heavily_clipped_ranges_by_min_max(quantized) -> None:
    guarded, unguarded, minmax = quantized["entropy"], quantized["entropy-unguarded"], quantized["minmax"]
    loose = unguarded.plan.extra["ranges"]
    flagged = set(loose.get("saturated_share", {})) | set(loose.get("error_vs_minmax", {}))
    kept = guarded.plan.extra["ranges"]["guarded"]
    assert flagged and set(kept) == flagged  # the same tensors: warned about without the guard, kept with it
    on, off, exact = _ranges(guarded), _ranges(unguarded), _ranges(minmax)
    for name in on:
        assert on[name] == (exact[name] if name in kept else off[name]), name
    assert any(on[n] != exact[n] for n in on)  # the calibrator still chose the other ranges
    assert any("range guard" in w and "saturated" in w for w in guarded.plan.warnings)


def test_a_real_models_input_is_never_clipped_by_an_explicit_calibrator(quantized, digits) -> None:
    name = digits.inputs[0].name
    q = quantized["percentile"]
    source = {a.tensor: a.source for a in q.plan.activations}[name]
    assert source == "calibrated:minmax, guard against percentile"
    assert _ranges(q)[name] == _ranges(quantized["minmax"])[name]


def test_no_guarded_calibrator_loses_half_a_point_against_min_max(quantized) -> None:
    base = _accuracy(quantized["minmax"])
    for key in ("entropy", "percentile"):
        assert _accuracy(quantized[key]) >= base - 0.005, key
