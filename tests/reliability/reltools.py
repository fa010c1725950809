"""Helpers of the reliability suite: run the real CLI in a subprocess, make small models and data."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx

import tinymodels

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
UNSAFE = ("\x1b", "\x07", "\x08", "\r", "\x9b", "\u202e", "\u2066")


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), e.get("PYTHONPATH", "")])
    e.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return e


def command(*args: object) -> list[str]:
    return [PYTHON, "-m", "quantscope.cli", *map(str, args)]


def cli(*args: object, timeout: float = 300, **kw: object) -> subprocess.CompletedProcess[str]:
    """The real ``quantscope`` command, in its own process."""
    return subprocess.run(command(*args), capture_output=True, text=True, timeout=timeout, env=env(), check=False,
                          **kw)


def mlp_with_calib(tmp: Path) -> tuple[Path, Path]:
    model = Path(tinymodels.save(tinymodels.mlp(), tmp / "mlp.onnx"))
    x = np.random.default_rng(0).standard_normal((16, 64)).astype(np.float32)
    calib = tmp / "calib.npz"
    np.savez(calib, x=x)
    return model, calib


def hidden_entries(folder: Path) -> list[str]:
    """Temporary files and folders quantscope might leave: names starting with a dot."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def assert_no_traceback(text: str) -> None:
    assert "Traceback" not in text, text


def hostile_model(path: Path) -> Path:
    """An MLP whose node, input, output, producer and graph names carry terminal escape sequences."""
    model = tinymodels.mlp()
    evil = "\x1b[2J\x1b]0;pwned\x07\x9b31m\u202eevil\r\x08"
    model.producer_name = "prod" + evil
    model.graph.name = "graph" + evil
    for node in model.graph.node:
        node.name = node.name + evil
    old_in, old_out = model.graph.input[0].name, model.graph.output[0].name
    new_in, new_out = "x" + evil, "y" + evil
    model.graph.input[0].name, model.graph.output[0].name = new_in, new_out
    for node in model.graph.node:
        node.input[:] = [new_in if n == old_in else n for n in node.input]
        node.output[:] = [new_out if n == old_out else n for n in node.output]
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path
