"""static-int8 on real pretrained models shipped inside PyPI wheels.

PP-OCR's text-direction classifier on rendered text lines (half turned by 180°, the task it was
trained for) and all-MiniLM-L6-v2 on real sentences. Run with ``-s`` to see the measured values.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import quantscope as qs
import realmodels
from quantscope.analysis.evaluate import predict
from quantscope.demo import integer_kernels
from quantscope.numerics.metrics import cosine_similarity
from quantscope.runtime import optimized_op_types

pytestmark = pytest.mark.real


def test_ppocr_cls_static_int8_keeps_top1(ppocr_cls_onnx: Path, tmp_path: Path) -> None:
    model = qs.load(ppocr_cls_onnx)
    x_cal, _ = realmodels.ppocr_cls_dataset(128, seed=1)
    x_eval, labels = realmodels.ppocr_cls_dataset(400, seed=2)
    name = model.inputs[0].name
    calib = qs.Dataset.from_arrays({name: x_cal})
    evaluation = qs.Dataset.from_arrays({name: x_eval}, labels=labels)
    q = qs.quantize(model, qs.StaticInt8(calibration="percentile", measure=False), calib)
    path = q.save(tmp_path / "cls.int8.onnx")
    size_ratio = path.stat().st_size / ppocr_cls_onnx.stat().st_size
    assert size_ratio < 0.5  # a small MobileNet: names and per-channel scales weigh too

    ref = predict(model, evaluation)[0]
    got = predict(qs.load(path), evaluation)[0]
    agreement = float(np.mean(ref.argmax(1) == got.argmax(1)))
    acc_f = float(np.mean(ref.argmax(1) == labels))
    acc_q = float(np.mean(got.argmax(1) == labels))
    kernels = integer_kernels(optimized_op_types(q.model))
    print(
        f"\nPP-OCR cls: float acc {acc_f:.4f}, int8 acc {acc_q:.4f}, top-1 agreement {agreement:.4f}, "
        f"size ratio {size_ratio:.3f}"
    )
    print(f"PP-OCR cls plan: {q.plan.summary()['quantized_by_op']}; ORT integer kernels {kernels}")
    assert agreement >= 0.99
    assert kernels.get("QLinearConv", 0) >= 10


def test_minilm_static_int8_keeps_embeddings(
    minilm_onnx: Path, minilm_tokenizer_json: Path, sentences: list[str], tmp_path: Path
) -> None:
    model = qs.load(minilm_onnx)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(sentences))
    cal_sent = [sentences[i] for i in order[:100]]
    eval_sent = [sentences[i] for i in order[100:]]
    calib = qs.Dataset.from_arrays(realmodels.minilm_dataset(cal_sent, minilm_tokenizer_json))
    evaluation = qs.Dataset.from_arrays(realmodels.minilm_dataset(eval_sent, minilm_tokenizer_json))
    q = qs.quantize(model, qs.StaticInt8(calibration="mse", batch_size=8, measure=False), calib)

    decisions = q.plan.decisions
    quantized_matmuls = [d for d in decisions if d.op_type == "MatMul" and d.action == "quantized"]
    assert len(quantized_matmuls) >= 36  # 6 layers x (q, k, v, out, ffn in, ffn out)
    assert not any("finfo" in t.tensor for t in q.plan.activations)
    for t in q.plan.activations:
        assert max(abs(t.range[0]), abs(t.range[1])) < 1e6, t  # no mask sentinel was quantized

    ref = predict(model, evaluation, batch_size=16)[0]
    got = predict(q.model, evaluation, batch_size=16)[0]
    cos = cosine_similarity(ref, got)
    size_ratio = q.save(tmp_path / "minilm.int8.onnx").stat().st_size / minilm_onnx.stat().st_size
    kernels = integer_kernels(optimized_op_types(q.model))
    print(f"\nMiniLM: mean cosine {cos.mean():.4f}, min {cos.min():.4f}, size ratio {size_ratio:.3f}")
    print(f"MiniLM ORT integer kernels {kernels}")
    assert cos.mean() >= 0.95
    # every MatMul weight is int8; the 47 MB word-embedding table (a Gather) still stays float
    assert size_ratio < 0.7
    float_bytes = q.model.parameter_bytes().get("float32", 0)
    assert float_bytes < 0.6 * minilm_onnx.stat().st_size
    assert sum(kernels.values()) >= 36
