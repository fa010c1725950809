"""What travels to a worker: a model or data file by path when the worker sees it, else by value.

A :class:`JobInput` is small: a path with the size and modification time the driver saw, or
the file's bytes (or a Python object, pickled), possibly already scattered to the cluster
(then it holds a ``distributed`` future). The job resolves it on the worker with
:meth:`JobInput.local_path`, :meth:`JobInput.load_model`, :meth:`JobInput.load_dataset`.

:func:`place` decides, on the driver, once per input: by path when every worker sees the
same file (same size and mtime), else by value with ``client.scatter``. A model loaded
from a file is never serialized again on the driver when it can go by path; when it must
go by value the file's bytes are read once and handed to the cluster.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pickle
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from quantscope.errors import ConfigError, DataError

if TYPE_CHECKING:
    from quantscope.data import Dataset
    from quantscope.io import Model

__all__ = ["JobInput", "file_matches", "lift_futures", "place", "place_object", "sink_values"]

logger = logging.getLogger(__name__)

MTIME_SLACK_S = 1.0
"""File systems shared over a network may round modification times to the second."""


def file_matches(path: str, size: int, mtime: float) -> bool:
    """Whether ``path`` exists here with this size and modification time (run on a worker)."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return st.st_size == size and abs(st.st_mtime - mtime) <= MTIME_SLACK_S


@dataclass(frozen=True)
class JobInput:
    """A file or object a job needs; ``path`` when workers read it themselves, else ``value``.

    ``value`` is the file's bytes (``kind="file"``) or a pickled object (``kind="object"``,
    for in-memory datasets), or a ``distributed`` future of either.
    """

    name: str
    kind: str = "file"
    path: str | None = None
    size: int = 0
    mtime: float = 0.0
    value: Any = None
    origin: str | None = None
    """The driver's path of a file sent by value, for the records (sidecars, reports)."""
    fingerprint: str | None = None
    """The driver's fingerprint of a model sent by value (its bytes there may differ from its file's)."""

    @classmethod
    def from_path(cls, path: str | os.PathLike[str]) -> JobInput:
        p = Path(path).resolve()
        try:
            st = p.stat()
        except OSError as exc:
            raise DataError(f"cannot send {p} to the workers: {exc.strerror or exc}") from exc
        return cls(name=p.name, path=str(p), size=st.st_size, mtime=st.st_mtime)

    @classmethod
    def from_object(cls, obj: Any, name: str = "object") -> JobInput:
        """An in-memory object (a Dataset) travelling by value, pickled with cloudpickle."""
        import cloudpickle  # a dependency of dask; only needed for objects sent by value

        return cls(name=name, kind="object", value=cloudpickle.dumps(obj))

    @property
    def by_path(self) -> bool:
        return self.path is not None

    def _value(self) -> bytes:
        value = self.value
        if not isinstance(value, bytes | bytearray | memoryview):
            raise ConfigError(f"job input {self.name!r} carries no path and no bytes")
        return bytes(value)

    @contextmanager
    def local_path(self) -> Iterator[Path]:
        """A path to the file on this machine, for the duration of the ``with`` block.

        By path: checked to be the file the driver saw (same size and mtime), so a worker on
        another file system fails with a clear message instead of reading another file.
        By value: the bytes, written to a temporary file removed afterwards.
        """
        if self.kind != "file":
            raise ConfigError(f"job input {self.name!r} is an object, not a file")
        if self.path is not None:
            if not file_matches(self.path, self.size, self.mtime):
                raise DataError(
                    f"{self.path} is missing or differs on this worker (size/mtime); run the "
                    "workers on the same file system, or let quantscope send the file by value"
                )
            yield Path(self.path)
            return
        from quantscope.signals import temp_dir

        with temp_dir(prefix="quantscope-job-") as tmp:  # owned name: a SIGKILLed worker's copy is swept later
            local = tmp / self.name
            local.write_bytes(self._value())
            yield local

    def load_object(self) -> Any:
        if self.kind != "object":
            raise ConfigError(f"job input {self.name!r} is a file, not an object")
        return pickle.loads(self._value())  # cloudpickle output loads with pickle

    def load_model(self) -> Model:
        """The model, loaded on the worker."""
        from quantscope.io import load

        with self.local_path() as path:
            return load(path)

    def load_dataset(self, **options: Any) -> Dataset:
        """The dataset, opened on the worker (``options``: those of ``Dataset.from_path``)."""
        from quantscope.data import Dataset

        if self.kind == "object":
            return self.load_object()
        with self.local_path() as path:
            # an .npz is read now; a .npy stays mapped, which outlives the unlinked file on POSIX
            return Dataset.from_path(path, **options)


@dataclass(frozen=True)
class _Scattered:
    """Stands for a scattered future's value inside a job's arguments (see :func:`lift_futures`)."""

    key: str


def lift_futures(obj: Any, futures: dict[str, Any]) -> Any:
    """``obj`` with every JobInput's future replaced by a marker, the futures put in ``futures``.

    Dask resolves futures only at the top of a task's arguments and inside lists, tuples and
    dicts, not inside a JobInput: the executor passes ``futures`` beside the arguments and
    :func:`sink_values` puts the fetched values back on the worker.
    """
    if isinstance(obj, JobInput) and obj.value is not None and hasattr(obj.value, "key"):
        key = str(obj.value.key)
        futures[key] = obj.value
        return dataclasses.replace(obj, value=_Scattered(key))
    if isinstance(obj, tuple | list):
        return type(obj)(lift_futures(item, futures) for item in obj)
    if isinstance(obj, dict):
        return {k: lift_futures(v, futures) for k, v in obj.items()}
    return obj


def sink_values(obj: Any, values: dict[str, Any]) -> Any:
    """The inverse of :func:`lift_futures`, on the worker, with the futures' values."""
    if isinstance(obj, JobInput) and isinstance(obj.value, _Scattered):
        return dataclasses.replace(obj, value=values[obj.value.key])
    if isinstance(obj, tuple | list):
        return type(obj)(sink_values(item, values) for item in obj)
    if isinstance(obj, dict):
        return {k: sink_values(v, values) for k, v in obj.items()}
    return obj


def place(
    executor: Any, source: str | os.PathLike[str] | Model | Dataset | JobInput, *, by_value: bool = False
) -> JobInput:
    """How ``source`` reaches ``executor``'s workers: by path if they all see it, else by value.

    ``source`` is a file path, a loaded :class:`~quantscope.io.Model` (its file when it has one,
    and its external data files when the workers see them all, else its bytes), a
    :class:`~quantscope.data.Dataset` (by value, pickled) or a ready :class:`JobInput`.
    Executors that run on this machine always get paths. ``by_value``: a Model goes as its
    bytes even when it has a file (a model changed in memory since it was loaded).
    """
    from quantscope.data import Dataset
    from quantscope.io import Model

    if isinstance(source, JobInput):
        return source
    executor = _seam(executor)
    if isinstance(source, Dataset):
        return place_object(executor, source, "dataset")
    if isinstance(source, Model):
        if not by_value and source.path is not None and all(_seen(executor, JobInput.from_path(f)) for f in source.data_files):
            model_file = JobInput.from_path(source.path)
            if _seen(executor, model_file):
                return model_file
        # in memory only, or its files are not visible to the workers: its bytes hold everything
        origin = None if source.path is None else str(source.path)
        return _scattered(executor, JobInput(name="model.onnx", value=source.serialize(), origin=origin,
                                             fingerprint=source.fingerprint or None))
    by_path = JobInput.from_path(source)
    if _seen(executor, by_path):
        return by_path
    logger.info("workers do not see %s; sending it by value (%d bytes)", by_path.path, by_path.size)
    data = Path(by_path.path).read_bytes()  # type: ignore[arg-type]
    return _scattered(executor, JobInput(name=by_path.name, value=data, origin=by_path.path))


def place_object(executor: Any, obj: Any, name: str = "object") -> JobInput:
    """An in-memory object every job of a fan-out shares: pickled once, scattered once to a cluster."""
    return _scattered(_seam(executor), JobInput.from_object(obj, name))


def _seam(executor: Any) -> Any:
    """A ``distributed.Client`` as the seam's executor (so it scatters and checks paths)."""
    from quantscope.execution.fanout import _as_executor

    return _as_executor(executor)


def _seen(executor: Any, file: JobInput) -> bool:
    """Whether the executor's workers see ``file`` (always, for executors on this machine)."""
    sees = getattr(executor, "sees_path", None)
    return sees is None or bool(sees(file.path, file.size, file.mtime))


def _scattered(executor: Any, value_input: JobInput) -> JobInput:
    scatter = getattr(executor, "scatter", None)
    if scatter is None:
        return value_input
    return dataclasses.replace(value_input, value=scatter(value_input.value))
