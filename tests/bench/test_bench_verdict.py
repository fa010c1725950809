"""The benchmark's verdict logic: met / not met / tie / n/a, and a tie is never "met"."""

from __future__ import annotations

import math

from bench.verdict import MET, NA, NOT_MET, TIE, against_peer, against_threshold, difference_noise


def test_a_peer_target_that_asks_to_be_better_is_a_tie_when_both_are_equal() -> None:
    # both lossless (the digits case with reduce_range): 0 / 0 is a tie, not "0.00x met"
    assert against_peer(0.0, 0.0, 0.5) == TIE
    # within the noise of the measurement: a tie
    assert against_peer(0.010, 0.012, 0.5, noise=0.005) == TIE
    # clearly better by the target: met; clearly not: not met
    assert against_peer(0.002, 0.020, 0.5, noise=0.005) == MET
    assert against_peer(0.015, 0.020, 0.5, noise=0.001) == NOT_MET
    # a lossless peer and a measurably lossy quantscope: not met
    assert against_peer(0.02, 0.0, 0.5, noise=0.005) == NOT_MET


def test_a_peer_target_that_allows_parity_is_met_at_parity() -> None:
    assert against_peer(100.0, 100.0, 1.02) == MET  # size within 2 % of the peer
    assert against_peer(101.0, 100.0, 1.02) == MET
    assert against_peer(110.0, 100.0, 1.02) == NOT_MET


def test_threshold_targets_use_the_interval() -> None:
    assert against_threshold(0.9, 1.0, 0.85, 0.95) == MET
    assert against_threshold(1.4, 1.0, 1.3, 1.5) == NOT_MET
    assert against_threshold(1.0, 1.0, 0.9, 1.1) == TIE  # the same speed as the target: cannot tell
    assert against_threshold(0.3, 0.35) == MET  # no interval: the value itself


def test_missing_figures_are_na() -> None:
    assert against_peer(None, 0.1, 0.5) == NA
    assert against_peer(0.1, float("nan"), 0.5) == NA
    assert against_threshold(None, 1.0) == NA


def test_difference_noise() -> None:
    assert math.isclose(difference_noise(0.003, 0.004), 1.96 * 0.005)
    assert difference_noise(None, 0.1) == 0.0


def test_quantize_time_against_a_peer_leaves_out_the_speed_search() -> None:
    from bench.figures import calibration_seconds

    assert calibration_seconds({"seconds": 12.5, "search_s": 10.0}) == 2.5
    assert calibration_seconds({"seconds": 3.0}) == 3.0  # other methods and the peers time nothing
    assert calibration_seconds({"status": "failed"}) is None
