"""Deprecated alias of :mod:`quantscope.reporting.text`, kept for one release."""

from quantscope.reporting.text import render_text

__all__ = ["render_text"]
