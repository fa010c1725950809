"""The algorithms on all-MiniLM-L6-v2 with real sentences: calibrated on some, measured on others.

Run with ``-s`` to see the mean cosine of the sentence embeddings against float.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import quantscope as qs
import realmodels
from quantscope.analysis.evaluate import predict
from quantscope.numerics.metrics import cosine_similarity

pytestmark = [pytest.mark.real, pytest.mark.slow]


@pytest.fixture(scope="module")
def minilm_split(minilm_onnx: Path, minilm_tokenizer_json: Path, sentences: list[str]):
    order = np.random.default_rng(0).permutation(len(sentences))
    calib = qs.Dataset.from_arrays(realmodels.minilm_dataset([sentences[i] for i in order[:64]], minilm_tokenizer_json))
    held = qs.Dataset.from_arrays(realmodels.minilm_dataset([sentences[i] for i in order[64:164]], minilm_tokenizer_json))
    model = qs.load(minilm_onnx)
    return model, calib, held, predict(model, held, batch_size=16)[0]


def _cosine(minilm_split, config: qs.MethodConfig) -> float:
    model, calib, held, ref = minilm_split
    q = qs.quantize(model, config, calib if config.needs_calibration else None)
    return float(cosine_similarity(ref, predict(q.model, held, batch_size=16)[0]).mean())


def test_static_int8_default_keeps_minilm_close_to_float(minilm_split) -> None:
    plain = _cosine(minilm_split, qs.StaticInt8(calibration="minmax", smoothquant=False, measure=False))
    default = _cosine(minilm_split, qs.StaticInt8(measure=False))  # accuracy only: no region timing
    print(f"\nMiniLM static-int8 on held-out sentences: min-max {plain:.4f}, default (auto + SmoothQuant) {default:.4f}")
    assert default >= 0.995 and default >= plain + 0.004


def test_gptq_beats_round_to_nearest_on_minilm_int4(minilm_split) -> None:
    rtn = _cosine(minilm_split, qs.WeightInt4())
    gptq = _cosine(minilm_split, qs.WeightInt4(algorithm="gptq"))
    print(f"\nMiniLM weight-int4 on held-out sentences: RTN {rtn:.4f}, GPTQ {gptq:.4f}")
    assert gptq >= rtn + 0.005
