"""weight-int8 and weight-int4: block-wise weight-only quantization (see :mod:`.method`)."""

from quantscope.methods.weight_only.method import (
    INT8_SPEED_WARNING,
    WeightInt4Method,
    WeightInt8Method,
)

__all__ = ["INT8_SPEED_WARNING", "WeightInt4Method", "WeightInt8Method"]
