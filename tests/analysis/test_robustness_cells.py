"""``robustness(executor=)``: every shift × severity × model cell as a job, the same numbers as in process."""

from __future__ import annotations

import numpy as np
import pytest
from test_robustness import _brightness_model, _images

import quantscope as qs
from quantscope.analysis.robustness import robustness
from quantscope.execution import local_executor

SHIFTS = ["darker", "brighter", "occlusion"]


def _study(tmp_path, executor):
    model = _brightness_model(tmp_path)
    x, labels = _images(200, seed=0)
    data = qs.Dataset.from_arrays({"x": x}, labels=labels)
    q = qs.quantize(model, qs.StaticInt8(), qs.Dataset.from_arrays({"x": _images(64, seed=1)[0]}))
    seen: list[tuple[int, int]] = []
    result = robustness(model, {"int8": q}, data, modality="image", shifts=SHIFTS, severities=(0.5, 1.0),
                        progress=lambda d, t: seen.append((d, t)), executor=executor)
    return result, seen


def test_cells_on_an_inline_executor_give_the_in_process_grid(tmp_path) -> None:
    here, _ = _study(tmp_path, None)
    inline, seen = _study(tmp_path, local_executor(1))
    assert inline == here
    assert seen[-1][0] == seen[-1][1] == 2 * (1 + len(SHIFTS) * 2)
    assert np.isfinite([p.quality["accuracy"] for p in inline.shifts]).all()


@pytest.mark.slow
def test_cells_on_a_process_pool_give_the_in_process_grid(tmp_path) -> None:
    pool = local_executor(2)
    try:
        remote, _ = _study(tmp_path, pool)
    finally:
        pool.shutdown()
    assert remote == _study(tmp_path, None)[0]
