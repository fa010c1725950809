"""Text shifts, on token ids (N, L) with an optional attention mask."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Final

import numpy as np

from quantscope.analysis.shifts.common import ShiftSpec, check_severity, linear, named_like, pct
from quantscope.errors import DataError


def _real_positions(ids: np.ndarray, mask: np.ndarray | None, pad_id: int) -> np.ndarray:
    if mask is None:
        return ids != pad_id
    mask = np.asarray(mask)
    if mask.shape != ids.shape:
        raise DataError(f"attention mask shape {mask.shape} differs from token ids shape {ids.shape}")
    return mask != 0


def _editable(real: np.ndarray, keep_ends: bool) -> np.ndarray:
    """Real positions a shift may change (all but the first and last real token if keep_ends)."""
    edit = real.copy()
    if keep_ends:
        for row in range(real.shape[0]):
            where = np.flatnonzero(real[row])
            if len(where):
                edit[row, where[0]] = False
                edit[row, where[-1]] = False
    return edit


def _check_ids(ids: np.ndarray) -> np.ndarray:
    ids = np.asarray(ids)
    if ids.ndim != 2 or ids.dtype.kind not in "iu":
        raise DataError(
            f"text shifts need integer token ids of shape (samples, length); got {ids.dtype} "
            f"{ids.shape}"
        )
    return ids


def _compact(ids: np.ndarray, real: np.ndarray, drop: np.ndarray, pad_id: int) -> np.ndarray:
    """Remove ``drop`` positions from each row's real tokens, closing the gap; pad the freed end."""
    out = ids.copy()
    for row in range(ids.shape[0]):
        where = np.flatnonzero(real[row])
        if not len(where):
            continue
        kept = ids[row, where[~drop[row, where]]]
        out[row, where] = pad_id
        out[row, where[: len(kept)]] = kept
    return out


def _text(fn: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    """Wrap a shift over token ids and their real positions into the public signature."""

    def shift(
        x: np.ndarray,
        severity: float,
        rng: np.random.Generator,
        /,
        *,
        mask: np.ndarray | None = None,
        pad_id: int = 0,
        vocab_size: int | None = None,
        keep_ends: bool = True,
        **_: Any,
    ) -> np.ndarray:
        s = check_severity(severity)
        ids = _check_ids(x)
        if s == 0.0:
            return ids.copy()
        real = _real_positions(ids, mask, pad_id)
        return fn(ids, s, rng, real, pad_id=pad_id, vocab_size=vocab_size, keep_ends=keep_ends)

    return named_like(shift, fn)


def _token_dropout(
    ids: np.ndarray, s: float, rng: np.random.Generator, real: np.ndarray, *, pad_id: int, keep_ends: bool, **_: Any
) -> np.ndarray:
    """Missing words: a fraction (half at severity 1) of the real tokens removed, the rest closed up."""
    drop = _editable(real, keep_ends) & (rng.random(ids.shape) < _dropped_fraction(s))
    return _compact(ids, real, drop, pad_id)


def _token_substitution(
    ids: np.ndarray, s: float, rng: np.random.Generator, real: np.ndarray, *, pad_id: int,
    vocab_size: int | None, keep_ends: bool,
) -> np.ndarray:
    """Typos and noise: a fraction (half at severity 1) of the real tokens replaced by random ids."""
    vocab = int(vocab_size) if vocab_size is not None else int(ids.max()) + 1
    change = _editable(real, keep_ends) & (rng.random(ids.shape) < _substituted_fraction(s))
    # draw from the ids other than pad_id, so a substituted token is never read as padding
    draws = rng.integers(0, max(1, vocab - 1), size=ids.shape)
    draws = np.where(draws >= pad_id, draws + 1, draws) if vocab > 1 else draws
    return np.where(change, draws, ids).astype(ids.dtype)


def _truncation(
    ids: np.ndarray, s: float, rng: np.random.Generator, real: np.ndarray, *, pad_id: int, keep_ends: bool, **_: Any
) -> np.ndarray:
    """Cut-off inputs: only the first fraction of each sequence kept (a quarter at severity 1)."""
    drop = np.zeros_like(real)
    keep = _kept_fraction(s)
    for row in range(ids.shape[0]):
        where = np.flatnonzero(real[row])
        if len(where) <= 2:
            continue
        n_keep = max(1, math.ceil(len(where) * keep))
        body = where[1:-1] if keep_ends else where
        cut = body[max(0, n_keep - (2 if keep_ends else 0)) :]
        drop[row, cut] = True
    return _compact(ids, real, drop, pad_id)


_dropped_fraction = linear(0.0, 0.5)
_substituted_fraction = linear(0.0, 0.5)
_kept_fraction = linear(1.0, -0.75)

token_dropout = _text(_token_dropout)
token_substitution = _text(_token_substitution)
truncation = _text(_truncation)


def derive_mask(
    mask: np.ndarray, before: np.ndarray, after: np.ndarray, pad_id: int
) -> np.ndarray:
    """The attention mask after a text shift: positions the shift turned into ``pad_id`` are 0."""
    out = np.array(mask, copy=True)
    out[(after == pad_id) & (before != pad_id)] = 0
    return out


SPECS: Final[tuple[ShiftSpec, ...]] = (
    ShiftSpec("token_dropout", "text", token_dropout, lambda s: f"{pct(_dropped_fraction(s))} of the tokens are dropped"),
    ShiftSpec(
        "token_substitution", "text", token_substitution,
        lambda s: f"{pct(_substituted_fraction(s))} of the tokens are replaced by random ones",
    ),
    ShiftSpec("truncation", "text", truncation, lambda s: f"inputs are truncated to {pct(_kept_fraction(s))} of their length"),
)
