"""Command-line options: the method options generated from the config classes, and shared parsers.

:func:`method_options` turns every :class:`~quantscope.config.fields.CliSetting` (fields of
every registered config class, merged by command-line name) into a click option, typed from
the field's annotation: bool fields become flags (``--per-tensor``) or on/off switches
(``--reduce-range/--full-range``), ints and floats take a number, string fields with choices
take one of them, tuples of op types take a comma-separated list (or repeat, for the
exclusion options). Values click cannot parse exit 2; values a config refuses exit 3.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from quantscope.config import config_classes
from quantscope.config.fields import CliSetting, cli_settings

F = Callable[..., Any]


def method_settings() -> list[CliSetting]:
    """The method options of every registered config class, merged by name."""
    return cli_settings(config_classes())


def _click_option(s: CliSetting) -> Callable[[F], F]:
    kw: dict[str, Any] = {"help": s.help}
    if s.kind == "flag":
        kw.update(is_flag=True, default=False)
    elif s.kind == "switch":
        kw.update(default=None)
    elif s.kind == "multiple":
        kw.update(multiple=True)
    elif s.kind == "list":
        kw.update(metavar="OP,OP...")
    elif s.choices is not None and s.type is str:
        kw.update(type=click.Choice([str(c) for c in s.choices]))
    else:
        kw.update(type=s.type)
    return click.option(*s.cli.split(" "), s.dest, **kw)


def method_options(f: F) -> F:
    """Add one click option per method setting to the command ``f``."""
    for s in reversed(method_settings()):
        f = _click_option(s)(f)
    return f


def parse_max_drop(text: str | None) -> float | None:
    """``1%`` or ``0.01`` → 0.01 (a fraction of the float model's quality)."""
    from quantscope.errors import ConfigError

    if text is None:
        return None
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100.0 if raw.endswith("%") else float(raw)
    except ValueError:
        raise ConfigError(f"--max-drop takes a percentage like 1% or a fraction like 0.01, not {text!r}") from None
    if not 0 <= value < 1:
        raise ConfigError(f"--max-drop {text!r} is out of range; give a percentage below 100%, e.g. 1% or 0.01")
    return value


def parse_floats(text: str | None, what: str) -> list[float] | None:
    """``"0,0.5,1"`` → ``[0.0, 0.5, 1.0]``; a :class:`ConfigError` naming ``what`` otherwise."""
    from quantscope.errors import ConfigError

    if text is None:
        return None
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise ConfigError(f"{what} takes comma-separated numbers, got {text!r}") from exc


def config_object(path: Path) -> dict[str, Any]:
    """The table of a ``--config`` file (TOML or JSON; UTF-8, bounded size and depth); exit 3 otherwise."""
    from quantscope.cli.files import readable
    from quantscope.config.compose import read_config_file
    from quantscope.errors import ConfigError

    readable(path, "config file", ConfigError)
    return read_config_file(path)


def dataset(path: Path, options: Any = None, what: str = "data") -> Any:
    """The dataset in ``path`` (:meth:`quantscope.Dataset.from_path`: .npz/.npy, a folder of them,
    images, a .txt of texts), read with the command's data options (refused if it cannot be read)."""
    from quantscope.cli.data_options import read_dataset
    from quantscope.cli.files import readable
    from quantscope.errors import DataError

    readable(path, what, DataError)
    return read_dataset(path, options, what)


ANALYZE_METRICS = ("auto", "accuracy", "top5", "agreement", "cosine", "cosine_min", "sqnr_db", "kl",
                   "max_abs", "mean_abs")


OUTPUT_HELP = ("Model output to measure (repeatable; the first is the primary one). Default: the float "
               "output with the most elements per sample, e.g. probabilities rather than an int64 label.")


def output_names(*flags: str) -> Callable[[F], F]:
    """The repeatable option naming the model outputs to measure (``--output NAME``)."""
    return click.option(*flags, "output_names", multiple=True, metavar="NAME", help=OUTPUT_HELP)


def analysis_flags(f: F) -> F:
    """The options shared by ``analyze`` and ``sweep``."""
    for option in reversed((
        click.option("--data", "data_path", type=click.Path(path_type=Path, readable=False), required=True,
                     help="Evaluation data (.npz, a folder of .npz, images, or a .txt of texts); 'labels' enable accuracy."),
        click.option("--metric", type=click.Choice(ANALYZE_METRICS), default="auto", show_default=True,
                     help="Primary quality metric (auto: accuracy with labels, else top-1 agreement)."),
        click.option("--report", "report_dir", type=click.Path(path_type=Path, readable=False),
                     help="Write index.html, summary.md and results.json here."),
        click.option("--max-drop", help="Quality budget, e.g. 1% (of the float value): exit 4 if no variant meets it."),
        click.option("--top", type=int, default=5, show_default=True,
                     help="Nodes measured for per-layer sensitivity (0: none)."),
        click.option("--samples", type=int, default=128, show_default=True,
                     help="Evaluation samples per sensitivity measurement."),
        click.option("--runs", type=int, default=30, show_default=True, help="Timed runs per latency measurement."),
        click.option("--batch", type=int, default=32, show_default=True, help="The larger latency batch."),
        click.option("--memory/--no-memory", default=True, show_default=True,
                     help="Measure peak memory in a fresh process per variant."),
        click.option("--latency/--no-latency", default=True, show_default=True, help="Measure latency."),
        click.option("--seed", type=int, default=0, show_default=True, help="Seed of every sample subset."),
        output_names("--output", "--output-name"),
    )):
        f = option(f)
    return f


def analysis_options(runs: int, batch: int, top: int, samples: int, memory: bool, latency: bool,
                     seed: int, sensitivity_variants: tuple[str, ...] = ()) -> Any:
    from quantscope.analysis.compare import AnalysisOptions

    return AnalysisOptions(
        runs=runs, batch_sizes=(1, batch), sensitivity=top, sensitivity_samples=samples, memory=memory,
        latency=latency, seed=seed, sensitivity_variants=sensitivity_variants or None,
    )


def executor_flags(f: F) -> F:
    """``--scheduler`` and ``--workers``: where the command's jobs run (default: in this process)."""
    for option in reversed((
        click.option("--scheduler", metavar="ADDRESS",
                     help="Run the jobs on this Dask scheduler (tcp://host:8786; default: $QUANTSCOPE_SCHEDULER)."),
        click.option("--workers", type=click.IntRange(min=1), metavar="N",
                     help="Run the jobs on a local Dask cluster of N worker processes."),
    )):
        f = option(f)
    return f


@contextmanager
def job_executor(scheduler: str | None, workers: int | None) -> Iterator[Any]:
    """The executor ``--scheduler``/``--workers`` ask for, shut down afterwards; None (run in
    this process) when neither is given and ``QUANTSCOPE_SCHEDULER`` is unset."""
    from quantscope.execution import SCHEDULER_ENV, open_executor

    if scheduler is None and workers is None and not os.environ.get(SCHEDULER_ENV):
        yield None
        return
    with open_executor(scheduler, workers) as executor:
        yield executor
