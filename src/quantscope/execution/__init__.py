"""Where fan-out jobs run: this machine's processes or a Dask cluster, behind one seam.

- :mod:`~quantscope.execution.executors`: :func:`local_executor` (the default process pool),
  :func:`dask_executor` (a ``distributed.Client``), :func:`executor_from_options` (CLI/API);
- :mod:`~quantscope.execution.fanout`: :func:`fan_out` with progress, retries, timeouts;
- :mod:`~quantscope.execution.inputs`: :class:`JobInput`, models and data by path or by value;
- :mod:`~quantscope.execution.machine`: the worker facts each result carries, :func:`comparable`;
- :mod:`~quantscope.execution.jobs`: job functions (``quantize_job``).

Dask is optional (``pip install 'quantscope[dask]'``): it is imported only when asked for.
"""

from __future__ import annotations

from quantscope.execution.executors import (
    SCHEDULER_ENV,
    DaskExecutor,
    Executor,
    InlineExecutor,
    LocalExecutor,
    dask_executor,
    executor_from_options,
    local_executor,
    open_executor,
)
from quantscope.execution.fanout import Job, JobEvent, JobResult, fan_out
from quantscope.execution.inputs import JobInput, place
from quantscope.execution.machine import (
    Comparability,
    MachineFacts,
    comparable,
    machine_facts,
    where_timed,
)

__all__ = [
    "SCHEDULER_ENV",
    "Comparability",
    "DaskExecutor",
    "Executor",
    "InlineExecutor",
    "Job",
    "JobEvent",
    "JobInput",
    "JobResult",
    "LocalExecutor",
    "MachineFacts",
    "comparable",
    "dask_executor",
    "executor_from_options",
    "fan_out",
    "local_executor",
    "machine_facts",
    "open_executor",
    "place",
    "where_timed",
]
