"""Parameter bytes by dtype: the one place that names a tensor's element type in results."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from quantscope.io import Model


def numpy_dtype_name(dtype: ir.DataType) -> str:
    """The NumPy-style name of an ONNX element type (``float32``, ``int8``, ``uint4``, ...)."""
    try:
        return np.dtype(dtype.numpy()).name
    except (TypeError, ValueError, NotImplementedError):
        return dtype.name.lower()


def parameter_bytes(model: Model) -> dict[str, int]:
    """Initializer bytes by NumPy-style dtype name (``float32``, ``int8``, ``uint4``, ...), largest first."""
    out: dict[str, int] = {}
    for value in model.ir.graph.initializers.values():
        tensor = value.const_value
        if tensor is None:
            continue
        name = numpy_dtype_name(tensor.dtype)
        out[name] = out.get(name, 0) + int(tensor.nbytes)
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def numpy_name_of(onnx_name: str) -> str:
    """A dtype name as ``Model.parameter_bytes`` writes it (``float``, ``double``) in NumPy style."""
    try:
        return numpy_dtype_name(ir.DataType[onnx_name.upper()])
    except KeyError:
        return onnx_name
