"""Keras: dynamic axes besides the batch (--dynamic), and TensorFlow's C++ logging kept off the
terminal (on quantscope's log with -v)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import quantscope as qs
from quantscope.errors import ConfigError

SCRIPT = """
import numpy as np, keras
inp = keras.Input((6, 4), name="tokens")
keras.Model(inp, keras.layers.Dense(3)(inp)).save({model!r})
np.savez({example!r}, tokens=np.random.default_rng(0).standard_normal((8, 6, 4)).astype(np.float32))
"""


@pytest.fixture(scope="module")
def keras_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("keras")
    model, example = folder / "seq.keras", folder / "example.npz"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    subprocess.run([sys.executable, "-c", SCRIPT.format(model=str(model), example=str(example))], check=True,
                   env=env, capture_output=True, timeout=300)
    return model, example


def run_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS")}
    return subprocess.run([sys.executable, "-c", "from quantscope.cli import main; main()", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=600)


def test_convert_with_a_dynamic_sequence_says_nothing_on_stderr(keras_file: tuple[Path, Path], tmp_path: Path) -> None:
    model, example = keras_file
    out = tmp_path / "seq.onnx"
    quiet = run_cli("convert", model, "-o", out, "--example", example, "--dynamic", "tokens:1")
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == "", quiet.stderr  # no oneDNN notice, no absl banner
    converted = qs.load(out)
    shape = converted.ir.graph.inputs[0].shape
    assert not isinstance(shape[1], int) and shape[2] == 4
    from quantscope.runtime import make_session, run

    (got,) = run(make_session(converted), {"tokens": np.ones((2, 11, 4), np.float32)})
    assert got.shape == (2, 11, 3)
    verbose = run_cli("-v", "convert", model, "-o", tmp_path / "v.onnx", "--example", example)
    assert verbose.returncode == 0 and "oneDNN" in verbose.stderr  # -v shows what TensorFlow said
    bad = run_cli("convert", model, "-o", tmp_path / "b.onnx", "--example", example, "--dynamic", "tokens:x")
    assert bad.returncode == 3 and "INPUT:AXIS" in bad.stderr


def test_free_axes_by_name_or_position() -> None:
    import tensorflow as tf

    from quantscope.importers.keras import free_axes

    specs = [tf.TensorSpec([None, 6, 4], tf.float32, name="tokens")]
    assert free_axes(specs, {"tokens": [1]})[0].shape.as_list() == [None, None, 4]
    assert free_axes(specs, {"0": [1, 2]})[0].shape.as_list() == [None, None, None]
    with pytest.raises(ConfigError, match="the model's inputs are"):
        free_axes(specs, {"ids": [1]})
    with pytest.raises(ConfigError, match="axis 0"):
        free_axes(specs, {"tokens": [3]})
