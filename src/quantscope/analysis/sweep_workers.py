"""The parts of a ``sweep`` that run on an executor's workers: quantizing, and timing each variant.

Quantizing: one :func:`~quantscope.execution.jobs.quantize_job` per config; with ``save_dir``
the workers write the files themselves when they see that folder (a shared file system),
else the models come back and are written here. Timing: one job per variant, so a quantized
variant and the float model are timed interleaved in one process; each variant records the
worker that timed it (``VariantResult.measured_on``), and a report compares latencies only
within one worker kind (:func:`quantscope.execution.machine.where_timed`).
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from quantscope.analysis.evaldata import checked_eval_data
from quantscope.analysis.measure import latency_feeds, noise_notes
from quantscope.analysis.options import FLOAT_NAME, AnalysisOptions, StepProgress
from quantscope.analysis.quality import Metric
from quantscope.analysis.results import Results, VariantResult
from quantscope.config import MethodConfig
from quantscope.data import Dataset
from quantscope.execution.fanout import JobEvent
from quantscope.execution.inputs import JobInput
from quantscope.execution.jobs import quantize_many, time_variants
from quantscope.io import Model
from quantscope.leftovers import owned_prefix
from quantscope.quantization import QuantizedModel

logger = logging.getLogger(__name__)


def job_progress(progress: StepProgress | None, what: str) -> Any:
    """A fan-out's :class:`JobEvent` s as ``progress(what, done, total)`` steps, each job's
    state also logged (shown by the CLI's ``-v``)."""

    def report(event: JobEvent) -> None:
        detail = f" ({event.detail})" if event.detail else ""
        logger.info("%s %s: %s%s [%d/%d]", what, event.key, event.state, detail, event.done, event.total)
        if progress is not None:
            progress(f"{what} {event.key}: {event.state}{detail}", event.done, event.total)

    return report


def workers_see(executor: Any, folder: Path) -> bool:
    """Whether the executor's workers see ``folder`` (a probe file written here is checked there)."""
    sees = getattr(executor, "sees_path", None)
    if sees is None:  # on this machine
        return True
    with tempfile.NamedTemporaryFile(dir=folder, prefix=owned_prefix(".quantscope-probe-")) as probe:
        probe.write(b"quantscope")
        probe.flush()
        file = JobInput.from_path(probe.name)
        return bool(sees(file.path, file.size, file.mtime))


def quantize(
    executor: Any, model: Model, configs: Mapping[str, MethodConfig], calib: Dataset | None,
    out_dir: Path | None, variants: dict[str, QuantizedModel | Path], notes: list[str],
    progress: StepProgress | None,
) -> None:
    """Quantize every config on ``executor``; successes go to ``variants`` (in config order),
    failures to ``notes``."""
    from quantscope.analysis.sweep import failure_note, file_name

    remote_save = out_dir is not None and workers_see(executor, out_dir)
    save_paths = {name: out_dir / file_name(model, name) for name in configs} if remote_save and out_dir else None
    done = quantize_many(executor, model, configs, calib, save_paths=save_paths,
                         progress=job_progress(progress, "quantizing"))
    for name in configs:
        result = done[name]
        if not result.ok:
            notes.append(failure_note(name, result.exception, result.error))
            continue
        value = result.value
        if out_dir is not None and isinstance(value, QuantizedModel):
            value = value.save(out_dir / file_name(model, name))
        variants[name] = Path(value) if not isinstance(value, QuantizedModel) else value


def timed(
    executor: Any, results: Results, model: Model, variants: Mapping[str, QuantizedModel | Path],
    data: Dataset, opts: AnalysisOptions, progress: StepProgress | None, names: tuple[str, ...] | None = None,
) -> Results:
    """``results`` with every measured variant's latency (``names``: only theirs) timed on
    ``executor``, one job each."""
    feeds = latency_feeds(checked_eval_data(model, data), opts)
    sources: dict[str, Model | Path | None] = {}
    for v in results.variants:
        if names is not None and v.name not in names:
            continue
        if v.name == FLOAT_NAME:
            sources[v.name] = None
        elif v.name in variants:
            item = variants[v.name]
            sources[v.name] = item.model if isinstance(item, QuantizedModel) else item
    timed = time_variants(executor, model, sources, feeds, opts, progress=job_progress(progress, "timing"))
    notes = list(results.notes)
    measured: list[VariantResult] = []
    for v in results.variants:
        result = timed.get(v.name)
        if result is None:
            measured.append(v)
        elif not result.ok:
            notes.append(f"{v.name}: latency not measured: {result.error}")
            logger.warning("latency of %s not measured: %s", v.name, result.error)
            measured.append(v)
        else:
            facts = result.machine.to_dict() if result.machine is not None else None
            measured.append(dataclasses.replace(v, latency=list(result.value), measured_on=facts))
    notes += noise_notes(measured)
    return dataclasses.replace(results, variants=measured, notes=notes)


def sensitivity(
    executor: Any, results: Results, model: Model, variants: Mapping[str, QuantizedModel | Path], data: Dataset,
    calib: Dataset | None, metric: Metric, opts: AnalysisOptions, progress: StepProgress | None,
) -> Results:
    """``results`` with the per-layer sensitivity ``analyze`` would add, each node's run a job."""
    from quantscope.analysis.sensitivity_pick import add_sensitivity
    from quantscope.analysis.variants import normalize

    bound = checked_eval_data(model, data)
    items = normalize(model, variants)
    notes = list(results.notes)
    measured = add_sensitivity(model, items, list(results.variants), bound, calib, metric, opts, notes, progress,
                               max_drop=results.max_drop, executor=executor)
    return dataclasses.replace(results, variants=measured, notes=notes)


def primary_metric(model: Model, data: Dataset, results: Results, metric: Any, metric_name: str | None) -> Metric:
    """The primary metric ``analyze`` resolved for ``results`` (its output, name and direction)."""
    from quantscope.analysis.outputs import output_indices
    from quantscope.analysis.quality import resolve_metric

    index = output_indices(model, results.outputs)[0] if results.outputs else 0
    return resolve_metric(metric, has_labels=data.bind(model.inputs).labels is not None, name=metric_name,
                          output=index)
