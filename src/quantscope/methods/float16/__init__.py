"""float16: weights and compute in float16, float32 at the boundary (see :mod:`.method`)."""

from quantscope.methods.float16.method import BLOCK_REASONS, Float16Method
from quantscope.methods.float16.writer import MIN_WEIGHT_ELEMENTS

__all__ = ["BLOCK_REASONS", "MIN_WEIGHT_ELEMENTS", "Float16Method"]
