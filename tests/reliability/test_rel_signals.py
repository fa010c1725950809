"""Signals: SIGTERM handled like Ctrl-C, the model+sidecar pair whole at any moment, temp folders removed."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from reltools import PYTHON, ROOT, assert_no_traceback, cli, command, env, hidden_entries

import tinymodels
from quantscope import signals

MOMENTS = (0.35, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 1.0)


@pytest.fixture
def workload(tmp_path: Path) -> tuple[list[object], Path]:
    """A quantize run of a few seconds over an existing model+sidecar pair."""
    model = Path(tinymodels.save(tinymodels.mlp(d_in=1024, hidden=2048), tmp_path / "big_mlp.onnx"))
    calib = tmp_path / "calib.npz"
    np.savez(calib, x=np.random.default_rng(0).standard_normal((256, 1024)).astype(np.float32))
    out = tmp_path / "out" / "q.onnx"
    out.parent.mkdir()
    args: list[object] = ["quantize", model, "--calib", calib, "-o", out]
    old = cli(*args, "--per-tensor")
    assert old.returncode == 0, old.stderr
    return args, out


def _pair_is_whole(out: Path, old: tuple[bytes, bytes]) -> str:
    side = out.with_name(out.stem + ".quantscope.json")
    model, sidecar = out.read_bytes(), side.read_bytes()
    if (model, sidecar) == old:
        return "old"
    recorded = json.loads(sidecar)["output_fingerprint"]
    assert recorded == "sha256:" + hashlib.sha256(model).hexdigest(), "a model beside another model's sidecar"
    return "new"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_at_several_moments_leaves_old_or_new_pair(workload, signum) -> None:
    args, out = workload
    side = out.with_name(out.stem + ".quantscope.json")
    old = (out.read_bytes(), side.read_bytes())
    start = time.perf_counter()
    assert cli(*args).returncode == 0  # how long a whole run takes here
    duration = time.perf_counter() - start
    out.write_bytes(old[0])
    side.write_bytes(old[1])
    seen: list[tuple[float, int, str]] = []
    for moment in MOMENTS:
        proc = subprocess.Popen(command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())
        time.sleep(duration * moment)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=120)
        # 0: finished first; 128+n: handled; -n: arrived while Python itself was still starting
        assert proc.returncode in (0, 128 + signum, -signum), (moment, proc.returncode, err)
        if proc.returncode == 128 + signum:
            assert_no_traceback(err)
            assert "interrupted" in err
        seen.append((moment, proc.returncode, _pair_is_whole(out, old)))
        assert hidden_entries(out.parent) == [], (moment, hidden_entries(out.parent))
    assert any(code == 128 + signum for _, code, _ in seen), seen  # some signals arrived mid-run


def test_sigterm_exits_143_with_one_line(workload) -> None:
    args, _ = workload
    start = time.perf_counter()
    assert cli(*args).returncode == 0
    duration = time.perf_counter() - start
    proc = subprocess.Popen(command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())
    time.sleep(duration * 0.8)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the run finished before the signal")
    assert proc.returncode == 143, err
    assert_no_traceback(err)
    assert err.strip().splitlines()[-1].startswith("interrupted (SIGTERM)")


def test_registered_temp_dirs_are_removed_at_exit(tmp_path: Path) -> None:
    code = (
        "import sys; from quantscope import signals; signals.install();"
        f"cm = signals.temp_dir('quantscope-test-', {str(tmp_path)!r}); cm.__enter__();"
        "sys.exit(3)"  # the with block never ends: atexit removes the folder
    )
    proc = subprocess.run([PYTHON, "-c", code], env=env(), capture_output=True, text=True, cwd=ROOT, check=False)
    assert proc.returncode == 3, proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_temp_dir_goes_on_keyboard_interrupt(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt), signals.temp_dir(directory=tmp_path) as folder:
        (folder / "big.onnx").write_bytes(b"x" * 1024)
        raise signals.Terminated()
    assert list(tmp_path.iterdir()) == []
    assert signals.exit_code(signals.Terminated()) == 143 and signals.exit_code(KeyboardInterrupt()) == 130


def test_signals_are_held_back_inside_deferred() -> None:
    signals.install()
    reached = False
    try:
        with pytest.raises(KeyboardInterrupt), signals.deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
            reached = True  # the signal waited for the block to end
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    assert reached


def test_sigterm_during_analyze_leaves_no_temp_folders(tmp_path: Path, workload) -> None:
    args, out = workload
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    model, data = args[1], args[3]
    e = env()
    e["TMPDIR"] = str(tmpdir)
    analyze = command("analyze", model, out, "--data", data, "--runs", "3", "--top", "2")
    proc = subprocess.Popen(analyze, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=e)
    deadline = time.monotonic() + 60
    while not any(tmpdir.glob("quantscope-*")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode in (0, 143), err
    assert_no_traceback(err)
    assert list(tmpdir.glob("quantscope-*")) == []  # (ONNX Runtime's own .ses file is not ours)
