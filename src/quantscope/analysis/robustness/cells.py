"""The robustness grid's cells (shift × severity × model) as jobs on an executor.

A cell shifts the evaluation data (seeded per shift and severity, so every cell of one shift
and severity sees the same inputs wherever it runs), runs one model on it and scores it
against the float model's unshifted outputs. What every cell shares (the data, the shifter,
the reference outputs, the metric) travels once; each model travels by path when the workers
see its file.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from quantscope.analysis.evaluate import Evaluator
from quantscope.analysis.quality import Metric
from quantscope.analysis.robustness.data import EvalArrays, score
from quantscope.analysis.robustness.shifting import Shifter, shift_rng
from quantscope.errors import QuantscopeError
from quantscope.execution import Job, JobInput, fan_out, place
from quantscope.execution.inputs import place_object
from quantscope.io import Model

logger = logging.getLogger(__name__)

Cell = tuple[str, float, str]
"""(shift name, severity, model name)."""


@dataclass(frozen=True)
class CellContext:
    """What every cell of one grid shares."""

    shifter: Shifter
    arrays: EvalArrays
    specs: dict[str, Any]
    reference: list[np.ndarray]
    metric: Metric
    seed: int
    batch_size: int
    threads: int | None


def cell_job(context: JobInput, model: JobInput, shift: str, severity: float) -> float:
    """One cell, on a worker: the shifted data through ``model``, scored."""
    ctx: CellContext = context.load_object()
    spec = ctx.specs[shift]
    shifted = ctx.shifter.apply(spec, severity, ctx.arrays.inputs, shift_rng(ctx.seed, shift, severity))
    outputs = Evaluator(model.load_model(), batch_size=ctx.batch_size, threads=ctx.threads).run(shifted)
    return score(ctx.metric, ctx.reference, outputs, ctx.arrays.labels)


def run_cells(
    executor: Any, context: CellContext, models: Mapping[str, Model], cells: Sequence[Cell],
    step: Callable[[], None],
) -> dict[Cell, float]:
    """Every cell as one job on ``executor``; a failed cell raises (with the job's reason)."""
    shared = place_object(executor, context, "robustness data")
    placed = {name: place(executor, m) for name, m in models.items()}
    jobs = [Job(f"{shift} {severity:g} {name}", (shared, placed[name], shift, severity))
            for shift, severity, name in cells]

    def progress(event: Any) -> None:
        logger.info("robustness cell %s: %s [%d/%d]", event.key, event.state, event.done, event.total)
        if event.state in ("done", "failed", "cancelled"):
            step()

    results = fan_out(executor, cell_job, jobs, progress=progress)
    out: dict[Cell, float] = {}
    for cell, result in zip(cells, results, strict=True):
        if not result.ok:
            if isinstance(result.exception, QuantscopeError):
                raise result.exception
            raise QuantscopeError(f"robustness cell {result.key} failed: {result.error}")
        out[cell] = float(result.value)
    return out
