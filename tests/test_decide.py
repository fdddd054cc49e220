import pytest
from hypothesis import given
from hypothesis import strategies as st

from ratchet.config import DecisionConfig
from ratchet.decide import DISCARD, KEEP, RERUN, decide, noise_sigma

NOISE_AWARE = DecisionConfig(rule="noise-aware", baseline_runs=3, max_runs=3, z=2.0)
GREEDY = DecisionConfig(rule="greedy", baseline_runs=1)


def test_greedy_keeps_any_strict_improvement() -> None:
    assert decide([0.99], 1.0, True, GREEDY, sigma=5.0).verdict == KEEP
    assert decide([1.0], 1.0, True, GREEDY, sigma=0.0).verdict == DISCARD
    assert decide([1.01], 1.0, False, GREEDY, sigma=0.0).verdict == KEEP


def test_noise_aware_keeps_a_gain_well_outside_the_noise() -> None:
    d = decide([0.9], 1.0, True, NOISE_AWARE, sigma=0.01)
    assert (d.verdict, d.band, d.runs) == (KEEP, pytest.approx(0.02), 1)
    assert d.gain == pytest.approx(0.1)


def test_noise_aware_reruns_a_gain_inside_the_noise_then_decides() -> None:
    assert decide([0.995], 1.0, True, NOISE_AWARE, sigma=0.01).verdict == RERUN
    # the gain held over three runs: the band shrinks with the square root of the runs
    held = decide([0.995, 0.982, 0.984], 1.0, True, NOISE_AWARE, sigma=0.01)
    assert held.verdict == KEEP and held.band == pytest.approx(0.02 / 3**0.5)
    # a seed-lottery win: the re-runs fall back to the best
    lottery = decide([0.995, 0.999, 1.0], 1.0, True, NOISE_AWARE, sigma=0.01)
    assert lottery.verdict == DISCARD and "after 3 runs" in lottery.reason


def test_noise_aware_discards_a_loss_at_once() -> None:
    assert decide([1.02], 1.0, True, NOISE_AWARE, sigma=0.01).verdict == DISCARD
    assert decide([0.5], 0.6, False, NOISE_AWARE, sigma=0.01).verdict == DISCARD


def test_without_noise_noise_aware_is_greedy() -> None:
    assert decide([0.9999], 1.0, True, NOISE_AWARE, sigma=0.0).verdict == KEEP


def test_decision_records_its_numbers() -> None:
    d = decide([0.9], 1.0, True, NOISE_AWARE, sigma=0.01).to_dict()
    assert set(d) >= {"verdict", "rule", "best", "mean", "gain", "band", "sigma", "runs", "reason"}
    assert d["rule"] == "noise-aware"


def test_sigma() -> None:
    assert noise_sigma([1.0]) == 0.0
    assert noise_sigma([1.0, 3.0]) == pytest.approx(2**0.5)


@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=3), st.floats(-1e6, 1e6),
       st.booleans(), st.floats(0, 10))
def test_never_keeps_a_candidate_that_is_not_better_on_average(
        values: list[float], best: float, minimize: bool, sigma: float) -> None:
    d = decide(values, best, minimize, NOISE_AWARE, sigma)
    if d.verdict == KEEP:
        assert d.gain > 0
    if d.verdict == RERUN:
        assert len(values) < NOISE_AWARE.max_runs
