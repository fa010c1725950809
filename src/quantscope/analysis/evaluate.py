"""The evaluator: a model run over a dataset (or arrays), and timed, with the same session options for every variant."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from quantscope.analysis.stats import ratio_interval, speed_verdict
from quantscope.calibrate import Progress
from quantscope.data import Dataset
from quantscope.io import Model
from quantscope.runtime import make_session, run


class Evaluator:
    """One ONNX Runtime session over ``model``: a :class:`Dataset` or in-memory arrays run through it in batches.

    Every analysis runs its models through this class (compare, sensitivity, robustness), so
    every variant is run with the same session options and batching.
    """

    def __init__(self, model: Model, *, batch_size: int = 32, threads: int | None = None) -> None:
        self.model = model
        self.batch_size = batch_size
        self.session = make_session(model, threads=threads)

    def predict(self, dataset: Dataset, progress: Progress | None = None) -> list[np.ndarray]:
        """All outputs over ``dataset`` (bound to the model's inputs), concatenated along the sample axis."""
        data = dataset.bind(self.model.inputs)
        chunks: list[list[np.ndarray]] = []
        done = 0
        total = data.num_samples  # None when the source cannot tell (a DataLoader)
        for batch in data.batches(self.batch_size):
            chunks.append(run(self.session, batch.inputs))
            done += len(batch.indices)
            if progress is not None:
                progress(done, total)
        return _concatenate(chunks)

    def run(self, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """All outputs over arrays already bound to the model's inputs (first axis: samples)."""
        n = len(next(iter(inputs.values())))
        return _concatenate([
            run(self.session, {k: v[i : i + self.batch_size] for k, v in inputs.items()})
            for i in range(0, n, self.batch_size)
        ])


def _concatenate(chunks: list[list[np.ndarray]]) -> list[np.ndarray]:
    return [np.concatenate([c[i] for c in chunks]) for i in range(len(chunks[0]))]


def predict(
    model: Model, dataset: Dataset, *, batch_size: int = 32, threads: int | None = None, progress: Progress | None = None
) -> list[np.ndarray]:
    """All outputs of ``model`` over ``dataset``, concatenated along the sample axis."""
    return Evaluator(model, batch_size=batch_size, threads=threads).predict(dataset, progress)


@dataclass(frozen=True)
class Latency:
    median_ms: float
    p90_ms: float
    runs: int
    batch: int
    threads: int | None
    fastest_ms: float | None = None  # what the machine does unloaded (a median moves with load)


def measure_latency(
    model: Model, feeds: Mapping[str, np.ndarray], *, threads: int | None = None, warmup: int = 5, runs: int = 30
) -> Latency:
    """Median and p90 wall time of ``session.run`` after warm-up."""
    session = make_session(model, threads=threads)
    batch = int(next(iter(feeds.values())).shape[0])
    return time_calls(lambda: run(session, feeds), batch=batch, threads=threads, warmup=warmup, runs=runs)


def time_calls(
    call: Callable[[], object], *, batch: int, threads: int | None, warmup: int = 5, runs: int = 30
) -> Latency:
    """Median, p90 and fastest wall time of ``call()`` in milliseconds, after ``warmup`` calls."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        call()
        times.append((time.perf_counter() - t0) * 1e3)
    return _latency(times, batch, threads)


def _latency(times: list[float], batch: int, threads: int | None) -> Latency:
    return Latency(float(np.median(times)), float(np.percentile(times, 90)), len(times), batch, threads,
                   fastest_ms=float(np.min(times)))


@dataclass(frozen=True)
class PairedLatency:
    """A variant timed against a reference in interleaved rounds: both latencies and the speed ratio.

    ``speed`` is the reference's median time over the variant's (above 1: the variant is faster),
    ``low``/``high`` its 95 % paired-bootstrap interval over rounds.
    """

    reference: Latency
    variant: Latency
    speed: float
    low: float
    high: float

    @property
    def verdict(self) -> str:
        """``faster``/``slower``/``same``/``noisy`` (:func:`~quantscope.analysis.stats.speed_verdict`)."""
        return speed_verdict(self.low, self.high, self.speed, reference_ms=self.reference.median_ms)


def time_paired(
    reference: Callable[[], object], call: Callable[[], object], *, batch: int, threads: int | None,
    warmup: int = 5, rounds: int = 30, seed: int = 0,
) -> PairedLatency:
    """Time ``reference()`` and ``call()`` alternately, one of each per round (order swapped every round).

    Load from other processes hits both alike, so the ratio is far steadier than two separate
    medians; its interval says how much the machine's noise leaves uncertain.
    """
    for _ in range(warmup):
        reference()
        call()
    ref_times: list[float] = []
    times: list[float] = []
    for r in range(rounds):
        pair = ((reference, ref_times), (call, times))
        for fn, sink in pair if r % 2 == 0 else pair[::-1]:
            t0 = time.perf_counter()
            fn()
            sink.append((time.perf_counter() - t0) * 1e3)
    speed, low, high = ratio_interval(ref_times, times, seed=seed)
    return PairedLatency(_latency(ref_times, batch, threads), _latency(times, batch, threads), speed, low, high)


def measure_paired_latency(
    reference: Model, model: Model, feeds: Mapping[str, np.ndarray], *, threads: int | None = None,
    warmup: int = 5, runs: int = 30, seed: int = 0,
) -> PairedLatency:
    """:func:`time_paired` of two models on the same feeds, sessions made with the same options."""
    ref_session = make_session(reference, threads=threads)
    session = make_session(model, threads=threads)
    batch = int(next(iter(feeds.values())).shape[0])
    return time_paired(lambda: run(ref_session, feeds), lambda: run(session, feeds), batch=batch, threads=threads,
                       warmup=warmup, rounds=runs, seed=seed)
