"""SIGTERM handled like Ctrl-C, signals held back around a commit, temporary folders that go away.

``kill``, schedulers and containers stop a process with SIGTERM. :func:`install` makes it raise
:class:`Terminated` (a :class:`KeyboardInterrupt`), so every ``finally`` and ``with`` block that
cleans up after Ctrl-C also cleans up after SIGTERM. :func:`deferred` holds SIGINT and SIGTERM
back for a few renames that must happen together. :func:`temp_dir` makes a folder registered for
removal on any exit: its ``with`` block, :func:`cleanup`, or ``atexit`` as the last resort; what
SIGKILL leaves (it cannot be caught) the next run removes (:mod:`quantscope.leftovers`).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

from quantscope import leftovers

logger = logging.getLogger(__name__)

_HELD = (signal.SIGINT, signal.SIGTERM)


class Terminated(KeyboardInterrupt):
    """Raised in the main thread when SIGTERM arrives (after :func:`install`)."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def interruption(exc: BaseException) -> KeyboardInterrupt | None:
    """The signal behind ``exc``, if one is: a ``KeyboardInterrupt`` in its chain, or a signal received
    since :func:`install` (one that arrives while a C extension initialises comes out as that
    module's ``ImportError: initialization failed``)."""
    seen: BaseException | None = exc
    for _ in range(32):
        if seen is None:
            break
        if isinstance(seen, KeyboardInterrupt):
            return seen
        seen = seen.__cause__ or seen.__context__
    if _received:
        return Terminated(_received[-1]) if _received[-1] == signal.SIGTERM else KeyboardInterrupt()
    return None


def exit_code(exc: KeyboardInterrupt) -> int:
    """128 + the signal's number: 130 for Ctrl-C, 143 for SIGTERM."""
    return 128 + getattr(exc, "signum", signal.SIGINT)


_received: list[int] = []  # signals that arrived since install(), in order


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    _received.append(signum)
    raise Terminated(signum)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    _received.append(signum)
    raise KeyboardInterrupt


def install() -> None:
    """SIGTERM raises :class:`Terminated`, SIGINT ``KeyboardInterrupt`` (both remembered, see
    :func:`interruption`); registered temporary folders are removed at exit."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_terminated)
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, _raise_interrupt)
    atexit.unregister(cleanup)  # once, however often the command line is invoked in one process
    atexit.register(cleanup)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back inside the block; one that arrived is acted on when it ends.

    The Python-level handlers are swapped (a process-directed signal may reach any thread, so
    blocking it in the main thread alone would not hold it back).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        pending.append(signum)

    previous = {s: signal.signal(s, hold) for s in _HELD}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if pending:
            _deliver(pending[0], previous[pending[0]])


def _deliver(signum: int, handler: object) -> None:
    """Act on a held signal as its handler would have."""
    if callable(handler):
        handler(signum, None)
    elif handler == signal.SIG_DFL:
        os.kill(os.getpid(), signum)


class _Registry:
    """The temporary folders this process made and has not removed yet."""

    folders: set[Path] = set()  # noqa: RUF012 - the process-wide registry (not a cache)


def _remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    _Registry.folders.discard(path)


def cleanup() -> None:
    """Remove every registered temporary folder still there."""
    for path in sorted(_Registry.folders):
        _remove(path)


def lasting_temp_dir(prefix: str = "quantscope-") -> Path:
    """A new folder in ``$TMPDIR`` that lives until the process ends: removed by :func:`cleanup` or
    ``atexit``, and (its name owned like :func:`temp_dir`'s) by the next run after a SIGKILL."""
    where = Path(tempfile.gettempdir())
    leftovers.remove_stale(where)
    with deferred():  # made and registered together: no folder escapes the registry
        path = Path(tempfile.mkdtemp(prefix=leftovers.owned_prefix(prefix), dir=where))
        _Registry.folders.add(path)
    atexit.register(_remove, path)
    return path


@contextlib.contextmanager
def temp_dir(prefix: str = "quantscope-", directory: str | os.PathLike[str] | None = None) -> Iterator[Path]:
    """A new folder (in ``directory``, else ``$TMPDIR``) removed when the block ends, however it ends.

    Its name carries this process as its owner (:func:`quantscope.leftovers.owned_prefix`), and
    the folder's leftovers of killed quantscope processes are removed first (once per process).
    """
    where = Path(directory) if directory is not None else Path(tempfile.gettempdir())
    leftovers.remove_stale(where)
    with deferred():  # made and registered together: no folder escapes the registry
        path = Path(tempfile.mkdtemp(prefix=leftovers.owned_prefix(prefix), dir=where))
        _Registry.folders.add(path)
    try:
        yield path
    finally:
        _remove(path)
