"""The variants of an analysis: named models with their config and plan (from memory or a sidecar)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quantscope.analysis.options import FLOAT_NAME
from quantscope.config import MethodConfig, config_from_dict
from quantscope.errors import ConfigError, ModelError, QuantscopeError
from quantscope.io import Model, load
from quantscope.plan import QuantPlan
from quantscope.quantization import QuantizedModel, sidecar_path

logger = logging.getLogger(__name__)

VariantLike = QuantizedModel | Model | str | os.PathLike[str]


@dataclass
class Variant:
    """A model to measure, with what is known of how it was made."""

    name: str
    model: Model
    path: Path | None
    config: MethodConfig | None = None
    config_dict: dict[str, Any] | None = None
    plan: QuantPlan | None = None
    method: str | None = None
    warnings: list[str] = field(default_factory=list)



def normalize(float_model: Model, variants: Mapping[str, VariantLike] | Sequence[VariantLike]) -> list[Variant]:
    if isinstance(variants, Mapping):
        pairs = [(str(k), v) for k, v in variants.items()]
    elif isinstance(variants, str | os.PathLike | QuantizedModel | Model):
        raise ConfigError("analyze() takes a mapping {name: variant} or a list of variants, not one variant")
    else:
        pairs = [(None, v) for v in variants]
    out = [Variant(FLOAT_NAME, float_model, model_file(float_model), method=None)]
    used = {FLOAT_NAME}
    for name, item in pairs:
        v = _variant(name, item, float_model)
        if v.name in used:
            if name is not None:
                raise ConfigError(f"two variants are named {v.name!r} ({FLOAT_NAME!r} is the float model); rename one")
            k = 2
            while f"{v.name}-{k}" in used:
                k += 1
            v.name = f"{v.name}-{k}"
        used.add(v.name)
        out.append(v)
    return out


def _variant(name: str | None, item: VariantLike, float_model: Model) -> Variant:
    if isinstance(item, QuantizedModel):
        v = Variant(name or item.config.method, item.model, None, item.config, item.config.to_dict(), item.plan,
                     item.config.method)
        _check_fingerprint(v, item.source_fingerprint, float_model)
        return v
    if isinstance(item, str | os.PathLike):
        item = load(item)
    if not isinstance(item, Model):
        raise ConfigError(f"a variant must be a QuantizedModel, a Model or a path, not {type(item).__name__}")
    path = model_file(item)
    v = Variant(name or _name_from_path(path, float_model), item, path)
    v.method = item.ir.metadata_props.get("quantscope.method")
    if path is not None and sidecar_path(path).is_file():
        _read_sidecar(v, sidecar_path(path), float_model)
    return v


def _read_sidecar(v: Variant, path: Path, float_model: Model) -> None:
    try:
        side = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        v.warnings.append(f"cannot read the sidecar {path.name}: {exc}")
        return
    cfg = side.get("config")
    if isinstance(cfg, dict):
        v.config_dict = cfg
        v.method = cfg.get("method", v.method)
        try:
            v.config = config_from_dict(cfg)
        except QuantscopeError as exc:
            v.warnings.append(f"the sidecar's config cannot be rebuilt ({exc}); sensitivity is not measured")
    if isinstance(side.get("plan"), dict):
        try:
            v.plan = QuantPlan.from_dict(side["plan"])
        except (KeyError, TypeError) as exc:
            v.warnings.append(f"the sidecar's plan cannot be read ({exc})")
    source = side.get("source") or {}
    _check_fingerprint(v, source.get("fingerprint"), float_model)


def _check_fingerprint(v: Variant, source: str | None, float_model: Model) -> None:
    if source and float_model.fingerprint and source != float_model.fingerprint:
        msg = (
            f"{v.name} was quantized from a different float model (fingerprint {source[:19]}..., "
            f"this float model is {float_model.fingerprint[:19]}...); the comparison may be meaningless: "
            "pass the float model it was made from"
        )
        v.warnings.append(msg)
        logger.warning("%s", msg)


def model_file(model: Model) -> Path | None:
    return model.path if model.path is not None and Path(model.path).is_file() else None


def _name_from_path(path: Path | None, float_model: Model) -> str:
    if path is None:
        return "variant"
    stem = path.stem
    base = float_model.path.stem if float_model.path is not None else None
    if base and stem.startswith(base + ".") and len(stem) > len(base) + 1:
        return stem[len(base) + 1:]
    return stem


def check_outputs(float_model: Model, v: Variant) -> None:
    f_out, q_out = float_model.outputs, v.model.outputs
    if len(f_out) != len(q_out):
        raise ModelError(
            f"{v.name} has {len(q_out)} output(s) but the float model has {len(f_out)}; "
            "compare a model only with variants of itself"
        )
    for a, b in zip(f_out, q_out, strict=True):
        if a.shape is None or b.shape is None:
            continue
        if len(a.shape) != len(b.shape) or any(
            isinstance(x, int) and isinstance(y, int) and x != y for x, y in zip(a.shape, b.shape, strict=True)
        ):
            raise ModelError(
                f"{v.name}'s output {b.describe()} differs in shape from the float model's {a.describe()}; "
                "compare a model only with variants of itself"
            )

