"""Deprecated name of :mod:`quantscope.inspection`, kept for one release.

``inspect`` shadows the standard library's module of the same name; import from
:mod:`quantscope.inspection` instead. This module only re-exports its names.
"""

from quantscope.inspection import inspect_model

__all__ = ["inspect_model"]
