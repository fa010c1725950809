"""The report says what the timings are from, marks a variant slower than float, names layers by
module path, and lists every warning once."""

from __future__ import annotations

import onnx_ir as ir

from quantscope.analysis.names import module_path
from quantscope.analysis.results import (
    LatencyResult,
    LayerError,
    PlanSummary,
    Results,
    VariantResult,
)
from quantscope.reporting import _format as f
from quantscope.reporting.html import render_html
from quantscope.reporting.markdown import render_markdown

WARNING = "int8 dot products may saturate in int16 on this CPU (no VNNI detected)"


def _variant(name: str, speed: tuple[float, float, float] | None, *, kind: str = "onnx") -> VariantResult:
    lat = [LatencyResult(batch=1, threads=1, median_ms=1.0, p90_ms=1.1, runs=30)]
    if speed is not None:
        lat = [LatencyResult(batch=1, threads=1, median_ms=1.0 / speed[0], p90_ms=1.1, runs=30, speed=speed[0],
                             speed_low=speed[1], speed_high=speed[2])]
    plan = None if kind == "float" else PlanSummary(method="static-int8", quantized=3, fused=0, float=0,
                                                    float_reasons={}, quantized_ops={"Gemm": 3},
                                                    warnings=[WARNING])
    return VariantResult(name=name, kind=kind, path=None, method=None if kind == "float" else "static-int8",  # type: ignore[arg-type]
                         config=None, size_bytes=1000 if kind == "float" else 300, param_bytes={},
                         quality={"accuracy": 0.9}, latency=lat, plan=plan,
                         warnings=[] if kind == "float" else [WARNING],
                         layers=[] if kind == "float" else [LayerError(tensor="getitem_21", node="node_linear_3",
                                                                       op_type="Gemm", sqnr_db=12.0,
                                                                       module="encoder.layer.0/linear")])


def _results() -> Results:
    return Results(
        model={"name": "m"}, data={"samples": 400}, metric="accuracy",
        variants=[_variant("float", None, kind="float"), _variant("slow", (0.7, 0.6, 0.8)),
                  _variant("same", (1.01, 0.95, 1.08))],
        machine={"cpu": "Test CPU", "cores": 2, "flags": ["avx2", "fma"], "threads": [1, "all"],
                 "versions": {"onnxruntime": "1.99.0"}},
    )


def test_the_report_states_cpu_features_ort_version_and_threads() -> None:
    text = f.timing_setting(_results())
    assert "Test CPU" in text and "avx2, fma" in text and "ONNX Runtime 1.99.0" in text
    assert "1 thread(s)" in text and "all 2 cores" in text
    assert text in render_markdown(_results()) and "timing-setting" in render_html(_results())


def test_a_variant_slower_than_float_is_marked_and_same_speed_is_said() -> None:
    r = _results()
    assert f.speed_cell(r, r.variant("slow")).startswith("▼") and "slower" in f.speed_cell(r, r.variant("slow"))
    assert f.speed_cell(r, r.variant("same")).endswith("same")
    assert "▼" in render_markdown(r)


def test_every_warning_once() -> None:
    r = _results()
    notes = f.notes_and_warnings(r)
    assert notes == [f"slow, same: {WARNING}"]
    for page in (render_markdown(r), render_html(r)):
        assert page.count("saturate in int16") == 1


def test_layers_are_named_by_module_path() -> None:
    md = render_markdown(_results())
    assert "encoder.layer.0/linear (getitem\\_21)" in md
    node = ir.Node("", "Gemm", inputs=[], name="node_linear_3")
    node.metadata_props["pkg.torch.onnx.name_scopes"] = "['', 'encoder', 'encoder.layer.0', 'linear']"
    assert module_path(node) == "encoder.layer.0/linear"
    other = ir.Node("", "Relu", inputs=[], name="n")
    other.metadata_props["namespace"] = ": M/block: B/relu: aten.relu.default"
    assert module_path(other) == "block/relu"
    plain = ir.Node("", "Relu", inputs=[], name="n")
    assert module_path(plain) == ""
