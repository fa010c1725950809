"""Exporter failures as one clear line: ANSI colour codes stripped, the root cause kept.

``torch.onnx.export`` wraps the real error (``torch.export`` refusing a construct, an operator
with no ONNX translation) in a ``TorchExportError`` whose first line is a banner with terminal
colour codes ("Failed to export the model with torch.export. This is step 1/3 ..."); the cause
is in its ``__cause__`` chain and in an "Exception summary" section. :func:`root_cause` finds it.
The full traceback stays on the exception chain (``quantscope -v`` shows it, cleaned).
"""

from __future__ import annotations

import re
import traceback
from typing import Final

ANSI: Final = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07")
_SUMMARY: Final = re.compile(r"## Exception summary\s*\n+\s*(.+)")
_CLASS: Final = re.compile(r"^<class '([\w.]+)'>:\s*")
MAX_LINE: Final = 500


def strip_ansi(text: str) -> str:
    """``text`` without terminal escape sequences (colours, cursor movements)."""
    return ANSI.sub("", text)


def _first_line(text: str) -> str:
    lines = [ln.strip() for ln in strip_ansi(text).splitlines() if ln.strip()]
    return lines[0][:MAX_LINE] if lines else ""


def root_cause(exc: BaseException) -> str:
    """``Type: message`` of the deepest cause of ``exc``, first line only, without colour codes."""
    deepest = exc
    seen = {id(exc)}
    while True:
        nxt = deepest.__cause__ or (None if deepest.__suppress_context__ else deepest.__context__)
        if nxt is None or id(nxt) in seen:
            break
        seen.add(id(nxt))
        deepest = nxt
    summary = _SUMMARY.search(strip_ansi(str(exc)))
    if deepest is exc and summary is not None:  # the cause survives only as text
        line = summary.group(1).strip()
        match = _CLASS.match(line)
        if match:
            line = f"{match.group(1).rsplit('.', 1)[-1]}: {line[match.end():]}"
        return line[:MAX_LINE]
    message = _first_line(str(deepest))
    return f"{type(deepest).__name__}: {message}" if message else type(deepest).__name__


def clean_traceback(exc: BaseException) -> str:
    """The whole chained traceback of ``exc`` as text, colour codes stripped (for ``-v``)."""
    return strip_ansi("".join(traceback.format_exception(exc)))
