"""Several files replaced together: either all the old ones stay or all the new ones are in place.

A :class:`Transaction` stages new files in a hidden folder beside their targets (same file
system, so renames are atomic), then :meth:`Transaction.commit` renames them into place with
SIGINT and SIGTERM held back. Before a target is replaced, the old file gets a second name (a
hard link) inside the folder; if a rename fails, the renames already done are undone from those.
The folder, backups and anything staged but not committed go when the ``with`` block ends,
on success, error or signal. A model and its sidecar are written this way
(:meth:`quantscope.quantization.QuantizedModel.save`); a report folder's files can be too.
The staging folder's name carries this process (:mod:`quantscope.leftovers`): one that SIGKILL
left behind is removed by the next transaction in that directory.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from quantscope import signals
from quantscope.errors import OutputError


class Transaction:
    """Files for one directory, staged then committed together; use as a context manager."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self._stage: Path | None = None
        self._context: contextlib.ExitStack | None = None
        self._writes: list[str] = []
        self._removals: list[str] = []

    def __enter__(self) -> Transaction:
        self._context = contextlib.ExitStack()
        try:
            self._stage = self._context.enter_context(signals.temp_dir(".quantscope-", self.directory))
        except OSError as exc:
            raise OutputError(f"cannot write in {self.directory}: {exc.strerror or exc}") from exc
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        assert self._context is not None
        self._context.close()

    @property
    def stage(self) -> Path:
        if self._stage is None:
            raise RuntimeError("use the Transaction in a with block")
        return self._stage

    def path(self, name: str) -> Path:
        """Where to write the new file that becomes ``directory/name`` on commit."""
        if name not in self._writes:
            self._writes.append(name)
        return self.stage / name

    def write_bytes(self, name: str, data: bytes) -> Path:
        """Stage ``data`` as the new ``directory/name`` (a full disk raises :class:`OutputError`)."""
        staged = self.path(name)
        try:
            with open(staged, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            raise OutputError(f"cannot write {self.directory / name}: {exc.strerror or exc}") from exc
        return staged

    def remove(self, name: str) -> None:
        """Remove ``directory/name`` (if there) on commit: a stale file that must not outlive the old ones."""
        self._removals.append(name)

    def commit(self) -> None:
        """Rename every staged file into place; on failure put back what was there before."""
        missing = [n for n in self._writes if not (self.stage / n).is_file()]
        if missing:
            raise RuntimeError(f"staged files never written: {missing}")
        with signals.deferred():
            done: list[tuple[Path, Path | None]] = []  # (target, its backup or None)
            try:
                for i, name in enumerate([*self._writes, *self._removals]):
                    target = self.directory / name
                    backup = self._backup(target, i)
                    if name in self._writes:
                        done.append((target, backup))
                        os.replace(self.stage / name, target)
                    elif backup is not None:
                        done.append((target, backup))
                        os.unlink(target)
            except BaseException as exc:
                self._roll_back(done)
                if isinstance(exc, OSError):
                    raise OutputError(f"cannot write {self.directory}: {exc.strerror or exc}") from exc
                raise

    def _backup(self, target: Path, i: int) -> Path | None:
        if not os.path.lexists(target):
            return None
        backup = self.stage / f".old-{i}"
        try:
            os.link(target, backup, follow_symlinks=False)
        except OSError:  # a file system without hard links: move it aside instead
            os.replace(target, backup)
        return backup

    @staticmethod
    def _roll_back(done: list[tuple[Path, Path | None]]) -> None:
        for target, backup in reversed(done):
            with contextlib.suppress(OSError):
                if backup is None:
                    target.unlink(missing_ok=True)
                else:
                    os.replace(backup, target)


def write_files(directory: str | os.PathLike[str], files: Mapping[str, bytes]) -> Path:
    """Write ``files`` (name → bytes) into ``directory`` as one set: all new ones, or the old ones left.

    For outputs that are read together, such as a report's ``results.json``, ``summary.md`` and
    ``index.html``: a full disk or a signal never leaves half of the set replaced.
    """
    d = Path(directory)
    with Transaction(d) as transaction:
        for name, data in files.items():
            transaction.write_bytes(name, data)
        transaction.commit()
    return d
