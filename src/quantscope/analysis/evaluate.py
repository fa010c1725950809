"""Running a model over a dataset, and timing it, with the same session options for every variant."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from quantscope.calibrate import Progress
from quantscope.data import Dataset
from quantscope.io import Model
from quantscope.runtime import make_session, run


def predict(
    model: Model, dataset: Dataset, *, batch_size: int = 32, threads: int | None = None, progress: Progress | None = None
) -> list[np.ndarray]:
    """All outputs of ``model`` over ``dataset``, concatenated along the sample axis."""
    data = dataset.bind(model.inputs)
    session = make_session(model, threads=threads)
    chunks: list[list[np.ndarray]] = []
    done = 0
    total = len(data)
    for batch in data.batches(batch_size):
        chunks.append(run(session, batch.inputs))
        done += len(batch.indices)
        if progress is not None:
            progress(done, total)
    return [np.concatenate([c[i] for c in chunks]) for i in range(len(chunks[0]))]


@dataclass(frozen=True)
class Latency:
    median_ms: float
    p90_ms: float
    runs: int
    batch: int
    threads: int | None


def measure_latency(
    model: Model, feeds: Mapping[str, np.ndarray], *, threads: int | None = None, warmup: int = 5, runs: int = 30
) -> Latency:
    """Median and p90 wall time of ``session.run`` after warm-up."""
    session = make_session(model, threads=threads)
    for _ in range(warmup):
        run(session, feeds)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        run(session, feeds)
        times.append((time.perf_counter() - t0) * 1e3)
    batch = int(next(iter(feeds.values())).shape[0])
    return Latency(float(np.median(times)), float(np.percentile(times, 90)), runs, batch, threads)
