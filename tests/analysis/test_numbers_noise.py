"""Numbers a user can trust: paired timings with intervals, quality intervals, and a recommender
that never picks by a difference inside the noise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

import quantscope as qs
import tinymodels
from quantscope.analysis import stats
from quantscope.analysis.evaluate import measure_paired_latency
from quantscope.analysis.options import AnalysisOptions
from quantscope.analysis.recommend import recommend, speed_verdict
from quantscope.analysis.results import LatencyResult, Results, VariantResult


def _variant(name: str, acc: float, size: int, *, method: str | None = None, speed: tuple[float, float, float] | None
             = None, interval: list[float] | None = None, kind: str = "onnx") -> VariantResult:
    latency = []
    if speed is not None:
        latency = [LatencyResult(batch=1, threads=1, median_ms=1.0 / speed[0], p90_ms=1.0, runs=30, speed=speed[0],
                                 speed_low=speed[1], speed_high=speed[2])]
    return VariantResult(name=name, kind=kind, path=None, method=method or name, config=None,  # type: ignore[arg-type]
                         size_bytes=size, param_bytes={}, quality={"accuracy": acc},
                         quality_interval={"accuracy": interval} if interval else {}, latency=latency)


def _results(*variants: VariantResult, max_drop: float | None = None, objective: str = "size",
             samples: int = 400) -> Results:
    ref = _variant("float", 0.95, 1000, kind="float",
                   interval=list(stats.wilson(0.95 * samples, samples)))
    return Results(model={"name": "m"}, data={"samples": samples}, metric="accuracy", variants=[ref, *variants],
                   max_drop=max_drop, objective=objective)


def _wilson(acc: float, n: int = 400) -> list[float]:
    return list(stats.wilson(acc * n, n))


def test_wilson_interval_and_speed_verdicts() -> None:
    lo, hi = stats.wilson(380, 400)
    assert lo < 0.95 < hi and hi - lo < 0.05
    assert stats.wilson(0, 0) == (0.0, 1.0)
    assert stats.speed_verdict(0.9, 1.2) == "same"
    assert stats.speed_verdict(1.1, 1.3) == "faster"
    assert stats.speed_verdict(0.6, 0.8) == "slower"
    assert stats.speed_verdict(0.5, 2.0) == "noisy"  # includes 1.0 but could hide a 2x difference
    assert stats.speed_verdict(1.005, 1.02) == "same"  # a tight interval within 3 %: negligible
    assert stats.speed_verdict(1.01, 1.08, 1.02) == "same"  # outside the noise but not material
    assert stats.speed_verdict(1.01, 1.08, 1.05) == "faster"
    assert stats.speed_verdict(None, None) == "unknown"
    # 4 % slower, clearly outside the noise, but 0.25 µs a call on a 6 µs model: no difference one can tell
    assert stats.speed_verdict(0.95, 0.99, 0.96, reference_ms=0.006) == "same"
    assert stats.speed_verdict(0.95, 0.99, 0.96, reference_ms=0.2) == "slower"
    assert stats.speed_verdict(1.8, 2.2, 2.0, reference_ms=0.006) == "faster"  # 3 µs saved


def test_same_speed_for_a_graph_identical_to_float(tmp_path: Path) -> None:
    path = tmp_path / "mlp.onnx"
    onnx.save(tinymodels.mlp(), path)
    model, twin = qs.load(path), qs.load(path)
    feeds = {"x": np.random.default_rng(0).standard_normal((1, 64)).astype(np.float32)}
    paired = measure_paired_latency(model, twin, feeds, threads=1, warmup=3, runs=40)
    assert paired.low <= paired.high and paired.reference.runs == paired.variant.runs == 40
    assert paired.verdict in ("same", "noisy"), paired
    # the same through analyze: the identical graph as a variant is timed against float, paired
    res = qs.analyze(model, {"twin": twin}, qs.Dataset.from_arrays({"x": np.repeat(feeds["x"], 16, axis=0)}),
                     options=AnalysisOptions(batch_sizes=(1,), threads=(1,), runs=30, memory=False, energy=False,
                                             layers=False, sensitivity=0))
    twin_result = res.variant("twin")
    (lat,) = twin_result.latency
    assert lat.speed is not None and lat.speed_low is not None and lat.speed_high is not None
    assert speed_verdict(res, twin_result) in ("same", "noisy")
    assert twin_result.quality_interval["agreement"][1] == pytest.approx(1.0)
    assert Results.from_dict(res.to_dict()).variant("twin").latency[0].speed == lat.speed


def test_the_recommender_never_picks_by_a_quality_difference_inside_its_interval() -> None:
    # "better" by one sample in 400, and twice the size: the same quality, so the smaller wins
    r = _results(_variant("one-sample-better", 0.9475, 400, interval=_wilson(0.9475)),
                 _variant("small", 0.945, 200, interval=_wilson(0.945)),
                 _variant("worse", 0.80, 100, interval=_wilson(0.80)))
    pick = recommend(r)
    assert pick is not None and pick.name == "small", pick
    assert pick.objective == "size" and "size" in pick.reason
    assert pick.runner_up == "one-sample-better" and "larger" in pick.runner_up_reason
    # with intervals apart, quality decides
    r = _results(_variant("better", 0.95, 400, interval=[0.94, 0.96]),
                 _variant("small", 0.90, 200, interval=[0.88, 0.92]))
    assert recommend(r).name == "better"  # type: ignore[union-attr]


def test_a_size_win_of_a_few_percent_does_not_beat_a_clear_speed_win() -> None:
    # cluster-8 is 1.2 % smaller; static-int8 is clearly faster; an unmeasured codebook runs at float speed
    r = _results(_variant("cluster-8", 0.95, 988, method="cluster", interval=_wilson(0.95)),
                 _variant("static-int8", 0.95, 1000, method="static-int8", speed=(1.8, 1.6, 2.0),
                          interval=_wilson(0.95)), max_drop=0.01)
    assert speed_verdict(r, r.variant("cluster-8")) == "same"  # float arithmetic after ORT unpacks it
    pick = recommend(r)
    assert pick is not None and pick.name == "static-int8", pick
    assert "cluster-8" in pick.runner_up_reason and "clearly faster" in pick.runner_up_reason


def test_a_variant_slower_than_float_is_never_recommended_for_speed_and_same_speed_goes_to_the_smaller() -> None:
    r = _results(_variant("slow", 0.95, 100, speed=(0.7, 0.6, 0.8), interval=_wilson(0.95)),
                 _variant("same-a", 0.95, 300, speed=(1.30, 1.1, 1.5), interval=_wilson(0.95)),
                 _variant("same-b", 0.95, 200, speed=(1.25, 1.05, 1.45), interval=_wilson(0.95)),
                 max_drop=0.02, objective="latency")
    assert speed_verdict(r, r.variant("slow")) == "slower"
    pick = recommend(r)
    assert pick is not None and pick.name == "same-b", pick  # same speed within the noise, and smaller
    assert "not slower than float" in pick.reason
    assert "same speed within the timing noise" in pick.runner_up_reason
    size = recommend(r, "size")
    assert size is not None and size.name != "slow"


def test_sensitivity_is_measured_for_the_recommended_int8_variant_not_the_worst(tmp_path: Path) -> None:
    path = tmp_path / "mlp.onnx"
    onnx.save(tinymodels.mlp(), path)
    model = qs.load(path)
    x = np.random.default_rng(1).standard_normal((96, 64)).astype(np.float32)
    calib, data = qs.Dataset.from_arrays({"x": x[:32]}), qs.Dataset.from_arrays({"x": x[32:]})
    variants = {"int8": qs.quantize(model, qs.StaticInt8(), calib), "binary": qs.quantize(model, qs.config.Binary())}
    res = qs.analyze(model, variants, data, calib=calib,
                     options=AnalysisOptions(latency=False, memory=False, energy=False, sensitivity=2,
                                             sensitivity_samples=32, calib_samples=32, layer_samples=16))
    assert res.drop(res.variant("binary")) > res.drop(res.variant("int8"))  # binary loses the most
    assert res.variant("int8").sensitivity and not res.variant("binary").sensitivity


def test_timings_too_noisy_to_tell_are_said_in_the_notes() -> None:
    from quantscope.analysis.measure import noise_notes

    noisy = _variant("jittery", 0.95, 100, speed=(1.2, 0.5, 2.5))
    calm = _variant("calm", 0.95, 100, speed=(1.2, 1.1, 1.3))
    (note,) = noise_notes([noisy, calm])
    assert "too noisy" in note and "jittery" in note and "calm" not in note
    assert noise_notes([calm]) == []


def test_a_version_2_results_file_reads_as_version_3() -> None:
    v2 = {"schema": "quantscope.results", "schema_version": 2, "model": {"name": "m", "outputs": [
        {"name": "label", "dtype": "int64", "shape": ["batch"]}, {"name": "probabilities", "dtype": "float32"}]},
        "data": {}, "metric": "accuracy", "variants": [
            {"name": "float", "kind": "float", "path": None, "method": None, "config": None, "size_bytes": 10,
             "param_bytes": {}, "quality": {"accuracy": 0.9},
             "latency": [{"batch": 1, "threads": 1, "median_ms": 1.0, "p90_ms": 1.0, "runs": 3}]}]}
    r = Results.from_dict(v2)
    assert r.outputs == ["label"]  # version 2 measured the first output
    assert r.variants[0].quality_interval == {} and r.variants[0].latency[0].speed is None
    assert Results.from_dict(r.to_dict()).to_dict() == r.to_dict()
