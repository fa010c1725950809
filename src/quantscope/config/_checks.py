"""Value checks shared by every config class: each raises :class:`ConfigError` naming the field."""

from __future__ import annotations

from collections.abc import Iterable

from quantscope.errors import ConfigError


def check_int(name: str, value: object, lo: int, hi: int | None = None) -> None:
    """``value`` is an integer (not a bool) in ``[lo, hi]``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi is not None and value > hi):
        bound = f"between {lo} and {hi}" if hi is not None else f">= {lo}"
        raise ConfigError(f"{name}={value!r} is not valid; it must be an integer {bound}")


def check_choice(name: str, value: object, choices: Iterable[object]) -> None:
    """``value`` is one of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is not valid; choose one of: {', '.join(map(str, choices))}")


def check_bool(name: str, value: object, *, optional: bool = False) -> None:
    """``value`` is True or False (or None, meaning auto, when ``optional``)."""
    if optional and value is None:
        return
    if not isinstance(value, bool):
        allowed = "True, False or None (auto)" if optional else "True or False"
        raise ConfigError(f"{name} must be {allowed}, not {value!r}")


def check_number(name: str, value: object, lo: float, hi: float, *, hi_open: bool = False) -> None:
    """``value`` is a real number in ``(lo, hi]`` (or ``(lo, hi)`` when ``hi_open``)."""
    ok = not isinstance(value, bool) and isinstance(value, int | float)
    if ok:
        ok = lo < value < hi if hi_open else lo < value <= hi  # type: ignore[operator]
    if not ok:
        bound = f"({lo:g}, {hi:g})" if hi_open else f"({lo:g}, {hi:g}]"
        raise ConfigError(f"{name}={value!r} is not valid; it must be a number in {bound}")


def check_op_types(name: str, ops: object, allowed: tuple[str, ...]) -> tuple[str, ...]:
    """``ops`` is a non-empty sequence of op types among ``allowed``; returned as a tuple."""
    if isinstance(ops, str):
        raise ConfigError(f"{name} must be a sequence of op types, not one string {ops!r}")
    ops = tuple(ops)  # type: ignore[arg-type]
    bad = [op for op in ops if op not in allowed]
    if bad or not ops:
        raise ConfigError(f"{name}={ops!r} is not valid; choose among: {', '.join(allowed)}")
    return ops
