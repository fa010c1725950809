"""Steps the command line composes that have no other home yet (candidates to move at the next merge).

Reading a converter's example inputs, naming quantized variants read from disk, and turning
a robustness run into :class:`~quantscope.analysis.results.Results`: library code, no printing.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from quantscope.errors import ConfigError
from quantscope.model_io import Model, load


def read_example_inputs(path: str | os.PathLike[str], samples: int) -> Any:
    """The first ``samples`` of the arrays in an .npz (labels and ``meta_*`` left out): one array, or a dict."""
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k][:samples] for k in npz.files if k != "labels" and not k.startswith("meta_")}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read --example {path}: {exc}") from exc
    return next(iter(arrays.values())) if len(arrays) == 1 else arrays


def example_inputs(data: Any) -> Any:
    """A few samples of ``data`` as a framework importer's example inputs (positional if one input)."""
    from quantscope.importers import example_arrays

    return example_arrays(data)


def load_variants(paths: Sequence[Path]) -> dict[str, Model]:
    """Quantized models by name (the file name without ``.onnx``; made unique, never ``float``)."""
    variants: dict[str, Model] = {}
    for path in paths:
        name = path.name.removesuffix(".onnx")
        if name in variants or name == "float":
            name = f"{name}-{len(variants) + 1}"
        variants[name] = load(path)
    return variants


def variant_result(name: str, path: Path, model: Model, quality: dict[str, float]) -> Any:
    """A :class:`VariantResult` for a model file, with the config from its sidecar if there is one."""
    from quantscope.analysis.results import VariantResult

    sidecar = path.with_name(path.stem + ".quantscope.json")
    config = None
    if sidecar.is_file():
        try:
            config = json.loads(sidecar.read_text()).get("config")
        except (OSError, json.JSONDecodeError, AttributeError):
            config = None
    return VariantResult(
        name=name, kind="float" if name == "float" else "onnx", path=str(path),
        method=config.get("method") if isinstance(config, dict) else None, config=config,
        size_bytes=path.stat().st_size, param_bytes=model.parameter_bytes(), quality=quality,
    )


def robustness_results(rob: Any, model: Model, model_path: Path, variants: dict[str, Model],
                       variant_paths: Sequence[Path], data_path: Path, labelled: bool) -> Any:
    """The :class:`Results` of a robustness run: every variant's quality on unshifted data, and the run."""
    from quantscope.analysis.results import Results

    clean = {p.variant: p.quality[rob.metric] for p in rob.shifts if p.severity == 0.0}
    named = [("float", model_path, model), *zip(variants, variant_paths, variants.values(), strict=True)]
    return Results(
        model={"name": model_path.name, "path": str(model_path), "fingerprint": model.fingerprint},
        data={"name": data_path.name, "samples": rob.samples, "labels": labelled},
        metric=rob.metric,
        variants=[variant_result(name, path, m, {rob.metric: clean[name]}) for name, path, m in named],
        robustness=rob,
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )


def robustness_table(rob: Any, names: Sequence[str]) -> list[tuple[str, list[str]]]:
    """Per shift, each variant's quality at the strongest severity and its breaking point, as text cells."""
    rows = []
    for shift, row in rob.breaking_points.items():
        top = max(p.severity for p in rob.shifts if p.shift == shift)
        cells = []
        for name in names:
            value = next(p.quality[rob.metric] for p in rob.shifts
                         if (p.shift, p.variant, p.severity) == (shift, name, top))
            bp = row.get(name)
            cells.append(f"{value:.3g} ({'never' if bp is None else f'{bp:g}'})")
        rows.append((shift, cells))
    return rows
