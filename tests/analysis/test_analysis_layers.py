"""Per-layer error and per-layer sensitivity find a deliberately damaged layer."""

from __future__ import annotations

import math

import numpy as np
import pytest
from analysis_models import classifier, inputs

import quantscope as qs
from quantscope.analysis.layers import layer_errors, match_tensors, worst_nodes
from quantscope.analysis.quality import resolve_metric
from quantscope.analysis.sensitivity import candidates, layer_sensitivity
from quantscope.io import Model, infer_shapes


@pytest.fixture(scope="module")
def damaged() -> tuple[Model, qs.QuantizedModel, qs.Dataset, qs.Dataset]:
    model = Model.from_proto(infer_shapes(classifier(damaged=True)))
    x = inputs(320)
    calib = qs.Dataset.from_arrays({"x": x[:128]})
    evaluation = qs.Dataset.from_arrays({"x": x[128:]})
    return model, qs.quantize(model, qs.StaticInt8(), calib), calib, evaluation


def test_tensors_are_matched_by_the_names_static_int8_keeps(damaged) -> None:
    model, q, _, _ = damaged
    pairs = {f: qn for f, qn, _ in match_tensors(model, q.model, q.plan)}
    assert pairs["x"] == "x_dequantized"  # the quantized model input
    assert pairs["a1"] == "a1_dequantized"  # Relu output behind its Q/DQ pair
    assert pairs["h2"] == "h2"  # the Gemm output itself (float output of a quantized node)


def test_layer_sqnr_ranks_the_damaged_layer_worst(damaged) -> None:
    model, q, _, evaluation = damaged
    errors = layer_errors(model, q.model, evaluation, plan=q.plan, samples=64)
    assert errors[0].tensor == "h2" and errors[0].node == "fc2" and errors[0].op_type == "Gemm"
    assert errors[0].sqnr_db < 10.0  # destroyed: the real weights rounded to zero
    by_tensor = {e.tensor: e.sqnr_db for e in errors}
    assert by_tensor["h1"] > 30.0 and by_tensor["a1"] > 30.0  # the healthy first layer
    assert [e.sqnr_db for e in errors] == sorted(e.sqnr_db for e in errors)
    # the ranking by own contribution puts fc2 first, ahead of fc3 that only inherits the damage
    assert worst_nodes(errors, [d.node for d in q.plan.quantized_nodes], model)[0] == "fc2"


def test_identical_models_have_infinite_sqnr(damaged) -> None:
    model, _, _, evaluation = damaged
    errors = layer_errors(model, model, evaluation, plan=None, samples=8)
    assert errors and all(math.isinf(e.sqnr_db) and e.sqnr_db > 0 for e in errors)


def test_sensitivity_finds_the_damaged_layer(damaged) -> None:
    model, q, calib, evaluation = damaged
    metric = resolve_metric("agreement", has_labels=False)
    nodes = candidates(q.plan, top=3)
    assert set(nodes) == {"fc1", "fc2", "fc3"}
    only = layer_sensitivity(model, q.config, q.plan, evaluation, metric=metric, calib=calib, nodes=nodes,
                             samples=128)
    assert only[0].node == "fc2" and only[0].mode == "only"
    assert only[0].delta < -0.2  # quantizing fc2 alone loses much of the agreement
    assert all(s.delta > -0.05 for s in only[1:])
    assert only[0].value == pytest.approx(1.0 + only[0].delta)  # reference: the float model (1.0)
    all_but = layer_sensitivity(model, q.config, q.plan, evaluation, metric=metric, calib=calib,
                                nodes=nodes, mode="all-but", samples=128, full=q.model)
    assert all_but[-1].node == "fc2" and all_but[-1].delta > 0.2  # keeping fc2 float repairs it
    assert np.isfinite([s.value for s in all_but]).all()


def test_a_conv_with_a_folded_batchnorm_is_compared_with_what_it_computes() -> None:
    """static-int8 folds BatchNorm into its Conv: the per-layer error compares the folded Conv's output
    with the float BatchNorm's output, never with the float Conv's pre-BatchNorm output."""
    import tinymodels

    model = Model.from_proto(infer_shapes(tinymodels.conv_bn_relu(channels=4, size=8)))
    x = np.random.default_rng(0).standard_normal((48, 3, 8, 8)).astype(np.float32)
    q = qs.quantize(model, qs.StaticInt8(measure=False), qs.Dataset.from_arrays({"x": x[:32]}))
    errors = layer_errors(model, q.model, qs.Dataset.from_arrays({"x": x[32:]}), plan=q.plan, samples=16)
    assert errors and min(e.sqnr_db for e in errors) > 20.0  # one int8 layer: no tensor compared with another
