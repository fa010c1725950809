"""``tune`` keeps only the float nodes that buy quality back (issue 14, item 5)."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
from test_tune import fragile  # noqa: F401 - the fixture: fc1 is fragile, fc2 and fc3 are not

import quantscope as qs
from quantscope.analysis.evaluate import predict
from quantscope.analysis.results import Results, VariantResult
from quantscope.analysis.tune import allowed_drop
from quantscope.analysis.tune_prune import prune

tune_module = importlib.import_module("quantscope.analysis.tune")


def _rank_first(monkeypatch: pytest.MonkeyPatch, order: list[str]) -> list[tuple]:
    """A ranking that puts a node buying nothing first (as a noisy subset can); records its calls."""
    calls: list[tuple] = []

    def ranked(model, full, base, data, calib, metric, opts, max_float_nodes, progress, executor=None):
        calls.append((full.config, base.name))
        return list(order)

    monkeypatch.setattr(tune_module, "_rank_nodes", ranked)
    return calls


def test_an_exclusion_that_buys_nothing_is_quantized_again(fragile, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    model, calib, data, _ = fragile
    calls = _rank_first(monkeypatch, ["fc2", "fc1", "fc3"])
    best = qs.tune(model, calib, data, max_drop=0.05, methods=["static-int8"])
    results = best.results
    # the nodes are ranked on the candidate exactly as its config makes it (every algorithm it enables)
    (ranked_config, base_name), = calls
    assert ranked_config.to_dict() == results.variant(base_name).config
    assert best.config.exclude.names and {**best.config.to_dict(), "exclude": None} == {
        **ranked_config.to_dict(), "exclude": None}
    allowed = allowed_drop(results)
    assert best.float_nodes == ("fc1",)
    assert best.config.exclude.names == ("fc1",)
    assert results.drop(results.variant(best.name)) <= allowed
    by_node = {e.node: e for e in best.exclusions}
    assert set(by_node) == {"fc2", "fc1"}
    assert not by_node["fc2"].kept and by_node["fc1"].kept
    assert by_node["fc1"].gain > allowed  # it buys back more than the whole budget
    assert by_node["fc2"].gain is not None and by_node["fc2"].gain < by_node["fc1"].gain
    greedy = results.variant(best.name.replace("+1float-without-fc2", "+2float"))
    assert greedy.config["exclude"]["names"] == ["fc2", "fc1"]  # the greedy step's pick, measured too
    decisions = {d.node: d.action for d in best.quantized.plan.decisions}
    assert decisions == {**decisions, "fc1": "float", "fc2": "quantized", "fc3": "quantized"}
    assert any("Quantizing fc2 again" in r and "not needed" in r for r in best.reasons), best.reasons
    assert best.reasons[-1].startswith(f"Chose {best.name}") and "1 node(s) kept in float (fc1)" in best.reasons[-1]
    ref, out = predict(model, data)[0], predict(best.quantized.model, data)[0]
    assert np.mean(ref.argmax(1) == out.argmax(1)) >= 0.95


def _variant(name: str, accuracy: float) -> VariantResult:
    return VariantResult(name=name, kind="float" if name == "float" else "onnx", path=None, method=None, config=None,
                         size_bytes=1, param_bytes={}, quality={"accuracy": accuracy})


def _prune(quality_without: dict[str, float], step_gains: list[float], max_trials: int | None = None):
    """prune() over three float nodes a, b, c, where quantizing one again gives ``quality_without[it]``."""
    results = Results(model={}, data={}, metric="accuracy", variants=[_variant("float", 0.90)], max_drop=0.05)
    built: list[tuple[str, ...]] = []

    def build(nodes):
        built.append(tuple(nodes))
        return tuple(nodes), object()

    def measure(name, q):
        gone = name.rsplit("-without-", 1)[1]
        return _variant(name, quality_without[gone])

    chosen = ("base+3float", ("a", "b", "c"), object(), _variant("base+3float", 0.89))
    out = prune(results=results, base=_variant("base", 0.50), nodes=["a", "b", "c"], step_gains=step_gains,
                chosen=chosen, allowed=0.045, build=build, measure=measure, max_trials=max_trials)
    return out, built


def test_prune_tries_the_cheapest_first_and_keeps_what_the_budget_needs() -> None:
    # quantizing b again costs nothing; a and c each break the budget (drop 0.1 > 0.045)
    out, built = _prune({"a": 0.80, "b": 0.89, "c": 0.80}, step_gains=[0.2, 0.0, 0.19])
    assert built[0] == ("a", "c")  # b bought least when added: tried first
    assert out.nodes == ("a", "c") and out.config == ("a", "c")
    gains = {e.node: (e.kept, e.gain) for e in out.float_nodes}
    assert gains["b"] == (False, pytest.approx(0.0))
    assert gains["a"] == (True, pytest.approx(0.09)) and gains["c"] == (True, pytest.approx(0.09))
    assert out.name == "base+2float-without-b"
    assert len(out.measured) == 3


def test_prune_measures_at_most_max_trials_variants() -> None:
    out, built = _prune({"a": 0.89, "b": 0.89, "c": 0.89}, step_gains=[0.2, 0.0, 0.19], max_trials=1)
    assert len(built) == 1 and len(out.measured) == 1
    assert out.nodes == ("a", "c")  # b dropped; a and c not re-checked, so they stay
    assert [e.gain is None for e in out.float_nodes] == [True, False, True]
