"""Check that a model loads and runs in ONNX Runtime at its default optimization level.

ONNX Runtime's graph optimizers can crash the process (a segmentation fault, an abort) on graphs
they do not expect, at ``ORT_ENABLE_ALL`` only. So the check runs in a child process
(:mod:`quantscope._loadcheck_child`): a crash or a hang there becomes a
:class:`RuntimeCrashError`, never the caller's crash. When the model does not load, the check
finds which optimizer is at fault: it reruns the child with ONNX Runtime's verbose log (the last
optimizer applied before the crash), then with ``disabled_optimizers`` until the smallest set
whose disabling makes the model load, and names the nodes whose initializers those optimizers
rewrote.

    report = check_loads(quantized_model)              # raises RuntimeCrashError on a crash
    report = check_loads("model.onnx", raise_on_failure=False)
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir

from quantscope import _loadcheck_spawn as _spawn
from quantscope._loadcheck_window import crash_window
from quantscope.errors import OutputError, RuntimeCrashError, RuntimeFailure
from quantscope.model_stream import release_all
from quantscope.signals import temp_dir

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 120.0  # seconds for one child: session creation and one run
DEFAULT_LEVEL = "ORT_ENABLE_ALL"  # what ONNX Runtime uses when a user creates a session
LOWER_LEVELS = ("ORT_ENABLE_LAYOUT", "ORT_ENABLE_EXTENDED", "ORT_ENABLE_BASIC", "ORT_DISABLE_ALL")
MAX_RUNS = 24  # children started to diagnose one failure, at most

_APPLYING = re.compile(r"Applying graph transformer (\S+?)(?: on step \d+)?\.?$", re.MULTILINE)
_MODIFIED = re.compile(r"GraphTransformer (\S+) modified: 1")
_REMOVED = re.compile(r"Removing initializer '([^']+)'")


@dataclass(frozen=True)
class _Run:
    """What one child did: ``outcome`` is ``ok``, ``refused``, ``crashed`` or ``timeout``."""

    outcome: str
    detail: str
    ran: bool = False
    log: str = ""


@dataclass(frozen=True)
class LoadReport:
    """The result of :func:`check_loads`.

    ``outcome`` is ``ok``, ``refused`` (ONNX Runtime raised an error), ``crashed`` (the child died
    of a signal) or ``timeout``. When not ok: ``crashed_in`` is the optimizer ONNX Runtime was
    applying when it failed (from its verbose log), ``optimizers`` the smallest set found whose
    disabling makes the model load, ``alternatives`` other single optimizers that do it too,
    ``nodes`` the model's nodes whose initializers those optimizers rewrote, and ``loads_at`` the
    highest lower optimization level at which the model loads.
    """

    outcome: str
    detail: str
    ort_version: str
    level: str = DEFAULT_LEVEL
    ran: bool = False
    crashed_in: str | None = None
    optimizers: tuple[str, ...] = ()
    alternatives: tuple[str, ...] = ()
    nodes: tuple[str, ...] = ()
    loads_at: str | None = None
    diagnosed: bool = False
    runs: int = 1
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"

    def message(self) -> str:
        """One paragraph for a user: what failed, where, and what loads."""
        if self.ok:
            ran = "ran one sample" if self.ran else f"loaded (the one-sample run failed: {self.detail})"
            return f"ONNX Runtime {self.ort_version} {ran} at {self.level}"
        what = {
            "crashed": f"crashed ({self.detail})",
            "timeout": f"did not finish ({self.detail})",
            "refused": f"refused the model ({self.detail})",
        }[self.outcome]
        parts = [f"ONNX Runtime {self.ort_version} {what} loading the model at {self.level}"]
        if self.crashed_in:
            parts[0] += f", while applying its graph optimizer {self.crashed_in}"
        if self.optimizers:
            fix = f"it loads with {' + '.join(self.optimizers)} disabled"
            if self.alternatives:
                fix += f" (or with {', '.join(self.alternatives)} disabled instead)"
            parts.append(fix)
        if self.nodes:
            shown = ", ".join(self.nodes[:12]) + (f" and {len(self.nodes) - 12} more" if len(self.nodes) > 12 else "")
            parts.append(f"nodes involved: {shown}")
        if self.loads_at:
            parts.append(f"it loads at {self.loads_at}")
        elif self.diagnosed and self.outcome != "refused" and not self.optimizers:
            parts.append("no lower optimization level loads it either")
        return "; ".join(parts)

    def raise_for_failure(self) -> None:
        """Raise :class:`RuntimeCrashError` (crash, timeout) or :class:`RuntimeFailure` (refused)."""
        if self.outcome in ("crashed", "timeout"):
            raise RuntimeCrashError(self.message(), self)
        if self.outcome == "refused":
            raise RuntimeFailure(self.message())


ModelLike = Any  # quantscope Model | onnx_ir.Model | onnx.ModelProto | str | os.PathLike


def check_loads(
    model: ModelLike,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    sample: Mapping[str, np.ndarray] | None = None,
    diagnose: bool = True,
    raise_on_failure: bool = True,
) -> LoadReport:
    """Load ``model`` in a child process with ONNX Runtime (CPU, ``ORT_ENABLE_ALL``) and run it once.

    ``model`` is a quantscope :class:`~quantscope.io.Model`, an ``onnx_ir.Model``, an
    ``onnx.ModelProto`` or the path of an ``.onnx`` file (its external data beside it). The run
    feeds ``sample`` (one feed as ``session.run`` takes it) or a synthetic one made from the input
    types (symbolic dimensions set to 1). ``timeout`` bounds each child in seconds. When the model
    does not load and ``diagnose`` is set, more children find the optimizer at fault (see
    :class:`LoadReport`). With ``raise_on_failure`` a failure raises :class:`RuntimeCrashError`
    (crash or timeout) or :class:`RuntimeFailure` (ONNX Runtime refused the model).
    """
    import onnxruntime as ort

    start = time.monotonic()
    with temp_dir(prefix="quantscope-loadcheck-") as tmp:
        path = _model_file(model, Path(tmp))
        sample_file = None
        if sample is not None:
            sample_file = Path(tmp) / "sample.npz"
            np.savez(sample_file, **{k: np.asarray(v) for k, v in sample.items()})
        runner = _Runner(path, sample_file, timeout, cwd=Path(tmp))
        first = runner.run(DEFAULT_LEVEL)
        report = LoadReport(outcome=first.outcome, detail=first.detail, ort_version=ort.__version__, ran=first.ran)
        if not report.ok and diagnose:
            report = _diagnose(report, runner, model, path)
        report = replace(report, runs=runner.count, seconds=round(time.monotonic() - start, 3))
    if report.ok:
        logger.debug("load check: %s", report.message())
    else:
        logger.warning("load check: %s", report.message())
        if raise_on_failure:
            report.raise_for_failure()
    return report


def _model_file(model: ModelLike, tmp: Path) -> str:
    """A path ONNX Runtime can load: the caller's file, or the model written to ``tmp`` with its
    weights as external data (no 2 GB protobuf limit, no copy kept in memory)."""
    if isinstance(model, str | os.PathLike):
        return str(Path(model).resolve())
    if isinstance(model, onnx.ModelProto):
        model = ir.from_proto(model)
    elif not isinstance(model, ir.Model):
        model = getattr(model, "ir", None)
        if not isinstance(model, ir.Model):
            raise TypeError("check_loads() takes a Model, onnx_ir.Model, onnx.ModelProto or a path")
    path = tmp / "model.onnx"
    try:
        ir.save(model, path, external_data="model.onnx.data")
        release_all(model)  # the pages of memory-mapped weights read for the copy
    except OSError as exc:  # a full disk, a file-size limit: the user's to fix, not a bug
        raise OutputError(
            f"cannot write the temporary copy of the model that ONNX Runtime's load check needs in {tmp.parent}: "
            f"{exc.strerror or exc}; free space there or point TMPDIR at a disk with room"
        ) from exc
    return str(path)


class _Runner:
    """Starts children on one model file, counting them."""

    def __init__(self, path: str, sample: Path | None, timeout: float, cwd: Path) -> None:
        self.path, self.sample, self.timeout, self.cwd = path, sample, timeout, cwd
        self.count = 0

    def run(self, level: str, disabled: tuple[str, ...] = (), *, verbose: bool = False) -> _Run:
        self.count += 1
        args = [self.path, level, ",".join(disabled)]
        args += ["--verbose"] if verbose else []
        args += ["--sample", str(self.sample)] if self.sample is not None else []
        child = _spawn.take()  # started ahead by the CLI, or now
        stdout, stderr, timed_out = _spawn.send(child, args, self.cwd, self.timeout)
        if timed_out:
            return _Run("timeout", f"no answer within {self.timeout:g} s", log=stderr)
        result = _last_json(stdout)
        if child.returncode < 0:
            return _Run("crashed", _signal_name(-child.returncode), log=stderr)
        if result is None:  # died without a word: an abort the runtime turned into an exit code
            tail = stderr.strip().splitlines()[-1:] or [f"exit status {child.returncode}"]
            return _Run("crashed", f"exit status {child.returncode}: {tail[0][:300]}", log=stderr)
        outcome = "ok" if result.get("ok") else "refused"
        return _Run(outcome, str(result.get("detail", "")), ran=bool(result.get("ran")), log=stderr)

    def loads(self, level: str, disabled: tuple[str, ...] = ()) -> bool:
        return self.run(level, disabled).outcome == "ok"


def _last_json(stdout: str) -> dict[str, Any] | None:
    for line in reversed(stdout.strip().splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def _signal_name(number: int) -> str:
    try:
        return f"{signal.Signals(number).name}, signal {number}"
    except ValueError:
        return f"signal {number}"


def _diagnose(report: LoadReport, runner: _Runner, model: ModelLike, path: str) -> LoadReport:
    """Find the optimizer at fault, the nodes it touched, and the highest level that loads."""
    verbose = runner.run(DEFAULT_LEVEL, verbose=True)
    applied = _APPLYING.findall(verbose.log)
    crashed_in = applied[-1] if applied and verbose.outcome in ("crashed", "timeout") else None
    modified = list(dict.fromkeys(_MODIFIED.findall(verbose.log)))
    # the optimizer that was running first, then those that changed the graph before it, latest first
    candidates = list(dict.fromkeys([*([crashed_in] if crashed_in else []), *reversed(modified)]))
    fixes = [name for name in candidates[: MAX_RUNS // 2] if runner.loads(DEFAULT_LEVEL, (name,))]
    optimizers: tuple[str, ...] = (fixes[0],) if fixes else ()
    if not fixes:
        optimizers = _smallest_set(runner, list(dict.fromkeys(applied)))
    import onnxruntime as ort

    levels = [lvl for lvl in LOWER_LEVELS if hasattr(ort.GraphOptimizationLevel, lvl)]
    loads_at = next((lvl for lvl in levels if runner.count < MAX_RUNS and runner.loads(lvl)), None)
    nodes = _window_nodes(runner, model, path) if report.outcome == "crashed" else ()
    if not nodes:  # no window found: the nodes whose initializers the fixing optimizers rewrote
        nodes = _consumers(model, path, _removed_by(verbose.log, set(fixes) | set(optimizers)))
    return replace(
        report, diagnosed=True, crashed_in=crashed_in, optimizers=optimizers, alternatives=tuple(fixes[1:]),
        nodes=nodes, loads_at=loads_at,
    )


def _window_nodes(runner: _Runner, model: ModelLike, path: str) -> tuple[str, ...]:
    """The nodes of the smallest part of the model that still crashes (see
    :mod:`quantscope._loadcheck_window`); each part is tested in its own child."""
    proto = _proto(model, path)
    budget = 2 * max(1, len(proto.graph.node)).bit_length() + 2

    def crashes(window: onnx.ModelProto) -> bool:
        folder = runner.cwd / f"window{runner.count}"
        folder.mkdir()
        child = _Runner(_model_file(window, folder), None, runner.timeout, cwd=folder)
        runner.count += 1
        return child.run(DEFAULT_LEVEL).outcome == "crashed"

    return crash_window(proto, crashes, max_runs=budget)


def _smallest_set(runner: _Runner, names: list[str]) -> tuple[str, ...]:
    """A 1-minimal set of optimizers whose disabling makes the model load (greedy: drop each
    one that is not needed), or () when disabling all of them does not help."""
    if not names or not runner.loads(DEFAULT_LEVEL, tuple(names)):
        return ()
    needed = list(names)
    for name in names:
        if runner.count >= MAX_RUNS:
            break
        trial = tuple(n for n in needed if n != name)
        if trial and runner.loads(DEFAULT_LEVEL, trial):
            needed = list(trial)
    return tuple(needed)


def _removed_by(log: str, optimizers: set[str]) -> list[str]:
    """Initializers ONNX Runtime removed right after one of ``optimizers`` changed the graph."""
    removed: list[str] = []
    current: str | None = None
    for line in log.splitlines():
        if (m := _MODIFIED.search(line)) is not None:
            current = m.group(1)
        elif _APPLYING.search(line) is not None:
            current = None
        elif current in optimizers and (m := _REMOVED.search(line)) is not None:
            removed.append(m.group(1))
    return list(dict.fromkeys(removed))


def _consumers(model: ModelLike, path: str, initializers: list[str]) -> tuple[str, ...]:
    """Names of the main-graph nodes that read any of ``initializers``."""
    if not initializers:
        return ()
    graph = _graph(model, path)
    wanted = set(initializers)
    return tuple(
        node.name or f"{node.op_type}#{i}"
        for i, node in enumerate(graph)
        if any(v is not None and v.name in wanted for v in node.inputs)
    )


def _graph(model: ModelLike, path: str) -> ir.Graph:
    if isinstance(model, ir.Model):
        return model.graph
    if isinstance(model, onnx.ModelProto):
        return ir.from_proto(model).graph
    inner = getattr(model, "ir", None)
    if isinstance(inner, ir.Model):
        return inner.graph
    return ir.from_proto(onnx.load(path, load_external_data=False)).graph


def _proto(model: ModelLike, path: str) -> onnx.ModelProto:
    """The model as a protobuf with its weights (from the file ``path`` the check wrote or was given)."""
    if isinstance(model, onnx.ModelProto):
        return model
    return onnx.load(path)


__all__ = ["DEFAULT_TIMEOUT", "LoadReport", "RuntimeCrashError", "check_loads"]
