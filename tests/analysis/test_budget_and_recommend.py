"""One budget rule and one recommender: every caller (quality gate, tune, report) gives the same answer."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
import pytest

import quantscope as qs
import tinymodels
from quantscope.analysis import budget
from quantscope.analysis.compare import quality_gate
from quantscope.analysis.recommend import recommend
from quantscope.analysis.results import LatencyResult, Results, VariantResult
from quantscope.analysis.tune import allowed_drop as tune_allowed_drop
from quantscope.errors import ConfigError, QualityGateError
from quantscope.reporting import _format as f


def variant(name: str, value: float, size: int, *, ms: float | None = None, sqnr: float | None = None,
            kind: str = "onnx", metric: str = "accuracy") -> VariantResult:
    quality = {metric: value}
    if sqnr is not None:
        quality["sqnr_db"] = sqnr
    latency = [LatencyResult(batch=1, threads=1, median_ms=ms, p90_ms=ms, runs=3)] if ms is not None else []
    return VariantResult(name=name, kind=kind, path=None, method=None if kind == "float" else name, config=None,  # type: ignore[arg-type]
                         size_bytes=size, param_bytes={}, quality=quality, latency=latency)


def results(*variants: VariantResult, float_value: float = 0.8, max_drop: float | None = 0.05,
            higher_is_better: bool = True, metric: str = "accuracy", float_ms: float | None = None,
            objective: str = "size") -> Results:
    ref = variant("float", float_value, 1000, ms=float_ms, kind="float", metric=metric)
    return Results(model={"name": "m"}, data={"samples": 10}, metric=metric, higher_is_better=higher_is_better,
                   variants=[ref, *variants], max_drop=max_drop, objective=objective)


# --- the budget rule ------------------------------------------------------------------------------


def test_budget_is_a_fraction_of_the_float_value_and_its_edge_is_inside() -> None:
    r = results(variant("edge", 0.75, 10), variant("over", 0.7499, 10), float_value=1.0, max_drop=0.25)
    assert budget.allowed_drop(r) == 0.25
    assert budget.within_budget(r, r.variant("edge"))  # a drop of exactly the budget is inside
    assert not budget.within_budget(r, r.variant("over"))
    half = results(variant("q", 0.75, 10), float_value=2.0, max_drop=0.125)  # 12.5 % of 2.0 is 0.25
    assert budget.allowed_drop(half) == 0.25
    assert not budget.within_budget(r, r.reference)  # the float model is never a candidate


def test_budget_of_a_zero_float_value_is_max_drop_itself_and_direction_follows_the_metric() -> None:
    zero = results(variant("q", -0.01, 10), float_value=0.0, max_drop=0.02)
    assert budget.allowed_drop(zero) == 0.02 and budget.within_budget(zero, zero.variant("q"))
    lower = results(variant("worse", 0.12, 10, metric="mean_abs"), variant("better", 0.05, 10, metric="mean_abs"),
                    float_value=0.1, max_drop=0.1,
                    higher_is_better=False, metric="mean_abs")
    assert budget.allowed_drop(lower) == pytest.approx(0.01)
    assert [v.name for v in budget.variants_within_budget(lower)] == ["better"]


def test_no_budget_or_no_float_value_means_no_allowed_drop() -> None:
    assert budget.allowed_drop(results(variant("q", 0.7, 10), max_drop=None)) is None
    no_ref = Results(model={}, data={}, metric="accuracy", variants=[variant("q", 0.7, 10)], max_drop=0.1)
    assert budget.allowed_drop(no_ref) is None
    with pytest.raises(QualityGateError, match="no float model"):
        budget.require_allowed_drop(no_ref)
    for bad in (True, -0.1, 1.0, "0.1"):
        with pytest.raises(ConfigError, match="max_drop"):
            budget.check_max_drop(bad)  # type: ignore[arg-type]


def test_quality_gate_tune_and_report_use_the_same_budget() -> None:
    r = results(variant("a", 0.79, 300), variant("b", 0.70, 100), variant("c", 0.77, 200), max_drop=0.05)
    inside = [v.name for v in budget.variants_within_budget(r)]
    assert inside == ["a", "c"]
    assert [v.name for v in quality_gate(r)] == inside
    assert f.within_budget(r) == set(inside)
    assert f.budget(r) == tune_allowed_drop(r) == budget.allowed_drop(r)
    assert [v.name for v in r.within_budget(tune_allowed_drop(r))] == inside  # the absolute-units query agrees
    with pytest.raises(QualityGateError, match="budget"):
        quality_gate(r, max_drop=0.001)


# --- the recommender ---------------------------------------------------------------------------------


def test_recommends_the_smallest_within_the_budget_that_is_not_slower_than_float() -> None:
    r = results(variant("tiny-slow", 0.79, 100, ms=3.0), variant("small-fast", 0.79, 200, ms=0.9),
                variant("big", 0.79, 500, ms=0.5), variant("out", 0.5, 50, ms=0.1), float_ms=1.0)
    pick = recommend(r)
    assert pick is not None and pick.name == "small-fast"
    assert "not slower than float" in pick.reason
    assert f.best_variant(r) == (pick.name, pick.reason)
    fastest = recommend(r, "latency")
    assert fastest is not None and fastest.name == "big" and "the fastest" in fastest.reason
    assert fastest.objective == "latency" and "speed" in fastest.reason  # the objective is stated


def test_ties_in_size_go_to_fidelity_then_name_and_no_budget_means_closest_to_float() -> None:
    r = results(variant("b", 0.79, 100, sqnr=30.0), variant("a", 0.79, 100, sqnr=20.0), variant("c", 0.79, 100))
    assert recommend(r).name == "b"  # type: ignore[union-attr]
    loose = results(variant("close", 0.79, 900), variant("closer-big", 0.8, 800), variant("closer", 0.8, 300),
                    max_drop=None)
    pick = recommend(loose)
    assert pick is not None and pick.name == "closer" and "closest to the float model" in pick.reason


def test_nothing_within_the_budget_recommends_nothing_everywhere() -> None:
    r = results(variant("q", 0.5, 10), max_drop=0.01)
    assert recommend(r) is None and f.best_variant(r) is None
    assert "No quantized variant stays within the budget" in f.summary_sentence(r)
    assert recommend(results(max_drop=None)) is None


def test_results_remember_the_objective_and_the_report_follows_it() -> None:
    r = results(variant("small", 0.79, 100, ms=0.9), variant("fast", 0.79, 400, ms=0.2), float_ms=1.0,
                objective="latency")
    assert recommend(r).name == f.best_variant(r)[0] == "fast"  # type: ignore[union-attr,index]
    back = Results.from_dict(r.to_dict())
    assert back.objective == "latency" and recommend(back).name == "fast"  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="objective"):
        recommend(r, "energy")  # type: ignore[arg-type]


@pytest.mark.parametrize("objective", ["size", "latency"])
def test_tune_chooses_what_the_report_stars(tmp_path: Path, objective: str) -> None:
    path = tmp_path / "mlp.onnx"
    onnx.save(tinymodels.mlp(), path)
    model = qs.load(path)
    x = np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32)
    best = qs.tune(model, None, qs.Dataset.from_arrays({"x": x}), max_drop=0.5,
                   methods=["weight-int8", "float16", "dynamic-int8"], objective=objective)  # type: ignore[arg-type]
    assert best.results.objective == objective
    assert f.best_variant(best.results)[0] == best.name  # type: ignore[index]
    assert math.isfinite(best.results.drop(best.results.variant(best.name)))  # type: ignore[arg-type]
