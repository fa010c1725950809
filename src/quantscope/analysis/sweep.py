"""``sweep``: every registered method (and every calibrator) on one model, then ``analyze``.

The configurations come from the config registry (:func:`quantscope.config.method_names`),
so a method added later is swept without touching this module. A method that fails on this
model (nothing it can quantize, or a bug) is recorded as a note and a logged warning; the
sweep goes on with the others.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from quantscope.analysis import sweep_workers as on_workers
from quantscope.analysis.compare import AnalysisOptions, StepProgress, analyze
from quantscope.analysis.evaldata import prepare_eval
from quantscope.analysis.quality import Metric, MetricFn
from quantscope.analysis.recommend import recommend
from quantscope.analysis.results import Results
from quantscope.config import CALIBRATION_METHODS, MethodConfig, config_class, method_names
from quantscope.data import Dataset, as_dataset
from quantscope.errors import ConfigError, OutputError, QuantscopeError, UnsupportedModelError
from quantscope.execution.executors import executor_from_options
from quantscope.io import Model
from quantscope.quantization import QuantizedModel, quantize

logger = logging.getLogger(__name__)

CLUSTER_BITS = (4, 8)


def sweep_configs(methods: Sequence[str] | None = None, *, seed: int = 0) -> dict[str, MethodConfig]:
    """Named configs to sweep: static-int8 once per calibrator, cluster at 4 and 8 bits, and
    every other registered method with its defaults. ``methods`` limits it to those names."""
    names = method_names() if methods is None else list(methods)
    out: dict[str, MethodConfig] = {}
    for method in names:
        cls = config_class(method)  # ConfigError for an unknown name
        if method == "static-int8":
            for cal in CALIBRATION_METHODS:
                out[f"static-int8/{cal}"] = _seeded(cls(calibration=cal), seed)  # type: ignore[call-arg]
        elif method == "cluster":
            for bits in CLUSTER_BITS:
                out[f"cluster-{bits}"] = _seeded(cls(bits=bits), seed)  # type: ignore[call-arg]
        else:
            try:
                out[method] = _seeded(cls(), seed)
            except (TypeError, QuantscopeError) as exc:  # a config that needs arguments
                logger.warning("sweep skips %s: its config has no defaults (%s)", method, exc)
    return out


def _seeded(config: MethodConfig, seed: int) -> MethodConfig:
    if any(f.name == "seed" for f in dataclasses.fields(config)):
        return dataclasses.replace(config, seed=seed)  # type: ignore[call-arg]
    return config


def sweep(
    model: Model,
    calib: Dataset | None,
    data: Dataset,
    *,
    methods: Sequence[str] | dict[str, MethodConfig] | None = None,
    metric: str | MetricFn | Metric = "auto",
    metric_name: str | None = None,
    max_drop: float | None = None,
    options: AnalysisOptions | None = None,
    seed: int = 0,
    save_dir: str | os.PathLike[str] | None = None,
    robustness: Mapping[str, Any] | None = None,
    progress: StepProgress | None = None,
    output: str | Sequence[str] | None = None,
    executor: Any = None,
) -> Results:
    """Quantize ``model`` with every method (``methods``: names or named configs) and analyze all.

    Methods that need calibration are skipped with a note when ``calib`` is None. Failures of
    one method never stop the sweep: they appear in ``Results.notes``. Deterministic for a seed.
    With ``save_dir``, every quantized model is written there (``<model>.<variant>.onnx`` plus
    its sidecar JSON) and measured from that file. With ``robustness`` (keywords of
    :func:`quantscope.analysis.robustness.robustness`, ``modality`` required), the float model
    and every variant are also evaluated under shifted data and ``Results.robustness`` is set.
    ``output`` names the model output(s) to measure (see :func:`quantscope.analysis.compare.analyze`).

    ``executor`` (a ``distributed.Client`` or any ``concurrent.futures.Executor``, see
    :mod:`quantscope.execution`): the variants are quantized there, one job each (the model goes
    by path when the workers see its file), and each variant's latency is timed there as one job
    (a quantized variant interleaved with the float model in one process); each variant records
    the worker that timed it (``measured_on``). None: everything runs in this process.
    """
    data, calib = as_dataset(data, "evaluation data"), None if calib is None else as_dataset(calib, "calibration data")
    if not isinstance(model, Model):
        raise ConfigError(f"sweep() takes a quantscope Model (from quantscope.load), not {type(model).__name__}")
    configs = methods if isinstance(methods, dict) else sweep_configs(methods, seed=seed)
    if not configs:
        raise ConfigError("nothing to sweep: no method configs")
    # a data mismatch, a NaN or unusable labels fail before minutes of quantization
    prepare_eval(model, data, metric, metric_name=metric_name, output=output)
    if calib is not None:
        calib.bind(model.inputs)
    notes: list[str] = []
    variants: dict[str, QuantizedModel | Path] = {}
    out_dir = _output_dir(save_dir)
    if executor is None:
        _quantize_here(model, configs, calib, out_dir, variants, notes, progress)
    else:
        executor = executor_from_options(executor=executor)
        todo = {}
        for name, config in configs.items():
            if config.needs_calibration and calib is None:
                notes.append(_SKIPPED.format(name=name))
            else:
                todo[name] = config
        on_workers.quantize(executor, model, todo, calib, out_dir, variants, notes, progress)
    if progress is not None:
        progress("quantized", len(configs), len(configs))
    opts = options or AnalysisOptions()
    opts = dataclasses.replace(opts, strict=False, seed=seed)
    here = opts if executor is None else dataclasses.replace(opts, latency=False, sensitivity=0)
    results = analyze(
        model, variants, data, metric=metric, metric_name=metric_name, max_drop=max_drop, calib=calib,
        options=here, progress=progress, notes=notes, output=output,
    )
    if executor is not None and opts.latency:
        results = on_workers.timed(executor, results, model, variants, data, opts, progress)
    if executor is not None and opts.sensitivity > 0:
        primary = on_workers.primary_metric(model, data, results, metric, metric_name)
        results = on_workers.sensitivity(executor, results, model, variants, data, calib, primary, opts, progress)
    pick = recommend(results)
    logger.info("sweep: %s", f"recommended {pick.name}: {pick.reason}" + (
        f"; {pick.runner_up_reason}" if pick.runner_up_reason else "") if pick else "no variant is recommended")
    if robustness is None:
        return results
    from quantscope.analysis.robustness import robustness_for

    kwargs = dict(robustness)
    kwargs.setdefault("seed", seed)
    if executor is not None:
        kwargs.setdefault("executor", executor)
    if progress is not None and "progress" not in kwargs:
        kwargs["progress"] = lambda done, total: progress("robustness", done, total or 0)
    return robustness_for(results, model, variants, data, **kwargs)


_SKIPPED = "{name}: skipped, it needs calibration data (calib)"


def _quantize_here(
    model: Model, configs: Mapping[str, MethodConfig], calib: Dataset | None, out_dir: Path | None,
    variants: dict[str, QuantizedModel | Path], notes: list[str], progress: StepProgress | None,
) -> None:
    for i, (name, config) in enumerate(configs.items()):
        if progress is not None:
            progress(f"quantizing {name}", i, len(configs))
        if config.needs_calibration and calib is None:
            notes.append(_SKIPPED.format(name=name))
            continue
        try:
            q = quantize(model, config, calib if config.needs_calibration else None)
            variants[name] = q if out_dir is None else q.save(out_dir / file_name(model, name))
        except Exception as exc:  # a method's bug must not stop the others
            notes.append(failure_note(name, exc))


_INTERNAL = ": failed with an internal error: "


def all_failed_error(notes: Sequence[str]) -> QuantscopeError:
    """The error for a sweep where no variant was measured, from its notes.

    When every failure was an internal error (a bug, not this model or data), a plain
    :class:`QuantscopeError` (exit 1) says so; otherwise an :class:`UnsupportedModelError`
    (exit 3) asks for methods that apply, or for the fix the notes name.
    """
    failures = [n for n in notes if _INTERNAL in n or ": not applicable" in n or ": skipped" in n
                or ": not measured" in n]
    if failures and all(_INTERNAL in n for n in failures):
        return QuantscopeError(
            "every variant of the sweep failed with an internal error, so nothing was measured: "
            + "; ".join(failures[:3]) + ". Please report it (run with -v for the traceback)"
        )
    return UnsupportedModelError(
        "every variant of the sweep failed (see the notes above), so nothing was measured; "
        "choose methods that apply to this model (-m), or fix what the notes name"
        + (f": {'; '.join(failures[:3])}" if failures else "")
    )


def failure_note(name: str, exc: BaseException | None, error: str | None = None) -> str:
    """The note (and logged warning) for a method that failed on this model."""
    if isinstance(exc, QuantscopeError):
        logger.warning("sweep: %s failed: %s", name, exc)
        return f"{name}: not applicable to this model: {type(exc).__name__}: {exc}"
    logger.warning("sweep: %s failed with an internal error", name, exc_info=exc)
    what = f"{type(exc).__name__}: {exc}" if exc is not None else error
    return f"{name}{_INTERNAL}{what}"


def _output_dir(save_dir: str | os.PathLike[str] | None) -> Path | None:
    if save_dir is None:
        return None
    out = Path(save_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {out} for the quantized models: {exc.strerror or exc}") from exc
    return out


def file_name(model: Model, variant: str) -> str:
    """``<model stem>.<variant>.onnx``: where ``save_dir`` keeps a variant."""
    stem = model.path.stem if model.path is not None else "model"
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in variant)
    return f"{stem}.{safe}.onnx"
