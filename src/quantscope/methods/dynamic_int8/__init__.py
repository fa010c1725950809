"""dynamic-int8: int8 weights stored ahead of time, activations quantized at run time (see :mod:`.method`)."""

from quantscope.methods.dynamic_int8.method import DynamicInt8Method, conv_slow_warning

__all__ = ["DynamicInt8Method", "conv_slow_warning"]
