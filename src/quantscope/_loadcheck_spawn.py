"""Start the load check's children (:mod:`quantscope._loadcheck_child`), one of them ahead of need.

A child spends most of its life importing NumPy and ONNX Runtime (about 0.15 s here) before it
loads a model in well under that. :func:`prestart` starts the next child early (``quantscope
quantize`` does so before it imports its own modules, loads the model and calibrates), so those
imports run beside the caller's work; the child then waits for its arguments on stdin. Every
child takes its arguments that way, a fresh one or the early one, so the two behave alike. This
module imports only the standard library: starting a child costs the caller nothing to import.

An early child that is never used is ended by :func:`discard` (the CLI calls it when the command
ends) or at the caller's exit, and reads end-of-file on stdin if the caller dies first.
"""

from __future__ import annotations

import atexit
import json
import subprocess
import sys
import threading
from pathlib import Path

CHILD = Path(__file__).with_name("_loadcheck_child.py")
_RUN_CHILD = "import runpy, sys; runpy.run_path(sys.argv[1], run_name='__main__')"
_early: subprocess.Popen[str] | None = None
_lock = threading.Lock()  # checks run from a sweep's threads: one of them gets the early child


def spawn() -> subprocess.Popen[str]:
    """A new child, importing ONNX Runtime, then waiting for :func:`send`."""
    return subprocess.Popen(
        [sys.executable, "-c", _RUN_CHILD, str(CHILD), "--", "--stdin"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace",
    )


def prestart() -> None:
    """Start the child the next load check will use, unless one is already waiting."""
    global _early
    with _lock:
        if _early is None or _early.poll() is not None:
            _early = spawn()


def _claim() -> subprocess.Popen[str] | None:
    """The early child, now no longer waiting for anyone else, if it is alive."""
    global _early
    with _lock:
        child, _early = _early, None
    return child if child is not None and child.poll() is None else None


def take() -> subprocess.Popen[str]:
    """The early child if one is waiting (alive), else a new one."""
    return _claim() or spawn()


def send(child: subprocess.Popen[str], argv: list[str], cwd: Path, timeout: float) -> tuple[str, str, bool]:
    """Give ``child`` its arguments and wait: (stdout, stderr, timed out). A child past
    ``timeout`` seconds is killed (its output so far is returned)."""
    request = json.dumps({"argv": argv, "cwd": str(cwd)}) + "\n"
    try:
        out, err = child.communicate(request, timeout=timeout)
        return out, err, False
    except subprocess.TimeoutExpired:
        child.kill()
        out, err = child.communicate()
        return out, err, True


def discard() -> None:
    """End the early child if it was not used (the caller's work ended before its load check)."""
    child = _claim()
    if child is not None:
        child.kill()
        child.communicate()


atexit.register(discard)
