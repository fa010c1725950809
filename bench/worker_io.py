"""Reading the calibration shards, shared by the worker and the peers' data readers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

MAX_BATCH = 20  # calibration batch for both tools: the largest divisor of the set size up to this


def batch_for(samples: int) -> int:
    """Equal batches only: the peer's histogram calibrators (Entropy, Percentile) fail on a
    shorter last batch ("inhomogeneous shape"), so both tools get the same divisor of ``samples``."""
    return next(b for b in range(min(MAX_BATCH, samples), 0, -1) if samples % b == 0)


def shard_batches(folder: Path, batch: int) -> Iterator[dict[str, np.ndarray]]:
    """Batches of ``batch`` samples read shard by shard (never the whole set at once)."""
    pending: list[dict[str, np.ndarray]] = []
    count = 0
    for shard in sorted(Path(folder).glob("shard-*.npz")):
        with np.load(shard) as z:
            arrays = {k: z[k] for k in z.files}
        pending.append(arrays)
        count += len(next(iter(arrays.values())))
        while count >= batch:
            merged = {k: np.concatenate([p[k] for p in pending]) for k in pending[0]}
            yield {k: np.ascontiguousarray(v[:batch]) for k, v in merged.items()}
            rest = {k: v[batch:] for k, v in merged.items()}
            count -= batch
            pending = [rest] if count else []
    if count:
        yield {k: np.ascontiguousarray(np.concatenate([p[k] for p in pending])) for k in pending[0]}


class ShardReader:
    """``CalibrationDataReader`` over the shard folder, batch by batch."""

    def __init__(self, folder: str, samples: int) -> None:
        self._folder = Path(folder)
        self._batch = batch_for(samples)
        self._it = shard_batches(self._folder, self._batch)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = shard_batches(self._folder, self._batch)
