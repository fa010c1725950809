"""Renderers over :class:`~quantscope.analysis.results.Results`: terminal, Markdown, HTML.

``render(results, out_dir)`` writes ``index.html`` (one self-contained page), ``summary.md`` and
``results.json`` into ``out_dir``; ``load_results(path)`` reads a ``results.json`` back, so
``quantscope report out/results.json`` re-renders. ``render_text`` (rich), ``render_markdown`` and
``render_html`` (matplotlib) are imported only when used, so importing this package stays light.
``quantscope.report`` (``qs.report``) is :func:`render`; this package used to be named
``quantscope.report`` and that import path still works for one release (a deprecated alias).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from quantscope.analysis.results import Results
from quantscope.errors import ConfigError, DataError, OutputError
from quantscope.transaction import write_files

log = logging.getLogger(__name__)

__all__ = ["load_results", "render", "render_html", "render_markdown", "render_text"]

_LAZY = {"render_html": "html", "render_markdown": "markdown", "render_text": "text"}


def __getattr__(name: str) -> object:
    """``render_html``/``render_markdown``/``render_text`` import matplotlib or rich only when asked."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def render(results: Results, out_dir: str | os.PathLike[str]) -> Path:
    """Write ``index.html``, ``summary.md`` and ``results.json`` to ``out_dir``; return its path.

    Creates ``out_dir`` when missing and replaces only these three files, as one set.
    """
    from quantscope.reporting.html import render_html
    from quantscope.reporting.markdown import render_markdown

    if not isinstance(results, Results):
        raise ConfigError(
            f"report() takes a Results (from analyze, sweep, or load_results), not "
            f"{type(results).__name__}"
        )
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the report directory {out}: {exc.strerror or exc}") from exc
    if not out.is_dir():
        raise OutputError(f"{out} exists and is not a directory; choose another report directory")
    page = render_html(results)
    summary = render_markdown(results)
    data = json.dumps(results.to_dict(), indent=2, allow_nan=True) + "\n"
    # one set: a full disk or a signal never leaves half of an old report replaced
    write_files(out, {"results.json": data.encode(), "summary.md": summary.encode(), "index.html": page.encode()})
    log.info("report written to %s (index.html %d KB)", out, len(page) // 1024)
    return out


def load_results(path: str | os.PathLike[str]) -> Results:
    """Read a ``results.json``; a missing, corrupt or foreign file raises :class:`DataError`."""
    p = Path(path)
    if p.is_dir():
        p = p / "results.json"
    try:
        return Results.load(p)
    except ConfigError as exc:
        raise DataError(f"{exc}; re-create it with 'quantscope analyze' or 'quantscope sweep'") from exc
    except (TypeError, KeyError, ValueError, AttributeError) as exc:
        raise DataError(
            f"results file {p} does not match the results schema ({type(exc).__name__}: {exc}); "
            "re-create it with 'quantscope analyze' or 'quantscope sweep'"
        ) from exc
