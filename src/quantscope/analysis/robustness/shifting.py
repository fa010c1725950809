"""Applying a modality's shifts to the model's inputs, with the facts each shift needs."""

from __future__ import annotations

import inspect
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from quantscope.analysis import shifts as S
from quantscope.analysis.robustness.data import EvalArrays
from quantscope.errors import ConfigError

ShiftsArg = Sequence[str | Callable[..., np.ndarray]] | Mapping[str, Callable[..., np.ndarray]] | None


def resolve_shifts(shifts: ShiftsArg, modality: str) -> list[S.ShiftSpec]:
    builtin = S.shifts_for(modality)
    if shifts is None:
        return list(builtin.values())
    if isinstance(shifts, Mapping):
        return [S.user_shift(str(name), fn, modality) for name, fn in shifts.items()]
    if isinstance(shifts, str):
        shifts = [shifts]
    specs = []
    for item in shifts:
        if isinstance(item, str):
            if item not in builtin:
                raise ConfigError(f"no {modality} shift named {item!r}; choose from {sorted(builtin)}")
            specs.append(builtin[item])
        elif callable(item):
            specs.append(S.user_shift(getattr(item, "__name__", "custom"), item, modality))
        else:
            raise ConfigError(f"a shift is a name or a function, not {type(item).__name__}")
    names = [s.name for s in specs]
    if len(set(names)) != len(names) or not names:
        raise ConfigError(f"shifts must be a non-empty list of distinct shifts, got {names}")
    return specs


def _call(fn: Callable[..., np.ndarray], x: np.ndarray, s: float, rng: np.random.Generator, info: dict[str, Any]) -> np.ndarray:
    """Call a shift with the info keywords it accepts (all of them if it takes ``**info``)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        params = {}
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        info = {k: v for k, v in info.items() if k in params}
    y = np.asarray(fn(x, s, rng, **info))
    if y.shape != x.shape:
        raise ConfigError(f"shift {getattr(fn, '__name__', fn)!r} changed the shape {x.shape} to {y.shape}")
    return y.astype(x.dtype, copy=False)


class Shifter:
    """Which inputs a modality's shifts change, with the facts the shifts need."""

    def __init__(
        self,
        modality: str,
        arrays: EvalArrays,
        *,
        inputs: Sequence[str] | None,
        layout: str | None,
        value_range: tuple[float, float] | None,
        pad_id: int | None,
    ) -> None:
        self.modality = modality
        names = list(arrays.inputs)
        if inputs is not None:
            unknown = [n for n in inputs if n not in names]
            if unknown:
                raise ConfigError(f"inputs {unknown} are not model inputs; the model takes {names}")
        self.mask_name: str | None = None
        self.info: dict[str, dict[str, Any]] = {}
        if modality == "text":
            ints = [n for n in names if arrays.inputs[n].dtype.kind in "iu"]
            masks = [n for n in ints if "mask" in n.lower()]
            self.mask_name = masks[0] if masks else None
            ids = list(inputs) if inputs is not None else [
                n for n in ints if n not in masks and not any(t in n.lower() for t in ("type", "segment", "position"))
            ]
            if len(ids) != 1:
                raise ConfigError(
                    f"text shifts change one input of token ids; found {ids or 'none'} among {names}; "
                    "name it with inputs=['input_ids']"
                )
            x = arrays.inputs[ids[0]]
            mask = arrays.inputs[self.mask_name] if self.mask_name else None
            pad = pad_id if pad_id is not None else detect_pad(x, mask)
            self.info[ids[0]] = {"pad_id": pad, "vocab_size": int(x.max()) + 1}
        else:
            targets = list(inputs) if inputs is not None else [n for n in names if arrays.inputs[n].dtype.kind == "f"]
            if not targets:
                raise ConfigError(f"no floating-point input to shift among {names}; name them with inputs=[...]")
            for n in targets:
                x = arrays.inputs[n]
                if modality == "image":
                    self.info[n] = {
                        "layout": layout or S.detect_layout(x),
                        "value_range": value_range or S.detect_value_range(x),
                    }
                else:
                    self.info[n] = {"value_range": value_range}

    def apply(
        self, spec: S.ShiftSpec, severity: float, inputs: dict[str, np.ndarray], rng: np.random.Generator
    ) -> dict[str, np.ndarray]:
        out = dict(inputs)
        for name, info in self.info.items():
            x = inputs[name]
            if self.modality == "text":
                mask = inputs[self.mask_name] if self.mask_name else None
                y = _call(spec.fn, x, severity, rng, {**info, "mask": mask})
                if self.mask_name and mask is not None:
                    out[self.mask_name] = S.derive_mask(mask, x, y, info["pad_id"]).astype(mask.dtype)
            else:
                y = _call(spec.fn, x, severity, rng, info)
            out[name] = y
        return out

    def lengths(self, arrays: EvalArrays) -> np.ndarray | None:
        if self.modality != "text":
            return None
        name = next(iter(self.info))
        if self.mask_name:
            return (arrays.inputs[self.mask_name] != 0).sum(axis=1)
        return (arrays.inputs[name] != self.info[name]["pad_id"]).sum(axis=1)


def detect_pad(ids: np.ndarray, mask: np.ndarray | None) -> int:
    if mask is not None and (mask == 0).any():
        values, counts = np.unique(ids[mask == 0], return_counts=True)
        return int(values[np.argmax(counts)])
    return 0


def shift_rng(seed: int, name: str, severity: float) -> np.random.Generator:
    """Independent of which other shifts run, so adding one changes no other result."""
    return np.random.default_rng([seed, zlib.crc32(name.encode()), round(severity * 10_000)])
