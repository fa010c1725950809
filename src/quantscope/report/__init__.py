"""Deprecated alias of :mod:`quantscope.reporting`, kept for one release.

``quantscope.report`` is the function :func:`quantscope.reporting.render` (``qs.report(results,
dir)``); the renderers live in :mod:`quantscope.reporting`. This package only keeps the old import
paths (``from quantscope.report import render``) working. ``quantscope/__init__.py`` imports it
before binding ``report`` to the function, so importing it later never replaces ``qs.report``.
"""

from __future__ import annotations

from quantscope.reporting import load_results, render

__all__ = ["load_results", "render", "render_html", "render_markdown", "render_text"]


def __getattr__(name: str) -> object:
    """The renderers, imported from :mod:`quantscope.reporting` only when asked."""
    import quantscope.reporting

    return getattr(quantscope.reporting, name)
