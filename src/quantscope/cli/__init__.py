"""The ``quantscope`` command: a thin shell over the public API, and the only place that prints.

Exit codes: 0 ok, 2 a command line that does not parse, 3 a refused input (model, data, option
or config value, output path) or a runtime failure, 4 a quality gate failed, 1 internal error,
130 Ctrl-C and 143 SIGTERM (both clean up: temporary folders go, outputs stay old or whole-new).
Model text (names, producer, notes) is printed through :mod:`quantscope.textsafe` only.

Modules: :mod:`.output` (consoles, progress, tables), :mod:`.options` (the method options
generated from the config classes, shared parsers), one module per group of commands.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, NoReturn

import click
from rich.text import Text

from quantscope import __version__, signals
from quantscope.cli.analyze import analyze, demo, report, robustness, sweep, tune
from quantscope.cli.convert import convert
from quantscope.cli.inspect_cmd import inspect_command
from quantscope.cli.output import console, err_console, progress_bar, step_progress
from quantscope.cli.quantize import quantize
from quantscope.errors import QuantscopeError
from quantscope.textsafe import clean, markup

__all__ = ["console", "err_console", "main", "progress_bar", "step_progress"]


def _interrupted(exc: KeyboardInterrupt) -> NoReturn:
    what = "SIGTERM" if isinstance(exc, signals.Terminated) else "Ctrl-C"
    err_console.print(f"interrupted ({what})", highlight=False)
    sys.exit(signals.exit_code(exc))


class _Group(click.Group):
    """Turns quantscope errors into one clear line and the documented exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except QuantscopeError as exc:
            if ctx.obj and ctx.obj.get("verbose") and (exc.__cause__ is not None or exc.__context__ is not None):
                from quantscope.importers.exporter_errors import clean_traceback

                err_console.print(Text(clean(clean_traceback(exc), newlines=True)), highlight=False)
            err_console.print(f"[bold red]error:[/] {type(exc).__name__}: {markup(str(exc), newlines=True)}", highlight=False)
            sys.exit(exc.exit_code)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException, SystemExit):
            raise
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (signals.install): cleaned up on the way out
            _interrupted(exc)
        except Exception as exc:  # an internal error: show it plainly, exit 1
            signalled = signals.interruption(exc)  # e.g. Ctrl-C while a C extension was being imported
            if signalled is not None:
                _interrupted(signalled)
            logging.getLogger("quantscope").debug("internal error", exc_info=True)
            err_console.print(f"[bold red]internal error:[/] {type(exc).__name__}: {markup(str(exc), newlines=True)}", highlight=False)
            err_console.print("run with --verbose for the traceback, and please report it")
            if ctx.obj and ctx.obj.get("verbose"):
                raise
            sys.exit(1)
        finally:
            signals.cleanup()


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="quantscope")
@click.option("-v", "--verbose", is_flag=True, help="Log what happens, and show tracebacks of internal errors.")
@click.pass_context
def main(ctx: click.Context, verbose: bool) -> None:
    """Post-training quantization and analysis of trained models, executed by ONNX Runtime."""
    ctx.obj = {"verbose": verbose}
    quiet_warnings(verbose)
    signals.install()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_SafeFormatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, handlers=[handler])


def quiet_warnings(verbose: bool) -> None:
    """Deprecation and future warnings of the libraries underneath (NumPy, Keras, TensorFlow, torch)
    are for their callers, not for quantscope's users: hidden unless ``-v``, which also lets
    TensorFlow's C++ logging through (see :mod:`quantscope.importers.tf_quiet`)."""
    import os
    import warnings

    if verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0")
        return
    for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category)
    warnings.filterwarnings("ignore", message=r"(?i).*deprecat")


class _SafeFormatter(logging.Formatter):
    """Log lines with control characters escaped: messages quote node and tensor names from the model."""

    def format(self, record: logging.LogRecord) -> str:
        return clean(super().format(record), newlines=True)


for _command in (inspect_command, quantize, demo, robustness, analyze, sweep, tune, report, convert):
    main.add_command(_command)
