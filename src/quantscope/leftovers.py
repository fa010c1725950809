"""Temporary names that say who owns them, and the removal of those left by a killed process.

SIGKILL (the OOM killer, ``kill -9``, a container stopped hard) cannot be caught, so a process
killed mid-write leaves its hidden staging folder beside the output (``.quantscope-...``) and its
working folders in ``$TMPDIR`` (``quantscope-analyze-...``, which can hold every variant model
of a sweep). Every such name made through :func:`owned_prefix` carries the owner:

``<prefix><host>.<pid>.<start>.<random>``, e.g. ``.quantscope-3f9a1c.4242.1734567.k2j4h8q1``

``host`` tells this machine and PID namespace from another sharing the folder (a network file
system, a container volume); ``pid`` and ``start`` (the process's start time in clock ticks
since boot, from ``/proc/<pid>/stat``; ``0`` where there is no ``/proc``) tell a live owner from
a dead one, even after the PID was reused. :func:`remove_stale` removes, directly inside one
folder, the entries with such a name whose owner is gone: never a name of another pattern,
never one made on another host or namespace, never one of a live process, never one of another
user, never anything outside the folder (a symlink is never followed). What it removes it logs
at info level.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import socket
import stat
import threading
from functools import cache
from pathlib import Path

logger = logging.getLogger(__name__)

_NAME = re.compile(
    r"^\.?quantscope-(?:[a-z]+-)*(?P<host>[0-9a-f]{6})\.(?P<pid>\d+)\.(?P<start>\d+)\.[A-Za-z0-9_]+(?:\.[a-z]+)?$"
)
"""Our owned temporary names: a ``quantscope-`` prefix (hidden or not), owner, random tail."""

_swept: set[tuple[str, int]] = set()
_lock = threading.Lock()


def start_time(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot), 0 without ``/proc``, None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None if Path("/proc/self/stat").exists() else _no_proc(pid)
    except OSError:
        return _no_proc(pid)
    fields = text[text.rfind(")") + 2 :].split()  # after "pid (comm) ": state is field 3
    try:
        return int(fields[19])  # field 22 of the whole line
    except (IndexError, ValueError):
        return 0


def _no_proc(pid: int) -> int | None:
    """Without ``/proc``: 0 while a process of that PID exists (age unknown), None when none does.

    On Windows, where ``os.kill`` would end the process, every owner counts as alive.
    """
    if os.name == "nt":
        return 0
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except OSError:  # it exists, owned by someone else
        return 0
    return 0


@cache
def host_tag() -> str:
    """Six hex digits naming this machine and PID namespace."""
    try:
        namespace = str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        namespace = ""
    return hashlib.sha256(f"{socket.gethostname()}|{namespace}".encode()).hexdigest()[:6]


def owned_prefix(prefix: str) -> str:
    """``prefix`` followed by this process's owner tag; random characters complete the name.

    ``prefix`` must start with ``quantscope-`` or ``.quantscope-`` and continue with lowercase
    words ending in ``-`` (``quantscope-analyze-``), so that :func:`remove_stale` knows the name.
    """
    if not re.fullmatch(r"\.?quantscope-(?:[a-z]+-)*", prefix):
        raise ValueError(f"not a quantscope temporary prefix: {prefix!r}")
    pid = os.getpid()
    return f"{prefix}{host_tag()}.{pid}.{start_time(pid) or 0}."


def owner_alive(pid: int, start: int) -> bool:
    """Whether the process that made a name with ``pid`` and ``start`` still runs."""
    now = start_time(pid)
    if now is None:
        return False
    return start == 0 or now == 0 or now == start


def stale_entries(directory: Path) -> list[Path]:
    """Entries directly in ``directory`` with an owned name whose owner is gone (see the module)."""
    out: list[Path] = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return out
    uid = os.getuid() if hasattr(os, "getuid") else None
    host = host_tag()
    for entry in entries:
        match = _NAME.match(entry.name)
        if match is None or match["host"] != host:
            continue
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if stat.S_ISLNK(info.st_mode) or (uid is not None and info.st_uid != uid):
            continue
        if not owner_alive(int(match["pid"]), int(match["start"])):
            out.append(Path(entry.path))
    return out


def remove_stale(directory: str | os.PathLike[str], *, once: bool = True) -> list[Path]:
    """Remove what :func:`stale_entries` finds in ``directory``; each removal is logged at info level.

    ``once``: a folder already swept by this process is not listed again. Errors (a file removed
    meanwhile, no permission) are ignored: recovery never fails the command that asked for it.
    """
    d = Path(directory)
    try:
        key = (str(d.resolve()), os.stat(d).st_ino)
    except OSError:
        return []
    with _lock:
        if once and key in _swept:
            return []
        _swept.add(key)
    removed: list[Path] = []
    for path in stale_entries(d):
        with contextlib.suppress(OSError):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path)
            logger.info("removed %s, left by a quantscope process that no longer runs", path)
    return removed
