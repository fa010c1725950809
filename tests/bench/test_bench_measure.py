"""The benchmark's quality scores: the CTC fidelity of a text recognizer."""

from __future__ import annotations

import numpy as np
from bench.measure import ctc_greedy, per_sample


def _one_hot(steps: list[list[int]], classes: int = 4) -> np.ndarray:
    out = np.zeros((len(steps), len(steps[0]), classes))
    for i, row in enumerate(steps):
        out[i, np.arange(len(row)), row] = 1.0
    return out


def test_greedy_ctc_merges_repeats_and_drops_blanks() -> None:
    probs = _one_hot([[1, 1, 0, 2, 2], [1, 0, 1, 2, 0], [0, 0, 0, 0, 0]])
    assert ctc_greedy(probs) == [(1, 2), (1, 1, 2), ()]  # a blank between repeats keeps both


def test_a_line_scores_one_only_when_its_text_equals_the_float_models() -> None:
    reference = _one_hot([[1, 1, 0, 2, 2], [3, 3, 3, 0, 1]])
    same_text = _one_hot([[1, 0, 0, 2, 0], [3, 0, 0, 0, 2]])  # other frames, line 1's text is the same
    np.testing.assert_array_equal(per_sample("ctc", same_text, reference, None), [1.0, 0.0])
