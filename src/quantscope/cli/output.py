"""Everything the command line shows: the two consoles, progress bars, byte sizes, results and reports."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from quantscope.textsafe import clean, markup

console = Console(stderr=False)
err_console = Console(stderr=True)


def say(text: str) -> None:
    """One line on stdout, printed as text (rich markup and control characters in ``text`` are escaped)."""
    console.print(markup(text, newlines=True), highlight=False)


def warn(text: str, label: str = "warning") -> None:
    """One yellow ``warning:``/``note:`` line on stderr."""
    err_console.print(f"[yellow]{label}:[/] {markup(text, newlines=True)}", highlight=False)


@contextmanager
def _bar(description: str) -> Iterator[tuple[Progress, Any]]:
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err_console, transient=True, disable=not err_console.is_terminal,
    ) as bar:
        yield bar, bar.add_task(description, total=None)


@contextmanager
def progress_bar(description: str) -> Iterator[Callable[[int, int | None], None]]:
    """A rich progress bar on a terminal; silent otherwise."""
    with _bar(description) as (bar, task):

        def update(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        yield update


@contextmanager
def step_progress(description: str) -> Iterator[Callable[[str, int, int], None]]:
    """A rich progress bar whose description follows the step being worked on."""
    with _bar(description) as (bar, task):

        def update(what: str, done: int, total: int) -> None:
            bar.update(task, description=markup(what), completed=done, total=total)

        yield update


def safe(renderable: Any) -> Any:
    """``renderable`` (a table, text or group of them) with control characters escaped in its text.

    Rich drops a few control characters (BEL, backspace, carriage return) but prints ``ESC``
    sequences, C1 controls and bidi overrides as they are: model text (node and variant names)
    in tables goes through :func:`~quantscope.textsafe.clean` here.
    """
    if isinstance(renderable, str):
        return clean(renderable, newlines=True)
    if isinstance(renderable, Text):
        plain = renderable.plain
        safe_plain = clean(plain, newlines=True)
        return renderable if safe_plain == plain else Text(safe_plain, style=renderable.style)
    if isinstance(renderable, Group):
        return Group(*(safe(r) for r in renderable.renderables))
    if isinstance(renderable, Table):
        if renderable.title is not None:
            renderable.title = safe(renderable.title)
        for column in renderable.columns:
            column.header = safe(column.header)
            column._cells[:] = [safe(c) for c in column._cells]
    return renderable


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def write_report(results: Any, report_dir: Path) -> None:
    from quantscope.reporting import render

    written = render(results, report_dir)
    say(f"report written to {written / 'index.html'}")


def show_results(results: Any, report_dir: Path | None) -> None:
    """The terminal table, the report files, and the quality gate (exit 4) last."""
    from quantscope.analysis.compare import quality_gate
    from quantscope.reporting.text import render_text

    console.print(safe(render_text(results)))
    for v in results.variants:
        for w in v.warnings:
            warn(f"{v.name}: {w}")
    for note in results.notes:
        warn(note, "note")
    if report_dir is not None:
        write_report(results, report_dir)
    if results.max_drop is not None:
        ok = quality_gate(results)
        say(f"within the {results.max_drop:.2%} budget: {', '.join(v.name for v in ok)}")
