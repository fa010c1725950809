"""dynamic-int8 on real pretrained models shipped inside PyPI wheels (no calibration data).

all-MiniLM-L6-v2 on real sentences (its 36 projection MatMuls become ONNX Runtime's fused
integer kernels, its word and position embedding tables int8 per row) and PP-OCR's text-direction classifier on rendered text lines, with Conv
opted in (slow on this CPU, and the plan says so). Run with ``-s`` to see the measured values.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import quantscope as qs
import realmodels
from quantscope.analysis.evaluate import measure_latency, predict
from quantscope.graph.prepare import prepare
from quantscope.graph.queries import node_label
from quantscope.graph.sentinels import sentinel_tensors
from quantscope.numerics.metrics import cosine_similarity
from quantscope.runtime import optimized_op_types

pytestmark = pytest.mark.real

FUSED = ("DynamicQuantizeMatMul", "MatMulIntegerToFloat")


def test_minilm_dynamic_int8_keeps_embeddings(
    minilm_onnx: Path, minilm_tokenizer_json: Path, sentences: list[str], tmp_path: Path
) -> None:
    model = qs.load(minilm_onnx)
    q = qs.quantize(model, qs.DynamicInt8())

    by_op = q.plan.summary()["quantized_by_op"]
    assert by_op == {"MatMul": 36, "Gather": 2}  # 6 x (q, k, v, o, ffn in/out); word + position tables
    assert sum(d.action == "fused" for d in q.plan.decisions) == 36  # every projection bias folded in
    # the additive attention mask (finfo.min) is found, and no quantized node reads it
    prepared, _ = prepare(model)
    tainted = sentinel_tensors(prepared.ir.graph)
    readers = {node_label(n) for n in prepared.ir.graph if any(v is not None and v.name in tainted for v in n.inputs)}
    assert len(readers) >= 6  # one score Add per layer
    assert not readers & {d.node for d in q.plan.decisions if d.action != "float"}

    evaluation = qs.Dataset.from_arrays(realmodels.minilm_dataset(sentences, minilm_tokenizer_json))
    ref = predict(model, evaluation, batch_size=16)[0]
    got = predict(q.model, evaluation, batch_size=16)[0]
    cos = cosine_similarity(ref, got)
    path = q.save(tmp_path / "minilm.dyn.onnx")
    size_ratio = path.stat().st_size / minilm_onnx.stat().st_size
    optimized = optimized_op_types(q.model)
    fused = {k: optimized.get(k, 0) for k in FUSED}
    feeds = next(iter(evaluation.batches(8))).inputs
    float_ms = measure_latency(model, feeds, threads=1, warmup=2, runs=5).median_ms
    dyn_ms = measure_latency(q.model, feeds, threads=1, warmup=2, runs=5).median_ms
    print(
        f"\nMiniLM dynamic-int8 ({len(sentences)} sentences): mean cosine {cos.mean():.4f}, min {cos.min():.4f}, "
        f"file size ratio {size_ratio:.3f}, ORT fused kernels {fused}, "
        f"latency batch 8, 1 thread: float {float_ms:.0f} ms, dynamic-int8 {dyn_ms:.0f} ms "
        f"(speed-up {float_ms / dyn_ms:.2f}x, rough: shared CPU)"
    )
    assert cos.mean() >= 0.99
    assert sum(fused.values()) == 36
    assert "MatMulInteger" not in optimized  # nothing left unfused
    assert size_ratio <= 0.30  # measured 0.255: int8 weights and tables, float scales, biases, LayerNorms
    assert q.model.parameter_bytes().get("float32", 0) < 0.02 * minilm_onnx.stat().st_size


@pytest.fixture(scope="module")
def ppocr(ppocr_cls_onnx: Path) -> tuple[qs.Model, qs.Dataset, np.ndarray, np.ndarray]:
    model = qs.load(ppocr_cls_onnx)
    x, labels = realmodels.ppocr_cls_dataset(400, seed=2)
    evaluation = qs.Dataset.from_arrays({model.inputs[0].name: x}, labels=labels)
    return model, evaluation, labels, predict(model, evaluation)[0]


def test_ppocr_cls_dynamic_int8_with_conv_keeps_top1(ppocr, tmp_path: Path) -> None:
    model, evaluation, labels, ref = ppocr
    q = qs.quantize(model, qs.DynamicInt8(op_types=("MatMul", "Gemm", "Conv")))
    path = q.save(tmp_path / "cls.dyn.onnx")
    got = predict(qs.load(path), evaluation)[0]
    agreement = float(np.mean(ref.argmax(1) == got.argmax(1)))
    size_ratio = path.stat().st_size / model.path.stat().st_size
    by_op = q.plan.summary()["quantized_by_op"]
    grouped = [d for d in q.plan.decisions if d.op_type == "Conv" and "grouped Conv" in d.reason]
    optimized = optimized_op_types(q.model)
    print(
        f"\nPP-OCR cls dynamic-int8 (Conv opted in): top-1 agreement {agreement:.4f}, accuracy float "
        f"{np.mean(ref.argmax(1) == labels):.4f} -> {np.mean(got.argmax(1) == labels):.4f}, file size ratio "
        f"{size_ratio:.3f}, quantized {by_op}, grouped Convs kept float {len(grouped)}, "
        f"ORT ConvInteger {optimized.get('ConvInteger', 0)}"
    )
    assert agreement >= 0.99
    assert by_op.get("Conv", 0) >= 40 and len(grouped) >= 10
    assert optimized.get("ConvInteger", 0) == by_op["Conv"]
    assert any("ConvInteger" in w and "slower" in w for w in q.plan.warnings)
    assert size_ratio < 0.5  # the depthwise weights, biases and graph stay float


def test_ppocr_cls_dynamic_int8_default_leaves_convs_float(ppocr) -> None:
    model, evaluation, _, ref = ppocr
    q = qs.quantize(model, qs.DynamicInt8())
    got = predict(q.model, evaluation)[0]
    agreement = float(np.mean(ref.argmax(1) == got.argmax(1)))
    print(f"\nPP-OCR cls dynamic-int8 (defaults: only the classifier head): top-1 agreement {agreement:.4f}")
    assert agreement >= 0.99
    assert q.plan.summary()["quantized_by_op"] == {"MatMul": 1}
    assert not q.plan.warnings
    assert "ConvInteger" not in optimized_op_types(q.model)
