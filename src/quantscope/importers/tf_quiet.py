"""TensorFlow's own logging kept off the terminal, and on quantscope's log instead.

TensorFlow's C++ side writes to the process's stderr at start-up and while converting (the
oneDNN notice, absl's "All log messages before absl::InitializeLog()", MLIR passes of the
TFLite converter, "Estimated count of arithmetic ops"): some ~40 lines for ``sweep --backend
tflite``. ``TF_CPP_MIN_LOG_LEVEL=3`` hides part of it (a value the user, or ``quantscope -v``,
set is kept); :func:`captured_stderr` catches the rest at the file-descriptor level while
TensorFlow is imported or converts, and logs it (``-v`` shows it).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

QUIET_LEVEL = "3"
MAX_LOGGED = 20_000
logger = logging.getLogger("quantscope.tensorflow")


def quiet_tensorflow() -> None:
    """Hide TensorFlow's C++ and absl logging unless ``TF_CPP_MIN_LOG_LEVEL`` says otherwise."""
    level = os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", QUIET_LEVEL)
    if level >= "2":
        logging.getLogger("absl").setLevel(logging.ERROR)
        logging.getLogger("tensorflow").setLevel(logging.ERROR)


@contextlib.contextmanager
def captured_stderr() -> Iterator[None]:
    """What native code writes to file descriptor 2 meanwhile goes to quantscope's log (INFO).

    Python's own ``sys.stderr`` (progress bars, error lines) keeps writing where it did: the
    terminal, or a test runner's buffer. Nothing is captured when the process has no fd 2.
    """
    try:
        sys.stderr.flush()
        fd = 2
        os.fstat(fd)
    except (OSError, ValueError, AttributeError):
        yield
        return
    saved = os.dup(fd)
    python_stderr = sys.stderr
    encoding = getattr(python_stderr, "encoding", None) or "utf-8"
    with tempfile.TemporaryFile(mode="w+b") as sink, \
            open(saved, "w", closefd=False, encoding=encoding, errors="backslashreplace") as terminal:
        os.dup2(sink.fileno(), fd)
        if _writes_to(python_stderr, fd):  # else it writes elsewhere already (a test runner's buffer)
            sys.stderr = terminal
        try:
            yield
        finally:
            terminal.flush()
            sys.stderr = python_stderr
            os.dup2(saved, fd)
            os.close(saved)
            sink.seek(0)
            text = sink.read(MAX_LOGGED).decode("utf-8", "replace").strip()
            if text:
                logger.info("TensorFlow said:\n%s", text)


def _writes_to(stream: object, fd: int) -> bool:
    try:
        return stream.fileno() == fd  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        return False


def import_tensorflow() -> Any:
    """TensorFlow, imported quietly (later imports are then free of its start-up chatter)."""
    quiet_tensorflow()
    with captured_stderr():
        import tensorflow

    return tensorflow
