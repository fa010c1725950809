"""Parameter bytes by dtype: results name element types the NumPy way (``float32``, ``int8``)."""

from __future__ import annotations

import onnx_ir as ir

from quantscope.model_io import Model, numpy_dtype_name

__all__ = ["numpy_dtype_name", "numpy_name_of", "parameter_bytes"]


def parameter_bytes(model: Model) -> dict[str, int]:
    """Initializer bytes by NumPy-style dtype name, largest first (see :meth:`Model.parameter_bytes`)."""
    return model.parameter_bytes()


def numpy_name_of(onnx_name: str) -> str:
    """An ONNX-style dtype name (``float``, ``double``, as results of schema 1 wrote them) in NumPy style."""
    try:
        return numpy_dtype_name(ir.DataType[onnx_name.upper()])
    except KeyError:
        return onnx_name
