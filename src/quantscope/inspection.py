"""What a model is made of, and what static-int8 would do with each node (no data needed)."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import onnx

from quantscope.config import StaticInt8
from quantscope.graph.prepare import lift_constants
from quantscope.methods.static_int8 import preview
from quantscope.model_io import external_data_files, load


def inspect_model(path: str | os.PathLike[str]) -> dict[str, Any]:
    model = load(path)
    p = Path(path)
    # the model's own file plus every external data file it refers to (whatever their names)
    external = external_data_files(onnx.load(str(p), load_external_data=False), p.parent)
    size = p.stat().st_size + sum(f.stat().st_size for f in external)
    decisions = preview(model, StaticInt8())
    weights = lift_constants(model)  # weights held in Constant nodes (Paddle2ONNX) count too
    by_action = Counter(d.action for d in decisions)
    return {
        "path": str(p),
        "file_bytes": size,
        "opset": model.opset,
        "ir_version": model.ir.ir_version,
        "producer": model.ir.producer_name,
        "inputs": [s.to_dict() for s in model.inputs],
        "outputs": [s.to_dict() for s in model.outputs],
        "ops": model.op_histogram(),
        "parameters": weights.parameter_count(),
        "parameter_bytes": weights.parameter_bytes(),
        "quantizable_by_op": dict(Counter(d.op_type for d in decisions if d.action == "quantized")),
        "quantizable": {
            "quantized": by_action.get("quantized", 0),
            "fused": by_action.get("fused", 0),
            "float": by_action.get("float", 0),
            "float_reasons": dict(Counter(d.reason for d in decisions if d.action == "float").most_common()),
        },
        "nodes": [d.to_dict() for d in decisions],
    }
