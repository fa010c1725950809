"""``fan_out``: many independent jobs on one executor, with progress, retries and timeouts.

The job function runs on the worker wrapped by :func:`run_job`, which records the worker's
:class:`~quantscope.execution.machine.MachineFacts` and wall time and turns an exception of
the job itself into a failed :class:`JobResult` (never retried: it would fail again). A job
whose *worker* failed (the process died: ``BrokenProcessPool``, Dask's ``KilledWorker``, a
lost connection) is submitted again, up to ``retries`` more times, then reported failed with
the reason. Nothing waits forever: ``timeout`` bounds the wait for the next result, and a
Dask cluster left without workers fails the remaining jobs. Ctrl-C cancels every job still
queued or running on the executor and re-raises.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import pickle
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from quantscope.errors import ConfigError
from quantscope.execution.machine import MachineFacts, machine_facts

__all__ = ["Job", "JobEvent", "JobResult", "fan_out", "run_job"]

logger = logging.getLogger(__name__)

NO_WORKER_GRACE_S = 30.0
"""How long a Dask cluster may have no worker at all before the remaining jobs fail."""


@dataclass(frozen=True)
class Job:
    """One call ``fn(*args, **kwargs)``; ``key`` names it in progress and results (unique)."""

    key: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class JobEvent:
    """A progress report: ``done`` of ``total`` jobs finished; ``key`` just became ``state``.

    ``state`` is ``"submitted"``, ``"done"``, ``"failed"``, ``"retrying"`` or ``"cancelled"``;
    ``detail`` says why for the last three.
    """

    key: str
    state: str
    done: int
    total: int
    attempt: int
    detail: str = ""


@dataclass(frozen=True)
class JobResult:
    """What one job gave: its ``value``, or ``error`` (and the ``exception`` when it came back)."""

    key: str
    value: Any = None
    error: str | None = None
    exception: BaseException | None = None
    attempts: int = 1
    machine: MachineFacts | None = None
    seconds: float | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class _Outcome:
    value: Any
    error: str | None
    exception: BaseException | None
    machine: MachineFacts
    seconds: float


def _picklable(exc: BaseException) -> BaseException:
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc


def run_job(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> _Outcome:
    """Run one job where it landed; an exception of the job becomes part of the outcome."""
    machine = machine_facts()
    start = time.perf_counter()
    try:
        value = fn(*args, **kwargs)
    except Exception as exc:
        logger.debug("job failed", exc_info=True)
        return _Outcome(None, f"{type(exc).__name__}: {exc}", _picklable(exc), machine,
                        time.perf_counter() - start)
    return _Outcome(value, None, None, machine, time.perf_counter() - start)


def _as_executor(executor: Any) -> Any:
    if isinstance(executor, cf.Executor):
        return executor
    from quantscope.execution.executors import executor_from_options

    return executor_from_options(executor=executor)


class _Run:
    """The bookkeeping of one fan-out."""

    def __init__(self, executor: Any, fn: Callable[..., Any], jobs: list[Job],
                 progress: Callable[[JobEvent], None] | None) -> None:
        self.executor, self.fn, self.jobs, self.progress = executor, fn, jobs, progress
        self.attempts = [0] * len(jobs)
        self.results: list[JobResult | None] = [None] * len(jobs)
        self.pending: dict[Any, int] = {}
        self.done = 0

    def emit(self, i: int, state: str, detail: str = "") -> None:
        if state in ("done", "failed", "cancelled"):
            self.done += 1
        if detail:
            logger.info("job %s: %s (%s)", self.jobs[i].key, state, detail)
        if self.progress is not None:
            self.progress(JobEvent(self.jobs[i].key, state, self.done, len(self.jobs), self.attempts[i], detail))

    def submit(self, i: int) -> None:
        job = self.jobs[i]
        self.attempts[i] += 1
        future = self.executor.submit(run_job, self.fn, tuple(job.args), dict(job.kwargs))
        self.pending[future] = i
        self.emit(i, "submitted")

    def fail(self, i: int, reason: str, state: str = "failed") -> None:
        self.results[i] = JobResult(self.jobs[i].key, error=reason, attempts=self.attempts[i])
        self.emit(i, state, reason)

    def finish(self, future: Any, retries: int) -> tuple[bool, bool]:
        """Record a finished future; returns (resubmit it, the executor broke)."""
        i = self.pending.pop(future)
        try:
            outcome: _Outcome = future.result()
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # the worker, not the job, failed
            reason = f"worker lost: {type(exc).__name__}: {exc}"
            broke = isinstance(exc, cf.BrokenExecutor)
            if self.attempts[i] <= retries:
                self.emit(i, "retrying", reason)
                return True, broke
            self.fail(i, f"{reason} (after {self.attempts[i]} attempts)")
            return False, broke
        self.results[i] = JobResult(
            self.jobs[i].key, value=outcome.value, error=outcome.error, exception=outcome.exception,
            attempts=self.attempts[i], machine=outcome.machine, seconds=outcome.seconds,
        )
        self.emit(i, "done" if outcome.error is None else "failed", outcome.error or "")
        return False, False

    def cancel_pending(self, reason: str, state: str) -> None:
        futures = list(self.pending)
        cancel = getattr(self.executor, "cancel", None)
        if cancel is not None:
            cancel(futures)
        else:
            for future in futures:
                future.cancel()
        for future in futures:
            self.fail(self.pending.pop(future), reason, state)


def _wait_first(executor: Any, futures: list[Any], poll: float) -> None:
    wait_first = getattr(executor, "wait_first", None)
    if wait_first is not None:
        wait_first(futures, poll)
    else:
        cf.wait(futures, timeout=poll, return_when=cf.FIRST_COMPLETED)


def fan_out(
    executor: Any,
    fn: Callable[..., Any],
    jobs: Iterable[Job],
    *,
    progress: Callable[[JobEvent], None] | None = None,
    retries: int = 1,
    timeout: float | None = None,
    poll: float = 0.2,
) -> list[JobResult]:
    """Run ``fn(*job.args, **job.kwargs)`` for every job on ``executor``; results in job order.

    ``executor``: any ``concurrent.futures.Executor`` (see :mod:`quantscope.execution.executors`)
    or a ``distributed.Client``. ``fn`` and the job arguments must pickle (a module-level
    function; models and data as :class:`~quantscope.execution.inputs.JobInput`). ``progress``
    receives a :class:`JobEvent` at every change. ``retries``: how many more times a job whose
    worker died is submitted. ``timeout``: seconds to wait for the next job to finish before
    the remaining ones are cancelled and reported failed (None: no limit).
    """
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ConfigError(f"retries must be an integer >= 0, got {retries!r}")
    if timeout is not None and not timeout > 0:
        raise ConfigError(f"timeout must be a positive number of seconds, got {timeout!r}")
    job_list = list(jobs)
    keys = [job.key for job in job_list]
    if len(set(keys)) != len(keys):
        raise ConfigError("fan_out needs a unique key per job")
    executor = _as_executor(executor)
    run = _Run(executor, fn, job_list, progress)
    try:
        for i in range(len(job_list)):
            run.submit(i)
        _drain(run, retries, timeout, poll)
    except BaseException as exc:  # Ctrl-C, or an error in a progress callback: stop the rest
        reason = "cancelled (interrupted)" if isinstance(exc, KeyboardInterrupt) else f"cancelled ({type(exc).__name__})"
        run.progress = None
        run.cancel_pending(reason, "cancelled")
        raise
    return [r for r in run.results if r is not None]


def _drain(run: _Run, retries: int, timeout: float | None, poll: float) -> None:
    executor = run.executor
    last_result = time.monotonic()
    no_workers_since: float | None = None
    while run.pending:
        _wait_first(executor, list(run.pending), poll)
        finished = [f for f in run.pending if f.done()]
        now = time.monotonic()
        if not finished:
            if timeout is not None and now - last_result > timeout:
                run.cancel_pending(f"no job finished within {timeout:g} s (a stuck job or a lost worker)", "failed")
            no_workers_since = _check_workers(run, no_workers_since, now)
            continue
        last_result, no_workers_since = now, None
        again: list[int] = []
        broken = False
        for future in finished:
            i = run.pending[future]
            resubmit, broke = run.finish(future, retries)
            broken = broken or broke
            if resubmit:
                again.append(i)
        if broken:
            # a dead process breaks the whole pool: every queued job fails with it; wait for
            # them, then start a fresh pool and submit them again (counted as an attempt)
            for future in list(run.pending):
                cf.wait([future])
                i = run.pending[future]
                if run.finish(future, retries)[0]:
                    again.append(i)
            restart = getattr(executor, "restart", None)
            if restart is None:
                for i in again:
                    run.fail(i, "the executor broke (a worker process died) and cannot restart")
                again = []
            else:
                restart()
        for i in again:
            run.submit(i)


def _check_workers(run: _Run, since: float | None, now: float) -> float | None:
    count = getattr(run.executor, "worker_count", None)
    if count is None:
        return None
    try:
        workers = count()
    except Exception:  # the scheduler is unreachable: as bad as no worker
        logger.debug("cannot ask the scheduler for its workers", exc_info=True)
        workers = 0
    if workers > 0:
        return None
    since = now if since is None else since
    if now - since > NO_WORKER_GRACE_S:
        run.cancel_pending(f"no worker reachable on the cluster for {NO_WORKER_GRACE_S:g} s", "failed")
    return since
