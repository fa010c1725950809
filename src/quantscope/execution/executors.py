"""The executor seam: where fan-out jobs run.

Every fan-out takes an ``executor``: anything with ``concurrent.futures.Executor``'s
``submit``. Three are made here:

- :func:`local_executor` (the default): a process pool on this machine; ``workers=1`` runs
  each job inline, in submission order (deterministic, no processes);
- :func:`dask_executor`: a ``distributed.Client`` (given, or connected to a scheduler
  address, or to ``QUANTSCOPE_SCHEDULER``); jobs and their inputs travel to its workers;
- :func:`executor_from_options`: what the CLI's ``--scheduler``/``--workers`` and the API's
  ``executor=`` ask for; :func:`open_executor` is the same as a ``with`` block that shuts
  down only what it started (never an executor, client or cluster the caller passed in).
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import logging
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol, runtime_checkable

from quantscope.errors import ConfigError

__all__ = [
    "SCHEDULER_ENV",
    "DaskExecutor",
    "Executor",
    "InlineExecutor",
    "LocalExecutor",
    "dask_executor",
    "executor_from_options",
    "local_executor",
    "open_executor",
]

logger = logging.getLogger(__name__)

SCHEDULER_ENV = "QUANTSCOPE_SCHEDULER"


@runtime_checkable
class Executor(Protocol):
    """What a fan-out needs: ``concurrent.futures.Executor``'s submit and shutdown.

    The futures returned need ``done()``, ``result()`` and ``cancel()``; ``concurrent``
    and ``distributed`` futures both have them.
    """

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any: ...

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any], timeout: float | None = None,
            chunksize: int = 1) -> Iterator[Any]: ...

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None: ...


class InlineExecutor(cf.Executor):
    """Runs each job at submit, in this thread: deterministic, no processes (``workers=1``)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        future: cf.Future[Any] = cf.Future()
        future.set_running_or_notify_cancel()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # KeyboardInterrupt included: the caller decides
            future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        return future


class LocalExecutor(cf.Executor):
    """A process pool on this machine that can be restarted after a worker process died.

    Processes are spawned, not forked: a fork of a driver that holds ONNX Runtime or
    framework thread pools can deadlock.
    """

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool = self._new_pool()

    def _new_pool(self) -> cf.ProcessPoolExecutor:
        return cf.ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        return self._pool.submit(fn, *args, **kwargs)

    def cancel(self, futures: Sequence[cf.Future[Any]]) -> None:
        """Cancel ``futures`` and stop the jobs already running (their processes are ended)."""
        for future in futures:
            future.cancel()
        # running jobs cannot be cancelled; end their processes (no public API before 3.14)
        procs = list((getattr(self._pool, "_processes", None) or {}).values())
        self._pool.shutdown(wait=False, cancel_futures=True)
        for proc in procs:
            proc.terminate()
        self._pool = self._new_pool()

    def restart(self) -> None:
        """Replace a broken pool (a worker process died) with a fresh one."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = self._new_pool()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=cancel_futures)


class DaskExecutor(cf.Executor):
    """A ``distributed.Client`` behind the executor seam.

    ``submit`` returns ``distributed`` futures (jobs are never cached by key: ``pure=False``);
    ``scatter`` and ``sees_path`` let :func:`~quantscope.execution.inputs.place` choose how
    inputs travel. ``owns``: close the client (and its cluster) on :meth:`shutdown`.
    """

    def __init__(self, client: Any, *, owns: bool = False, cluster: Any = None) -> None:
        self.client = client
        self._owns = owns
        self._cluster = cluster

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        from quantscope.execution.inputs import lift_futures

        futures: dict[str, Any] = {}
        lifted = lift_futures((args, kwargs), futures)
        return self.client.submit(_call_with_values, fn, *lifted, futures, pure=False)

    def scatter(self, value: Any) -> Any:
        """Send ``value`` to the cluster once; jobs receive a future of it."""
        return self.client.scatter(value, hash=False)

    def sees_path(self, path: str, size: int, mtime: float) -> bool:
        """Whether every worker has ``path`` with this size and mtime (a shared file system)."""
        from quantscope.execution.inputs import file_matches

        answers = self.client.run(file_matches, path, size, mtime)
        return bool(answers) and all(answers.values())

    def worker_count(self) -> int:
        return len(self.client.nthreads())

    def cancel(self, futures: Sequence[Any]) -> None:
        self.client.cancel(list(futures), force=True)

    def wait_first(self, futures: Iterable[Any], timeout: float) -> None:
        from distributed import wait

        with contextlib.suppress(TimeoutError):
            wait(list(futures), timeout=timeout, return_when="FIRST_COMPLETED")

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if self._owns:
            self.client.close()
            if self._cluster is not None:
                self._cluster.close()


def _call_with_values(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
                      values: dict[str, Any]) -> Any:
    """On a Dask worker: put the scattered values back into the job's inputs, then run it."""
    from quantscope.execution.inputs import sink_values

    return fn(*sink_values(args, values), **sink_values(kwargs, values))


def _distributed() -> Any:
    try:
        import distributed
    except ImportError as exc:
        raise ConfigError(
            "running on a Dask cluster needs the dask extra: pip install 'quantscope[dask]'"
        ) from exc
    return distributed


def local_executor(workers: int | None = None) -> cf.Executor:
    """A process pool of ``workers`` processes on this machine (default: the usable CPUs).

    ``workers=1`` runs every job inline, in order, in this process.
    """
    if workers is None:
        try:
            workers = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            workers = os.cpu_count() or 1
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers must be a positive integer, got {workers!r}")
    return InlineExecutor() if workers == 1 else LocalExecutor(workers)


def dask_executor(scheduler: Any = None, *, workers: int | None = None) -> DaskExecutor:
    """A :class:`DaskExecutor` on ``scheduler``: an address (``"tcp://host:8786"``), a
    ``distributed.Client`` (used as it is, not closed here), or None for ``QUANTSCOPE_SCHEDULER``,
    else a new ``LocalCluster`` of ``workers`` processes (one thread each).

    On a cluster started here, a job whose worker dies is not re-run by the scheduler itself
    (``allowed-failures`` 0): :func:`~quantscope.execution.fanout.fan_out` retries it, counting
    attempts.
    """
    distributed = _distributed()
    if isinstance(scheduler, distributed.Client):
        return DaskExecutor(scheduler)
    address = scheduler or os.environ.get(SCHEDULER_ENV) or None
    if address is not None:
        if not isinstance(address, str):
            raise ConfigError(f"scheduler must be an address such as tcp://host:8786, got {address!r}")
        logger.info("connecting to the Dask scheduler at %s", address)
        try:
            client = distributed.Client(address, timeout="20s")
        except OSError as exc:
            raise ConfigError(f"cannot reach the Dask scheduler at {address}: {exc}") from exc
        return DaskExecutor(client, owns=True)
    import dask

    n = workers if workers is not None else (os.cpu_count() or 1)
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        cluster = distributed.LocalCluster(
            n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None
        )
    return DaskExecutor(distributed.Client(cluster), owns=True, cluster=cluster)


def executor_from_options(
    scheduler: str | None = None, workers: int | None = None, executor: Any = None
) -> cf.Executor:
    """The executor the CLI and API options ask for.

    ``executor`` (API): a ``distributed.Client`` (wrapped) or any ``concurrent.futures.Executor``
    (used as it is). ``scheduler`` (``--scheduler``, or ``QUANTSCOPE_SCHEDULER``): a Dask
    scheduler address. ``workers`` (``--workers N``) alone: a Dask ``LocalCluster`` of N worker
    processes when Dask is installed, else the local process pool. Nothing: the local default.
    """
    if executor is not None:
        if scheduler is not None or workers is not None:
            raise ConfigError("give either executor= or scheduler/workers, not both")
        if isinstance(executor, cf.Executor):
            return executor
        if type(executor).__name__ == "Client" and type(executor).__module__.startswith("distributed"):
            return dask_executor(executor)
        raise ConfigError(
            f"executor must be a distributed.Client or a concurrent.futures.Executor, not {type(executor).__name__}"
        )
    if scheduler is not None or os.environ.get(SCHEDULER_ENV):
        if workers is not None:
            raise ConfigError("--workers starts a local cluster; it cannot go with --scheduler")
        return dask_executor(scheduler)
    if workers is not None:
        try:
            _distributed()
        except ConfigError:
            logger.info("dask is not installed; %s local worker processes without it", workers)
            return local_executor(workers)
        return dask_executor(workers=workers)
    return local_executor()


@contextmanager
def open_executor(
    scheduler: str | None = None, workers: int | None = None, executor: Any = None
) -> Iterator[cf.Executor]:
    """:func:`executor_from_options` for a ``with`` block: on leaving it, what was started here
    (a process pool, a LocalCluster, a client connection) is shut down; a caller's executor is not."""
    made = executor_from_options(scheduler, workers, executor)
    try:
        yield made
    finally:
        if made is not executor:
            made.shutdown()  # a DaskExecutor around the caller's Client closes nothing
