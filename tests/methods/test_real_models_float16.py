"""float16 on real pretrained models shipped inside PyPI wheels (run with ``-s`` to see the numbers).

all-MiniLM-L6-v2 on real sentences (mean cosine to the float embeddings) and PP-OCR's
text-direction classifier on rendered text lines (top-1 agreement with float). Latency on this
CPU is printed, never asserted: ONNX Runtime's x86 CPU provider runs most float16 nodes in
float32 between Casts it inserts, so full float16 is not faster here (see the plan's warning).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import quantscope as qs
import realmodels
from quantscope.analysis.evaluate import measure_latency, predict
from quantscope.config import Float16
from quantscope.numerics.metrics import cosine_similarity

pytestmark = pytest.mark.real


def _latency_ms(model: qs.Model, feeds: dict[str, np.ndarray]) -> float:
    return measure_latency(model, feeds, threads=1, warmup=2, runs=10).median_ms


@pytest.mark.parametrize("weights_only", [False, True])
def test_minilm_float16_keeps_embeddings(
    minilm_onnx: Path, minilm_tokenizer_json: Path, sentences: list[str], tmp_path: Path, weights_only: bool
) -> None:
    model = qs.load(minilm_onnx)
    order = np.random.default_rng(0).permutation(len(sentences))
    evaluation = qs.Dataset.from_arrays(
        realmodels.minilm_dataset([sentences[i] for i in order[:48]], minilm_tokenizer_json)
    )
    q = qs.quantize(model, Float16(weights_only=weights_only))
    path = q.save(tmp_path / "minilm.f16.onnx")
    size_ratio = path.stat().st_size / minilm_onnx.stat().st_size

    ref = predict(model, evaluation, batch_size=16)[0]
    got = predict(qs.load(path), evaluation, batch_size=16)[0]
    cos = cosine_similarity(ref, got)
    feeds = {k: v[:1] for k, v in next(iter(evaluation.batches(1))).inputs.items()}
    lat_f, lat_q = _latency_ms(model, feeds), _latency_ms(q.model, feeds)
    summary = q.plan.summary()
    print(
        f"\nMiniLM float16 (weights_only={weights_only}): mean cosine {cos.mean():.6f}, min {cos.min():.6f}, "
        f"size ratio {size_ratio:.3f}, latency batch 1 / 1 thread {lat_q:.1f} ms vs float {lat_f:.1f} ms "
        f"({lat_q / lat_f:.2f}x)"
    )
    print(f"MiniLM float16 plan: {summary['quantized']} converted, {summary['float']} float; "
          f"ORT CPU: {q.plan.extra.get('ort_cpu')}")
    assert cos.mean() >= 0.999
    assert 0.45 < size_ratio < 0.55
    if not weights_only:
        assert summary["quantized_by_op"].get("MatMul", 0) >= 36
        assert q.plan.extra["clamped_values"]["large"] >= 1  # the finfo.min attention mask


def test_ppocr_cls_float16_agreement(ppocr_cls_onnx: Path, tmp_path: Path) -> None:
    model = qs.load(ppocr_cls_onnx)
    x_eval, labels = realmodels.ppocr_cls_dataset(200, seed=2)
    name = model.inputs[0].name
    evaluation = qs.Dataset.from_arrays({name: x_eval}, labels=labels)
    q = qs.quantize(model, Float16())
    path = q.save(tmp_path / "cls.f16.onnx")
    size_ratio = path.stat().st_size / ppocr_cls_onnx.stat().st_size

    ref = predict(model, evaluation)[0]
    got = predict(qs.load(path), evaluation)[0]
    agreement = float(np.mean(ref.argmax(1) == got.argmax(1)))
    acc_f = float(np.mean(ref.argmax(1) == labels))
    acc_q = float(np.mean(got.argmax(1) == labels))
    max_prob_err = float(np.abs(ref - got).max())
    lat_f, lat_q = _latency_ms(model, {name: x_eval[:1]}), _latency_ms(q.model, {name: x_eval[:1]})
    print(
        f"\nPP-OCR cls float16: float acc {acc_f:.4f}, float16 acc {acc_q:.4f}, top-1 agreement "
        f"{agreement:.4f}, max |Δp| {max_prob_err:.2e}, size ratio {size_ratio:.3f}, latency "
        f"{lat_q:.2f} ms vs float {lat_f:.2f} ms ({lat_q / lat_f:.2f}x)"
    )
    print(f"PP-OCR cls float16 ORT CPU: {q.plan.extra.get('ort_cpu')}")
    assert agreement >= 0.99
    assert 0.45 < size_ratio < 0.6
