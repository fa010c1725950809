"""Input files the command line reads itself: checked readable, JSON bounded in size and depth.

click's ``Path(exists=True, readable=True)`` would refuse an unreadable file with exit 2 (a
command line that does not parse); quantscope refuses inputs with exit 3, so these checks are
its own and name the fix.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from quantscope.errors import ConfigError, QuantscopeError

MAX_JSON_BYTES = 64 * 1024 * 1024
MAX_JSON_DEPTH = 64


def readable(path: Path | None, what: str, error: type[QuantscopeError] = ConfigError) -> Path | None:
    """``path`` if it exists and can be read (a file, or a folder that can be listed); ``error`` otherwise."""
    if path is None:
        return None
    if not path.exists():
        return path  # the reader says "not found" in its own words
    if not os.access(path, os.R_OK | (os.X_OK if path.is_dir() else 0)):
        raise error(f"cannot read {what} {path}: permission denied; make it readable (chmod u+r) or copy it")
    return path


def _depth(value: Any) -> int:
    """How deeply lists and objects nest in ``value`` (iterative: no recursion limit to hit)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            stack.extend((v, level + 1) for v in (item.values() if isinstance(item, dict) else item))
    return deepest


def read_json_file(path: Path, what: str, error: type[QuantscopeError] = ConfigError, *, allow_nan: bool = False) -> Any:
    """The JSON in ``path``: UTF-8, at most :data:`MAX_JSON_BYTES`, nested at most :data:`MAX_JSON_DEPTH` deep.

    ``NaN`` and ``Infinity`` (not JSON, but Python writes them) are refused unless ``allow_nan``.
    """
    readable(path, what, error)
    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            raise error(f"cannot read {what} {path}: it is {path.stat().st_size:,} bytes; a JSON {what} is at most "
                        f"{MAX_JSON_BYTES:,}: is it the right file?")
        raw = path.read_bytes()
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror or exc}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"cannot read {what} {path}: it is not UTF-8 text (byte {exc.start}: {raw[exc.start:exc.start + 1]!r}); "
                    "save it as UTF-8 JSON") from None
    try:
        data = json.loads(text) if allow_nan else json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        data = None
        depth = MAX_JSON_DEPTH + 1
    except (json.JSONDecodeError, ValueError) as exc:
        raise error(f"cannot read {what} {path}: it is not valid JSON: {exc}; fix or re-create it") from None
    else:
        depth = _depth(data)
    if depth > MAX_JSON_DEPTH:
        raise error(f"cannot read {what} {path}: its lists/objects nest more than {MAX_JSON_DEPTH} deep; "
                    "it is not a file quantscope wrote: fix or re-create it")
    return data


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


MEASURES = frozenset({"size_bytes", "samples", "median_ms", "p90_ms", "peak_rss_mb", "baseline_rss_mb", "runs",
                      "batch", "threads", "cores", "total_uj"})
"""Keys of results.json whose numbers are sizes, counts or times: finite, not negative."""
LARGEST = 1e15


def absurd_number(data: Any) -> str | None:
    """Where ``data`` (a parsed results.json) holds a number no analysis writes; None if nowhere.

    Any number beyond ±10^15, and a size, count or time (:data:`MEASURES`) that is negative,
    infinite or NaN.
    """
    stack: list[tuple[str, Any]] = [("", data)]
    while stack:
        key, item = stack.pop()
        if isinstance(item, dict):
            stack.extend((str(k), v) for k, v in item.items())
        elif isinstance(item, list):
            stack.extend((key, v) for v in item)
        elif isinstance(item, int | float) and not isinstance(item, bool):
            measure = key in MEASURES
            if (measure and not 0 <= item <= LARGEST) or (item == item and LARGEST < abs(item) < float("inf")):
                return f"{key or 'a value'} = {item:.6g}"
    return None
