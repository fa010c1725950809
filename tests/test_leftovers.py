"""What SIGKILL leaves (issue 15): owned temporary names, and their removal once the owner is gone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

import tinymodels
from quantscope import leftovers, signals
from quantscope.leftovers import host_tag, owned_prefix, start_time
from quantscope.transaction import write_files

ROOT = Path(__file__).resolve().parents[1]


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _leftover(folder: Path, prefix: str, pid: int, start: int, *, host: str | None = None, kind: str = "dir") -> Path:
    path = folder / f"{prefix}{host or host_tag()}.{pid}.{start}.k2j4h8q1"
    if kind == "dir":
        path.mkdir()
        (path / "model.onnx").write_bytes(b"half a model")
    else:
        path.write_bytes(b"half a file")
    return path


def test_owned_names_carry_this_process() -> None:
    prefix = owned_prefix(".quantscope-")
    assert prefix.startswith(f".quantscope-{host_tag()}.{os.getpid()}.")
    assert start_time(os.getpid()) == int(prefix.split(".")[-2])
    assert start_time(_dead_pid()) is None
    with pytest.raises(ValueError, match="not a quantscope temporary prefix"):
        owned_prefix("tmp-")


def test_a_write_removes_only_leftovers_of_dead_processes(tmp_path: Path) -> None:
    me, mine_started = os.getpid(), start_time(os.getpid()) or 0
    dead = _dead_pid()
    gone = [
        _leftover(tmp_path, ".quantscope-", dead, 12345),
        _leftover(tmp_path, ".quantscope-probe-", dead, 12345, kind="file"),
        _leftover(tmp_path, ".quantscope-", me, mine_started + 1),  # our PID, reused: another start time
    ]
    kept = [
        _leftover(tmp_path, ".quantscope-", me, mine_started),  # a live process (this one)
        _leftover(tmp_path, ".quantscope-", dead, 12345, host="000000"),  # another host or namespace
    ]
    others = [tmp_path / ".quantscope-notes", tmp_path / f"my.{dead}.1.k2j4h8q1", tmp_path / "model.onnx"]
    for path in others:
        path.write_text("user data")
    link = tmp_path / f".quantscope-{host_tag()}.{dead}.1.linkedto"
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    (outside / "keep").write_text("keep")
    link.symlink_to(outside)
    write_files(tmp_path, {"results.json": b"{}"})
    assert not any(p.exists() for p in gone)
    assert all(p.exists() for p in kept + others)
    assert link.is_symlink() and (outside / "keep").read_text() == "keep"
    assert (tmp_path / "results.json").read_bytes() == b"{}"


def test_tmpdir_folders_of_dead_processes_are_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    stale = _leftover(tmp_path, "quantscope-analyze-", _dead_pid(), 777)
    live = _leftover(tmp_path, "quantscope-analyze-", os.getpid(), start_time(os.getpid()) or 0)
    with caplog.at_level("INFO", logger="quantscope.leftovers"), signals.temp_dir("quantscope-analyze-") as made:
        assert made.parent == tmp_path and made.name.startswith(owned_prefix("quantscope-analyze-"))
    assert not stale.exists() and live.exists() and not made.exists()
    assert str(stale) in caplog.text and "no longer runs" in caplog.text


_HOLDER = """
import sys, time
from quantscope import signals
from quantscope.transaction import Transaction
t = Transaction(sys.argv[1]).__enter__()
staged = t.write_bytes("mlp.q.onnx", b"half a model")
with signals.temp_dir("quantscope-analyze-") as work:
    (work / "variant.onnx").write_bytes(b"a variant")
    print(t.stage, work, flush=True)
    time.sleep(120)
"""


def test_sigkill_mid_write_leaves_nothing_after_the_next_run(tmp_path: Path) -> None:
    """A real process killed with SIGKILL while it holds a staging folder and a $TMPDIR folder."""
    out, tmpdir = tmp_path / "out", tmp_path / "tmpdir"
    out.mkdir()
    tmpdir.mkdir()
    env = {**os.environ, "TMPDIR": str(tmpdir),
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(out)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        stage, work = map(Path, holder.stdout.readline().split())  # type: ignore[union-attr]
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    assert stage.parent == out and work.parent == tmpdir and stage.is_dir() and work.is_dir()
    model = Path(tinymodels.save(tinymodels.mlp(), tmp_path / "mlp.onnx"))
    data = tmp_path / "data.npz"
    np.savez(data, x=np.random.default_rng(0).standard_normal((8, 64)).astype(np.float32))
    live = out / f"{owned_prefix('.quantscope-')}k2j4h8q1"
    live.mkdir()
    run = subprocess.run(
        [sys.executable, "-m", "quantscope.cli", "-v", "analyze", str(model), "--data", str(data), "--no-memory",
         "--no-latency", "--top", "0", "--report", str(out)],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )
    assert run.returncode == 0, run.stderr
    assert not stage.exists() and not work.exists()
    assert live.exists()
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "index.html", "results.json", "summary.md"]
    assert "no longer runs" in run.stderr


def test_leftovers_module_never_leaves_its_folder(tmp_path: Path) -> None:
    inner = tmp_path / "inner"
    inner.mkdir()
    above = _leftover(tmp_path, ".quantscope-", _dead_pid(), 5)
    assert leftovers.remove_stale(inner) == []
    assert above.exists()
