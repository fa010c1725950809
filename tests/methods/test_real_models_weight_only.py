"""weight-int4 / weight-int8 on all-MiniLM-L6-v2 (a real pretrained transformer) with real sentences.

Run with ``-s`` to see the measured values: mean cosine of the sentence embeddings against
float, MatMul weight bytes against float, the HQQ gain over round-to-nearest, and a rough
single-thread latency (printed, never asserted: the machine is shared).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

import quantscope as qs
import realmodels
from quantscope.analysis.evaluate import measure_latency, predict
from quantscope.config import WeightInt4
from quantscope.graph.queries import const_array
from quantscope.numerics.blockwise import quantize_blockwise, reconstruction_sqnr
from quantscope.numerics.metrics import cosine_similarity
from quantscope.runtime import optimized_op_types

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def minilm(minilm_onnx: Path, minilm_tokenizer_json: Path, sentences: list[str]):
    model = qs.load(minilm_onnx)
    order = np.random.default_rng(0).permutation(len(sentences))
    evaluation = qs.Dataset.from_arrays(
        realmodels.minilm_dataset([sentences[i] for i in order[:64]], minilm_tokenizer_json)
    )
    return model, evaluation, predict(model, evaluation, batch_size=16)[0]


def _matmul_weights(model: qs.Model) -> list[np.ndarray]:
    out = []
    for node in model.ir.graph:
        if node.op_type == "MatMul":
            w = const_array(node.inputs[1])
            if w is not None and w.ndim == 2:
                out.append(w)
    return out


def _stored_weight_bytes(path: Path) -> int:
    """Bytes of the MatMulNBits tensors (B, scales, zero points) in the saved file."""
    proto = onnx.load(str(path))
    inits = {t.name: t for t in proto.graph.initializer}
    total = 0
    for node in proto.graph.node:
        if node.op_type == "MatMulNBits":
            for name in node.input[1:4]:
                if name:
                    total += len(inits[name].raw_data)
    return total


def test_minilm_weight_int4_keeps_embeddings_in_16_percent(minilm, tmp_path: Path) -> None:
    model, evaluation, ref = minilm
    q = qs.quantize(model, WeightInt4())
    path = q.save(tmp_path / "minilm.int4.onnx")
    got = predict(qs.load(path), evaluation, batch_size=16)[0]
    cos = cosine_similarity(ref, got)

    float_bytes = sum(4 * w.size for w in _matmul_weights(model))
    stored = _stored_weight_bytes(path)
    ratio = stored / float_bytes
    quantized = [d for d in q.plan.decisions if d.action == "quantized"]
    kernels = optimized_op_types(q.model)
    print(
        f"\nMiniLM weight-int4 (block 32, symmetric, RTN): mean cosine {cos.mean():.4f} "
        f"(min {cos.min():.4f}); MatMul weight bytes {stored} / {float_bytes} float = {ratio:.2%}; "
        f"file {path.stat().st_size / model.path.stat().st_size:.3f} of float; kernels {kernels}"
    )
    assert len(quantized) == 36  # 6 layers x (q, k, v, out, ffn in, ffn out)
    assert kernels.get("MatMulNBits", 0) == 36
    assert stored == q.plan.extra["weight_bytes"]["quantized"]
    assert ratio <= 0.16
    assert cos.mean() >= 0.97
    sidecar = path.with_name(path.stem + ".quantscope.json")
    recorded = json.loads(sidecar.read_text())["plan"]
    assert recorded["extra"]["format"] == "matmulnbits"
    assert sum(d["action"] == "quantized" for d in recorded["decisions"]) == 36


def test_minilm_weight_int8_is_near_lossless(minilm) -> None:
    model, evaluation, ref = minilm
    q = qs.quantize(model, qs.WeightInt8(block_size=64))
    cos = cosine_similarity(ref, predict(q.model, evaluation, batch_size=16)[0])
    print(f"\nMiniLM weight-int8 (block 64): mean cosine {cos.mean():.5f} (min {cos.min():.5f})")
    assert cos.mean() >= 0.999
    assert any("slower than float" in w for w in q.plan.warnings)


@pytest.mark.parametrize("symmetric", [True, False], ids=["symmetric", "asymmetric"])
def test_hqq_beats_round_to_nearest_on_minilm_weights(minilm, symmetric: bool) -> None:
    model, _, _ = minilm
    weights = _matmul_weights(model)[:6]  # the first layer: q, k, v, out, ffn in, ffn out
    gains = []
    for w in weights:
        rtn = quantize_blockwise(w, 4, 32, symmetric=symmetric, algorithm="rtn").dequantize()
        hqq = quantize_blockwise(w, 4, 32, symmetric=symmetric, algorithm="hqq").dequantize()
        gains.append(reconstruction_sqnr(w, hqq) - reconstruction_sqnr(w, rtn))
    print(
        f"\nHQQ vs RTN, 4-bit block 32 {'symmetric' if symmetric else 'asymmetric'} on MiniLM "
        f"layer-0 weights: SQNR gain mean {np.mean(gains):+.2f} dB, min {min(gains):+.2f}, "
        f"max {max(gains):+.2f}"
    )
    assert min(gains) >= 0.0
    assert np.mean(gains) > 0.1


def test_minilm_hqq_and_latency(minilm) -> None:
    """HQQ against RTN on the embeddings; rough single-thread latency vs float (printed only)."""
    model, evaluation, ref = minilm
    rtn = qs.quantize(model, WeightInt4())
    hqq = qs.quantize(model, WeightInt4(algorithm="hqq"))
    cos_rtn = cosine_similarity(ref, predict(rtn.model, evaluation, batch_size=16)[0]).mean()
    cos_hqq = cosine_similarity(ref, predict(hqq.model, evaluation, batch_size=16)[0]).mean()
    gain = hqq.plan.extra["algorithm_gain_db"]
    feeds = {k: v[:1, :128] for k, v in next(iter(evaluation.batches(1))).inputs.items()}
    lat = {
        name: measure_latency(m, feeds, threads=1, warmup=2, runs=8).median_ms
        for name, m in (("float", model), ("int4", rtn.model))
    }
    print(
        f"\nMiniLM weight-int4 mean cosine: RTN {cos_rtn:.4f}, HQQ {cos_hqq:.4f}; HQQ weight SQNR "
        f"gain {gain['mean']:+.2f} dB (min {gain['min']:+.2f}); 1-thread latency 1 x 128 "
        f"tokens: float {lat['float']:.1f} ms, int4 {lat['int4']:.1f} ms "
        f"({lat['float'] / lat['int4']:.2f}x)"
    )
    assert gain["min"] >= 0.0
    assert cos_hqq >= cos_rtn - 0.005  # the solver must not cost accuracy on the real model
