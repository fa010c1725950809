"""What an analysis records about its setting: the model, the data and the machine it ran on."""

from __future__ import annotations

import os
import platform
from typing import Any

from quantscope.data import Dataset
from quantscope.io import Model
from quantscope.quantization import library_versions
from quantscope.runtime import cpu_flags, int16_saturation_risk

_CPU_FLAGS = ("avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8")


def model_info(model: Model) -> dict[str, Any]:
    return {
        "name": model.path.stem if model.path is not None else (model.ir.graph.name or "model"),
        "path": str(model.path) if model.path is not None else None,
        "fingerprint": model.fingerprint,
        "inputs": [s.to_dict() for s in model.inputs],
        "outputs": [s.to_dict() for s in model.outputs],
        "opset": model.opset,
        "parameters": model.parameter_count(),
    }


def data_name(data: Dataset) -> str:
    text = repr(data)
    return text[len("Dataset("):-1] if text.startswith("Dataset(") else text


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    flags = cpu_flags()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "flags": [f for f in _CPU_FLAGS if f in flags],
        "int8_dot_in_int16": int16_saturation_risk(),
        "platform": platform.platform(),
        "versions": library_versions(),
    }

