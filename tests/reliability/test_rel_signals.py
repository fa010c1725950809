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

STAGING = "stage"  # the moment quantscope's hidden staging folder appears beside the output: saving


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


def _timings(args: list[object]) -> tuple[float, float]:
    """Seconds to start the command line, and to run the whole command, on this machine now."""
    start = time.perf_counter()
    assert cli("--version").returncode == 0
    startup = time.perf_counter() - start
    start = time.perf_counter()
    assert cli(*args).returncode == 0
    return startup, time.perf_counter() - start


def _default_signals() -> None:
    """In the child: SIGINT and SIGTERM at their defaults. A test run started in the background by a
    shell inherits SIGINT ignored, and Python then installs no KeyboardInterrupt handler."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _signal_at(args: list[object], out: Path, signum: int, moment: float | str) -> tuple[int, str]:
    proc = subprocess.Popen(command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(),
                            preexec_fn=_default_signals)
    if moment == STAGING:
        deadline = time.monotonic() + 120
        while not hidden_entries(out.parent) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.001)
    else:
        time.sleep(float(moment))
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_at_several_moments_leaves_old_or_new_pair(workload, signum) -> None:
    args, out = workload
    side = out.with_name(out.stem + ".quantscope.json")
    old = (out.read_bytes(), side.read_bytes())
    startup, total = _timings(args)
    # start-up, mid-run, late in the run, during the staged writes (between the renames), after the end
    moments: list[float | str] = [startup * 0.5, *(startup + f * (total - startup) for f in (0.3, 0.8)),
                                  STAGING, total * 1.1]
    seen = []
    for moment in moments:
        out.write_bytes(old[0])  # each run starts over the old pair
        side.write_bytes(old[1])
        code, err = _signal_at(args, out, signum, moment)
        # 0: finished first; 128+n: handled; -n: arrived while Python itself was still starting
        assert code in (0, 128 + signum, -signum), (moment, code, err)
        if code == 128 + signum:
            assert_no_traceback(err)
        if moment == STAGING:
            assert code in (0, 128 + signum), (code, err)
        seen.append((moment, code, _pair_is_whole(out, old)))
        assert hidden_entries(out.parent) == [], (moment, hidden_entries(out.parent))
    assert any(code == 128 + signum for _, code, _ in seen), seen  # some signals arrived mid-run


def test_sigterm_exits_143_with_one_line(workload) -> None:
    args, out = workload
    proc = subprocess.Popen(command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(),
                            preexec_fn=_default_signals)
    deadline = time.monotonic() + 120
    while not hidden_entries(out.parent) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.001)
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
    proc = subprocess.Popen(analyze, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=e,
                            preexec_fn=_default_signals)
    deadline = time.monotonic() + 60
    while not any(tmpdir.glob("quantscope-*")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode in (0, 143), err
    assert_no_traceback(err)
    assert list(tmpdir.glob("quantscope-*")) == []  # (ONNX Runtime's own .ses file is not ours)


def test_a_signal_that_surfaces_as_an_import_error_is_still_an_interruption(monkeypatch) -> None:
    # Ctrl-C while a C extension initialises comes out as "ImportError: initialization failed"
    from quantscope import signals

    try:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as ctrl_c:
            raise ImportError("initialization failed") from ctrl_c
    except ImportError as exc:
        found = signals.interruption(exc)
    assert isinstance(found, KeyboardInterrupt) and signals.exit_code(found) == 130
    monkeypatch.setattr(signals, "_received", [])
    assert signals.interruption(ValueError("a bug")) is None  # a bug with no signal received stays a bug
    monkeypatch.setattr(signals, "_received", [signal.SIGTERM])
    assert signals.exit_code(signals.interruption(ValueError("after SIGTERM"))) == 143


def test_cli_reports_an_import_error_caused_by_ctrl_c_as_interrupted(monkeypatch, tmp_path) -> None:
    from click.testing import CliRunner

    import tinymodels
    from quantscope import cli

    def broken_import(*args, **kwargs):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as ctrl_c:
            raise ImportError("initialization failed") from ctrl_c

    model = tinymodels.save(tinymodels.mlp(), tmp_path / "m.onnx")
    monkeypatch.setattr("quantscope.inspection.inspect_model", broken_import)
    result = CliRunner().invoke(cli.main, ["inspect", str(model)])
    assert result.exit_code == 130, result.output
    assert "interrupted (Ctrl-C)" in result.output and "internal error" not in result.output
