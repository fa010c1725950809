"""Model-controlled text made safe for a terminal: control characters shown, not obeyed.

Node, op, input, producer, graph and metadata names come from the model file. Printed raw, an
``ESC`` sequence in one clears the screen, retitles the window or recolours what follows, and a
bidi override reorders a warning. :func:`clean` spells every such character as an escape
(``\\x1b``, ``\\u202e``); :func:`markup` also escapes rich's markup, for text passed to rich.
Every printer of the command line goes through one of the two.
"""

from __future__ import annotations

import unicodedata

from rich.markup import escape as _escape_markup

# bidi embeddings, overrides and isolates, and the invisible direction marks
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _unsafe(ch: str) -> bool:
    return ch in _BIDI or unicodedata.category(ch) in ("Cc", "Zl", "Zp")


def _spell(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def clean(text: object, *, newlines: bool = False) -> str:
    """``text`` with control characters (C0, DEL, C1), bidi controls and line separators escaped.

    ``newlines=True`` keeps ``\\n`` (and ``\\t``) as they are, for messages of several lines.
    """
    s = str(text)
    if s.isprintable():
        return s
    keep = "\n\t" if newlines else ""
    return "".join(_spell(ch) if ch not in keep and _unsafe(ch) else ch for ch in s)


def markup(text: object, *, newlines: bool = False) -> str:
    """:func:`clean`, then rich's markup escaped: for text given to a rich console or table."""
    return _escape_markup(clean(text, newlines=newlines))
