"""Models, data and job functions shared by the execution tests (module level: they pickle)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np

import tinymodels
from quantscope import DynamicInt8, StaticInt8, WeightInt4
from quantscope.config.calibration import Calibration, StatisticsRequest

MLP_TENSORS = ("x", "h1", "h1b", "a1", "h2", "a2", "y")


def write_files(folder: Path) -> dict[str, Path]:
    """Two tiny models and their calibration sets, seeded."""
    rng = np.random.default_rng(7)
    out = {
        "mlp": Path(tinymodels.save(tinymodels.mlp(seed=1), folder / "mlp.onnx")),
        "conv": Path(tinymodels.save(tinymodels.conv_bn_relu(seed=2, channels=8, size=8), folder / "conv.onnx")),
        "mlp_calib": folder / "mlp_calib.npz",
        "conv_calib": folder / "conv_calib.npz",
    }
    np.savez(out["mlp_calib"], x=(rng.standard_normal((100, 64)) * 2).astype(np.float32))
    np.savez(out["conv_calib"], x=rng.standard_normal((24, 3, 8, 8)).astype(np.float32))
    return out


def configs() -> dict[str, object]:
    return {
        "static/minmax": StaticInt8(calibration="minmax"),
        "static/percentile": StaticInt8(calibration="percentile"),
        "static/entropy": StaticInt8(calibration="entropy"),
        "dynamic": DynamicInt8(),
        "int4": WeightInt4(),
    }


def request(method: str, num_samples: int | None = 60) -> StatisticsRequest:
    return StatisticsRequest(
        MLP_TENSORS, Calibration(method=method, num_samples=num_samples, batch_size=8, seed=3, bins=256)
    )


def square(x: int) -> int:
    return x * x


def fail_with_value_error(x: int) -> int:
    raise ValueError(f"bad job {x}")


def die_once(marker: str) -> str:
    """Kill this worker process the first time (the marker file records it), then succeed."""
    if not os.path.exists(marker):
        Path(marker).write_text("died")
        os.kill(os.getpid(), signal.SIGKILL)
    return "survived"


def always_die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def wait_to_be_killed(pid_file: str, seconds: float) -> int:
    """Write this worker's pid (the test kills it), then work for ``seconds``.

    A retry finds the pid file already there and just returns.
    """
    if os.path.exists(pid_file):
        return os.getpid()
    Path(pid_file).write_text(str(os.getpid()))
    time.sleep(seconds)
    return os.getpid()


def sleep_for(seconds: float) -> float:
    time.sleep(seconds)
    return seconds
