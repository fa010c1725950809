"""static-int8: calibrated full-integer int8 written as QDQ (see :mod:`.method`, op rules in :mod:`.rules`)."""

from quantscope.methods.static_int8.method import (
    StaticInt8Method,
    preview,
    s8s8_warning,
)

__all__ = ["StaticInt8Method", "preview", "s8s8_warning"]
