"""Calibration as map-reduce: shards of the calibration set observed on several workers, merged.

Each worker runs :func:`quantscope.calibrate.collect` on its shard's rows, with the same
tensors and settings; :meth:`TensorObserver.merged` adds the shards' statistics exactly
(histogram ranges are powers of two, so bins nest), so every calibrator reads the same range
as from one pass over all the data.

The shards are cut on the driver's batch boundaries of the one-pass run (the same seeded
subset, the same batch size): each batch is observed whole, exactly as in one pass, which
also keeps the strided subsampling of huge tensors identical.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Callable, Mapping
from typing import Any

from quantscope.calibrate import TensorStats, collect, consumer_transfers
from quantscope.config.calibration import StatisticsRequest
from quantscope.data import Dataset
from quantscope.errors import ConfigError, EmptyDatasetError, QuantscopeError
from quantscope.execution.fanout import Job, JobEvent, fan_out
from quantscope.execution.inputs import JobInput, place
from quantscope.io import Model
from quantscope.numerics.tensor_observer import TensorObserver

__all__ = ["collect_sharded", "observe_shard", "shard_rows"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class _ShardStats:
    observers: dict[str, TensorObserver]
    num_samples: int
    skipped: dict[str, str]
    input_shapes: dict[str, tuple[int, ...]]


def shard_rows(dataset: Dataset, index: int, count: int, batch_size: int) -> Dataset | None:
    """Rows of shard ``index`` of ``count``: whole batches of ``batch_size``, in order (None if empty).

    ``dataset`` is the subset one pass would observe (after its seeded ``take``).
    """
    n = len(dataset)
    batches = math.ceil(n / batch_size)
    first, last = index * batches // count, (index + 1) * batches // count
    if first >= last:
        return None
    return dataset.rows(first * batch_size, min(last * batch_size, n))


def observe_shard(
    model: JobInput,
    data: JobInput,
    request: StatisticsRequest,
    index: int,
    count: int,
    data_options: Mapping[str, Any] | None = None,
) -> _ShardStats | None:
    """The map step, on a worker: ``collect`` over shard ``index`` of ``count``."""
    loaded = model.load_model()
    dataset = data.load_dataset(**dict(data_options or {})).bind(loaded.inputs)
    calibration = request.calibration
    if calibration.num_samples is not None:
        dataset = dataset.take(calibration.num_samples, seed=calibration.seed)
    shard = shard_rows(dataset, index, count, calibration.batch_size)
    if shard is None:
        return None
    # ranges only: the algorithms' statistics are gathered once, where the shards are merged
    whole = dataclasses.replace(request, calibration=dataclasses.replace(calibration, num_samples=None), extra={})
    stats = collect(loaded, shard, whole, transfers=False)  # made once, from the merged ranges
    return _ShardStats(dict(stats.observers), stats.num_samples, dict(stats.skipped), dict(stats.input_shapes))


def collect_sharded(
    model: Model | str | os.PathLike[str] | JobInput,
    data: Dataset | str | os.PathLike[str] | JobInput,
    request: StatisticsRequest,
    *,
    executor: Any,
    shards: int | None = None,
    data_options: Mapping[str, Any] | None = None,
    progress: Callable[[JobEvent], None] | None = None,
    retries: int = 1,
) -> TensorStats:
    """:func:`~quantscope.calibrate.collect`, split into ``shards`` jobs on ``executor`` and merged.

    ``model``: the model to observe (a loaded Model travels by its file when the workers see
    it; an in-memory one by its bytes). ``data``: a calibration file (``data_options`` are
    those of ``Dataset.from_path``) or a Dataset (sent by value). ``shards`` defaults to 2
    per worker when the executor knows its worker count, else 4. Ranges equal those of one
    ``collect`` pass for every calibrator.
    """
    count = shards if shards is not None else _default_shards(executor)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ConfigError(f"shards must be a positive integer, got {count!r}")
    model_in, data_in = place(executor, model), place(executor, data)
    jobs = [
        Job(f"calibration shard {i + 1}/{count}", (model_in, data_in, request, i, count, data_options))
        for i in range(count)
    ]
    results = fan_out(executor, observe_shard, jobs, progress=progress, retries=retries)
    for result in results:
        if not result.ok:
            if isinstance(result.exception, QuantscopeError):
                raise result.exception
            raise QuantscopeError(f"{result.key} failed: {result.error}")
    parts = [r.value for r in results if r.value is not None]
    if not parts:
        raise EmptyDatasetError("the calibration dataset is empty; give at least one sample")
    observers = {
        name: TensorObserver.merged(part.observers[name] for part in parts) for name in parts[0].observers
    }
    total = sum(part.num_samples for part in parts)
    logger.info("calibrated %d tensors on %d samples in %d shards", len(observers), total, len(parts))
    transfers = {}
    if request.calibration.method.name == "auto":  # judged at the consumers, as collect() does
        loaded = model if isinstance(model, Model) else model_in.load_model()
        transfers = consumer_transfers(loaded, request.calibration, observers)
    return TensorStats(observers=observers, num_samples=total, skipped=parts[0].skipped,
                       calibration=request.calibration, input_shapes=parts[0].input_shapes, transfers=transfers)


def _default_shards(executor: Any) -> int:
    count = getattr(executor, "worker_count", None)
    if count is not None:
        return max(1, 2 * count())
    workers = getattr(executor, "workers", None)
    return 2 * workers if isinstance(workers, int) else 4
