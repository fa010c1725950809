"""Range selection on PP-OCR v4's text detector (its hardswish blocks leave Conv outputs to float
elementwise chains): ``auto`` judged at the consumers keeps the binarised probability map closer to
float than min-max on pages other than the calibration ones, and every explicit calibrator stays
within the guard's bound of min-max. Run with ``-s`` to see the measured values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from bench.models import DET_THRESH, PPOCR_DET_MEMBER, det_dataset

import quantscope as qs
import realmodels
from quantscope.runtime import make_session, run

pytestmark = pytest.mark.real

SHAPE = (96, 128)  # small pages keep the test in seconds; the detector takes multiples of 32


@pytest.fixture(scope="module")
def det(realmodels_cache_dir: Path) -> qs.Model:
    wheel = realmodels.fetch_wheel(realmodels.RAPIDOCR_SPEC, realmodels_cache_dir)
    return qs.load(realmodels.extract_member(wheel, PPOCR_DET_MEMBER,
                                             realmodels._extract_dir(realmodels_cache_dir, wheel)))


@pytest.fixture(scope="module")
def pages() -> tuple[np.ndarray, np.ndarray]:
    return det_dataset(16, seed=31, shape=SHAPE), det_dataset(24, seed=32, shape=SHAPE)  # calibration, evaluation


@pytest.fixture(scope="module")
def fidelity(det: qs.Model, pages) -> dict[str, tuple[float, qs.Quantized]]:
    """IoU of the binarised map against float's, on the evaluation pages, per calibrator."""
    calib, evaluation = pages
    ref = run(make_session(det), {"x": evaluation})[0] > DET_THRESH
    out = {}
    for calibration in ("minmax", "auto", "entropy"):
        q = qs.quantize(det, qs.StaticInt8(calibration=calibration, measure=False, num_samples=16),
                        qs.Dataset.from_arrays({"x": calib}))
        got = run(make_session(q.model), {"x": evaluation})[0] > DET_THRESH
        inter, union = (got & ref).sum(axis=(1, 2, 3)), (got | ref).sum(axis=(1, 2, 3))
        out[calibration] = float(np.mean(np.where(union > 0, inter / np.maximum(union, 1), 1.0))), q
    print("\nPP-OCR det IoU vs float:", {k: round(v[0], 4) for k, v in out.items()})
    return out


def test_auto_judged_at_the_consumers_beats_min_max(fidelity) -> None:
    iou_auto, q = fidelity["auto"]
    rules = q.plan.extra["ranges"]["rules"]
    assert any(r.endswith("(at consumers)") for r in rules)  # the hardswish chains are seen
    assert iou_auto >= fidelity["minmax"][0] + 0.005


def test_a_guarded_explicit_calibrator_stays_near_min_max(fidelity) -> None:
    iou, q = fidelity["entropy"]
    assert q.plan.extra["ranges"]["guarded"]  # entropy clips some tensors heavily here
    assert iou >= fidelity["minmax"][0] - 0.005
