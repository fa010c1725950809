"""The bundled example end to end: quantize the digits CNN, compare it with the float model."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from quantscope.analysis.evaluate import measure_latency, predict
from quantscope.calibrate import Progress
from quantscope.config import StaticInt8
from quantscope.data import Dataset
from quantscope.examples import DIGITS_CALIB, DIGITS_EVAL, DIGITS_MODEL, example_path
from quantscope.io import atomic_write_text, load
from quantscope.quantize import quantize
from quantscope.runtime import optimized_op_types

INTEGER_KERNELS = ("QLinearConv", "QLinearMatMul", "MatMulInteger", "MatMulIntegerToFloat", "QGemm",
                   "QLinearAdd", "QLinearGlobalAveragePool", "QLinearAveragePool", "QLinearConcat",
                   "ConvInteger", "DynamicQuantizeMatMul")


def integer_kernels(op_counts: dict[str, int]) -> dict[str, int]:
    return {op: n for op, n in op_counts.items() if op in INTEGER_KERNELS}


def run_demo(out_dir: Path, *, progress: Progress | None = None) -> dict[str, Any]:
    model = load(example_path(DIGITS_MODEL))
    calib = Dataset.from_npz(example_path(DIGITS_CALIB))
    evaluation = Dataset.from_npz(example_path(DIGITS_EVAL))
    labels = evaluation.labels
    assert labels is not None
    variants: list[dict[str, Any]] = []
    float_logits = predict(model, evaluation)[0]
    feeds1 = next(iter(evaluation.batches(1))).inputs
    feeds32 = next(iter(evaluation.batches(32))).inputs

    def describe(name: str, m, logits: np.ndarray, size: int, qtime: float | None) -> dict[str, Any]:
        return {
            "name": name,
            "accuracy": float(np.mean(logits.argmax(1) == labels)),
            "agreement": float(np.mean(logits.argmax(1) == float_logits.argmax(1))),
            "size": size,
            "latency_b1_ms": measure_latency(m, feeds1, threads=1, runs=100).median_ms,
            "latency_b32_ms": measure_latency(m, feeds32, threads=1, runs=20).median_ms,
            "quantize_seconds": qtime,
        }

    variants.append(describe("float32", model, float_logits, example_path(DIGITS_MODEL).stat().st_size, None))
    t0 = time.perf_counter()
    q = quantize(model, StaticInt8(calibration="percentile"), calib, progress=progress)
    qtime = time.perf_counter() - t0
    path = q.save(out_dir / "digits_cnn.int8.onnx")
    q_logits = predict(q.model, evaluation)[0]
    variants.append(describe("static-int8", q.model, q_logits, path.stat().st_size, qtime))
    result = {
        "model": DIGITS_MODEL,
        "variants": variants,
        "integer_kernels": integer_kernels(optimized_op_types(q.model)),
        "plan": q.plan.summary(),
    }
    atomic_write_text(out_dir / "summary.json", json.dumps(result, indent=2))
    return result
