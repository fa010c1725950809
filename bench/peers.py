"""The peers, configured two ways: as their documentation advises for this CPU and model class
(``docs``), and with their defaults (``defaults``), so both kinds of user are represented.

* **onnxruntime.quantization** (docs): ``quant_pre_process`` first, QDQ, U8S8 (uint8 activations,
  int8 weights), per-channel weights, ``reduce_range=True`` on an x86 CPU without VNNI (its docs:
  int8 dot products saturate in int16 there), and for transformers only ``MatMul`` quantized (its
  transformer guidance); the defaults row calls ``quantize_static`` with the calibrator only
  (no pre-processing, int8 activations, per-tensor weights, every op type).
* **NNCF** ``nncf.quantize`` on the ONNX model (docs: ``subset_size`` = the calibration set,
  ``model_type=TRANSFORMER`` for transformers; defaults: ``nncf.quantize(model, dataset)``), and
  ``nncf.compress_weights`` (int4, symmetric, group 32) for the weight-only row.

Each function here runs inside :mod:`bench.worker` (a fresh process per job).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.worker_io import ShardReader, batch_for, shard_batches

CONFIGS = ("docs", "defaults")


def describe(tool: str, config: str, variant: str, *, vnni: bool, transformer: bool) -> str:
    """The peer's settings for one row, in words (shown in the results)."""
    if tool == "ort":
        if variant == "int4":
            return "MatMulNBitsQuantizer(bits=4, block_size=32, is_symmetric=True)"
        if variant == "dynamic":
            return ("quantize_dynamic(QInt8, per_channel=True" + (", reduce_range=True" if not vnni else "") + ")"
                    if config == "docs" else "quantize_dynamic() defaults")
        if config == "defaults":
            return "quantize_static(calibrate_method) defaults: QDQ S8S8, per-tensor, every op, no pre-processing"
        parts = ["quant_pre_process", "QDQ U8S8", "per_channel=True"]
        parts += ["reduce_range=True (no VNNI)"] if not vnni else []
        parts += ["op_types_to_quantize=[MatMul] (transformer)"] if transformer else []
        return ", ".join(parts)
    if tool == "nncf":
        if variant == "int4":
            return "nncf.compress_weights(INT4_SYM, group_size=32)"
        if config == "defaults":
            return "nncf.quantize(model, dataset) defaults"
        return "nncf.quantize(subset_size=calibration set" + (", model_type=TRANSFORMER" if transformer else "") + ")"
    return ""


def run_ort(spec: dict[str, Any]) -> dict[str, Any]:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_dynamic,
        quantize_static,
    )

    variant, docs = spec["variant"], spec.get("config", "docs") == "docs"
    reduce_range = docs and not spec.get("vnni", True)
    t0 = time.perf_counter()
    if variant == "preprocess":
        quant_pre_process(spec["model"], spec["out"])
    elif variant.startswith("static-"):
        methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                   "percentile": CalibrationMethod.Percentile}
        reader = type("Reader", (ShardReader, CalibrationDataReader), {})(spec["calib"], spec["samples"])
        method = methods[variant.removeprefix("static-")]
        if docs:
            quantize_static(
                spec["model"], spec["out"], reader, quant_format=QuantFormat.QDQ, per_channel=True,
                reduce_range=reduce_range, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                calibrate_method=method, op_types_to_quantize=["MatMul"] if spec.get("transformer") else None,
            )
        else:
            quantize_static(spec["model"], spec["out"], reader, calibrate_method=method)
    elif variant == "dynamic":
        if docs:
            quantize_dynamic(spec["model"], spec["out"], weight_type=QuantType.QInt8, per_channel=True,
                             reduce_range=reduce_range)
        else:
            quantize_dynamic(spec["model"], spec["out"])
    elif variant == "int4":
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

        quantizer = MatMulNBitsQuantizer(spec["model"], bits=4, block_size=32, is_symmetric=True)
        quantizer.process()
        quantizer.model.save_model_to_file(spec["out"], use_external_data_format=False)
    else:
        raise LookupError(f"onnxruntime.quantization has no {variant} mode in this benchmark")
    return {"seconds": time.perf_counter() - t0}


def run_nncf(spec: dict[str, Any]) -> dict[str, Any]:
    try:
        import nncf
    except ImportError as exc:  # recorded as "not available" with the reason
        raise LookupError(f"nncf is not importable: {exc}") from exc
    import onnx

    variant, docs = spec["variant"], spec.get("config", "docs") == "docs"
    t0 = time.perf_counter()
    model = onnx.load(spec["model"])
    if variant == "int4":
        out = nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT4_SYM, group_size=32)
    elif variant == "static-nncf":
        n = spec["samples"]
        # one sample per item: NNCF's subset_size counts items
        dataset = nncf.Dataset(list(shard_batches(Path(spec["calib"]), 1)))
        kwargs: dict[str, Any] = {}
        if docs:
            kwargs["subset_size"] = n
            if spec.get("transformer"):
                kwargs["model_type"] = nncf.ModelType.TRANSFORMER
        out = nncf.quantize(model, dataset, **kwargs)
    else:
        raise LookupError(f"NNCF has no {variant} mode in this benchmark")
    onnx.save(out, spec["out"])
    return {"seconds": time.perf_counter() - t0}


__all__ = ["CONFIGS", "batch_for", "describe", "run_nncf", "run_ort"]
