"""Output paths checked before anything is written: never an input, never a device, never too long.

An input is protected however it is reached: the same path, a symlink to it (paths are resolved),
or a hard link (the same device and inode). A directory input protects everything under it
(a SavedModel, a folder of calibration files). An existing output must be a regular file: a
device (``/dev/null``), a FIFO or a socket is refused rather than replaced by a file, and a path
written with a trailing slash names a directory, which is refused for a file output.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from quantscope.errors import OutputError

_DEFAULT_NAME_MAX = 255


def _same_file(a: Path, b: Path) -> bool:
    try:
        sa, sb = a.stat(), b.stat()
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _clashes(out: Path, src: Path) -> bool:
    if out == src or _same_file(out, src):
        return True
    return src.is_dir() and out.is_relative_to(src)


def name_max(directory: Path) -> int:
    """The longest file name (in bytes) the file system holding ``directory`` takes."""
    try:
        return int(os.pathconf(directory, "PC_NAME_MAX"))
    except (OSError, ValueError):
        return _DEFAULT_NAME_MAX


def check_output_path(
    out: str | os.PathLike[str], *inputs: str | os.PathLike[str] | None, siblings: Iterable[str] = ()
) -> Path:
    """``out`` resolved, after refusing what would overwrite an input or cannot be a file.

    ``inputs`` are every path the command reads (None entries are skipped); ``siblings`` are the
    names of files written beside ``out`` (a sidecar, an external data file), checked the same way.
    Raises :class:`OutputError` naming the problem and the fix.
    """
    raw = os.fspath(out)
    if raw.endswith(("/", os.sep)) or raw in ("", ".", ".."):
        raise OutputError(
            f"output path {raw!r} names a directory; give a file name such as {os.path.join(raw or '.', 'model.onnx')}"
        )
    o = Path(raw).resolve()
    sources = [Path(s).resolve() for s in inputs if s is not None]
    for path in (o, *(o.with_name(n) for n in siblings)):
        _check_one(path, o, sources)
    return o


def _check_one(path: Path, out: Path, sources: list[Path]) -> None:
    for src in sources:
        if _clashes(path, src):
            raise OutputError(
                f"output path {path} is the input model, one of its data files or another input of this "
                f"command ({src}); choose another path (inputs are never overwritten)"
            )
    parent = path.parent
    if not parent.exists():
        raise OutputError(f"output directory {parent} does not exist; create it first")
    if not parent.is_dir():
        raise OutputError(
            f"cannot write {path}: {parent} is a file, not a directory; choose an output path inside a directory"
        )
    longest = name_max(parent)
    if len(os.fsencode(path.name)) > longest:
        raise OutputError(
            f"output file name {path.name[:40]}... is {len(os.fsencode(path.name))} bytes long; the file system "
            f"takes at most {longest}: choose a shorter name"
        )
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise OutputError(f"cannot use {path} as an output: {exc.strerror or exc}") from exc
    if mode is not None and stat.S_ISDIR(mode):
        raise OutputError(f"output path {path} is a directory; give a file name such as {path / out.name}")
    if mode is not None and not stat.S_ISREG(mode):
        raise OutputError(
            f"output path {path} exists and is not a regular file (a device, FIFO or socket); it is never "
            "replaced: choose a file path"
        )
    if not os.access(parent, os.W_OK):
        raise OutputError(f"output directory {parent} is not writable; choose another location")


def check_output_dir(out: str | os.PathLike[str], *inputs: str | os.PathLike[str] | None) -> Path:
    """A directory output (``--report``, ``demo --out``): created if missing, refused if it is a file."""
    o = Path(out).resolve()
    for src in (Path(s).resolve() for s in inputs if s is not None):
        if o == src or _same_file(o, src):
            raise OutputError(f"output directory {o} is an input of this command; choose another path")
    if o.exists() and not o.is_dir():
        raise OutputError(f"output path {o} exists and is not a directory; choose a folder path")
    try:
        o.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the output directory {o}: {exc.strerror or exc}; choose another path") from exc
    if not os.access(o, os.W_OK):
        raise OutputError(f"output directory {o} is not writable; choose another location")
    return o
