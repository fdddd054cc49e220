"""The keep rule as a pure function, on synthetic sequences of measured values."""

import random
import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from ratchet.config import DecisionConfig
from ratchet.decide import (
    DISCARD,
    FUTILITY_T,
    KEEP,
    REMEASURE,
    RERUN,
    BaselineVerdict,
    Noise,
    baseline_verdict,
    decide,
    explain,
    pooled_noise,
)

NOISE_AWARE = DecisionConfig(rule="noise-aware", baseline_runs=3, max_runs=6, alpha=0.05)
NOISE_AWARE_8 = DecisionConfig(rule="noise-aware", baseline_runs=4, max_runs=8, alpha=0.05)
GREEDY = DecisionConfig(rule="greedy", baseline_runs=1)
WELL_MEASURED = Noise(sigma=0.01, df=60)


def runs(mean: float, n: int = 6, spread: float = 0.01) -> list[float]:
    """`n` runs with this mean, spread as real noisy runs are (not one value repeated)."""
    return [mean + spread * (1 if i % 2 else -1) for i in range(n - n % 2)] + [mean] * (n % 2)


def test_greedy_keeps_any_strict_improvement_over_the_best_mean() -> None:
    assert decide([0.99], [1.0], True, GREEDY, Noise(5.0, 2)).verdict == KEEP
    assert decide([1.0], [1.0], True, GREEDY, Noise()).verdict == DISCARD
    assert decide([1.01], [1.0], False, GREEDY, Noise()).verdict == KEEP
    assert decide([0.995], [0.98, 1.02], True, GREEDY, Noise()).verdict == KEEP  # mean 1.0


def test_noise_is_pooled_over_code_states_with_its_degrees_of_freedom() -> None:
    noise = pooled_noise([[1.0, 3.0], [2.0, 4.0, 6.0], [7.0]])
    assert noise.df == 3  # 1 + 2; a single run says nothing about noise
    assert noise.sigma == pytest.approx((10 / 3) ** 0.5)
    assert pooled_noise([[1.0], [2.0]]) == Noise()


def test_one_lucky_run_is_never_enough() -> None:
    d = decide([0.9], [1.0, 1.0, 1.0], True, NOISE_AWARE, WELL_MEASURED)
    assert d.verdict == RERUN and "confirming" in d.reason  # a gain of 10 σ, still confirmed


def test_a_loss_or_a_futile_gain_is_discarded_at_once() -> None:
    assert decide([1.02], [1.0, 1.0], True, NOISE_AWARE, WELL_MEASURED).verdict == DISCARD
    tiny = decide([0.999], [1.0, 1.0, 1.0], True, NOISE_AWARE, WELL_MEASURED)
    assert tiny.verdict == DISCARD and "not worth confirming" in tiny.reason
    assert FUTILITY_T >= (1.0 - 0.999) / (0.01 * (1 + 1 / 3) ** 0.5)


def test_the_best_is_measured_again_when_it_has_fewer_runs_than_the_challenger() -> None:
    six = [0.97, 0.975, 0.98, 0.972, 0.978, 0.974]
    d = decide(six, [1.0, 1.0, 1.0], True, NOISE_AWARE, WELL_MEASURED)
    assert d.verdict == REMEASURE and d.best_runs == 3
    final = decide(six, [1.0, 1.0, 1.0], True, NOISE_AWARE, WELL_MEASURED, can_remeasure=False)
    assert final.verdict == KEEP and final.test == "one-sided Student's t, pooled σ"


def test_the_test_records_its_statistic_and_p_value() -> None:
    candidate, best = runs(0.99), runs(1.0)
    d = decide(candidate, best, True, NOISE_AWARE, Noise(0.01, 10))
    t = 0.01 / (0.01 * (2 / 6) ** 0.5)
    assert d.statistic == pytest.approx(t)
    assert d.p_value == pytest.approx(stats.t.sf(t, 10))
    assert d.verdict == (KEEP if d.p_value < 0.05 else DISCARD)
    weak = decide(runs(0.996), best, True, NOISE_AWARE, Noise(0.01, 4))
    assert weak.verdict == DISCARD and weak.p_value >= 0.05 and "within the noise" in weak.reason


def test_the_uncertainty_of_sigma_is_priced_in() -> None:
    """The same gain and σ: kept with σ known from many runs, not from two."""
    candidate, best = runs(0.989), runs(1.0)  # 1.9 standard errors
    assert decide(candidate, best, True, NOISE_AWARE, Noise(0.01, 200)).verdict == KEEP
    assert decide(candidate, best, True, NOISE_AWARE, Noise(0.01, 1)).verdict == DISCARD


def test_a_lucky_fixed_seed_confirmed_by_itself_is_not_a_discovery() -> None:
    """Code that fixes its seed repeats one draw: eight identical runs confirm nothing, and
    they must not talk the study's noise down either. In a study that shows noise, runs that
    do not vary with their seeds are never kept, however far ahead they are."""
    rng = random.Random(3)
    others = [[rng.gauss(0.0, 1.0) for _ in range(4)] for _ in range(7)]
    baseline = [rng.gauss(0.0, 1.0) for _ in range(8)]
    lucky_seed = [statistics.fmean(baseline) - 1.3] * 8  # a 1.3σ lucky draw, repeated
    with_it = pooled_noise([*others, baseline, lucky_seed])
    assert with_it == pooled_noise([*others, baseline])  # left out of the noise
    d = decide(lucky_seed, baseline, True, NOISE_AWARE, with_it)
    assert d.verdict == DISCARD and "did not vary with their seeds" in d.reason
    assert d.p_value is not None and d.runs == d.best_runs == 8  # judged where a keep would be
    naive = Noise(with_it.sigma, with_it.df)  # what counting its runs as eight would give:
    t_naive = d.gain / (naive.sigma * (2 / 8) ** 0.5)
    assert stats.t.sf(t_naive, naive.df) < 0.05  # ... a keep
    far = [statistics.fmean(baseline) - 6.0] * 8  # six σ ahead, still one draw
    assert decide(far, baseline, True, NOISE_AWARE, with_it).verdict == DISCARD


def test_a_deterministic_task_has_no_noise_and_keeps_any_gain() -> None:
    noise = pooled_noise([[1.0, 1.0, 1.0], [0.9, 0.9]])
    assert noise.sigma == 0.0 and noise.df == 3
    assert decide([0.9, 0.9], [1.0, 1.0, 1.0], True, NOISE_AWARE, noise).verdict == KEEP


def test_without_any_measured_noise_a_gain_is_kept_at_once() -> None:
    d = decide([0.9999], [1.0, 1.0], True, NOISE_AWARE, Noise(0.0, 2))
    assert d.verdict == KEEP and "no noise" in d.reason


def _judge_sequentially(true_gain: float, rng: random.Random, rule: DecisionConfig,
                        noise: Noise) -> tuple[str, int]:
    """The engine's policy on one candidate against a best measured 3 times: (verdict, runs)."""
    best = [rng.gauss(0.0, 1.0) for _ in range(3)]
    values = [rng.gauss(-true_gain, 1.0)]
    while True:
        d = decide(values, best, True, rule, noise)
        if d.verdict == RERUN:
            values.append(rng.gauss(-true_gain, 1.0))
        elif d.verdict == REMEASURE:
            best.append(rng.gauss(0.0, 1.0))
        else:
            return d.verdict, len(values)


def test_under_pure_noise_false_keeps_stay_below_alpha() -> None:
    rng, known = random.Random(0), Noise(1.0, 100)
    verdicts = [_judge_sequentially(0.0, rng, NOISE_AWARE, known)[0] for _ in range(3000)]
    assert verdicts.count(KEEP) / len(verdicts) <= NOISE_AWARE.alpha


def test_a_gain_of_three_sigma_is_found() -> None:
    rng, known = random.Random(1), Noise(1.0, 100)
    verdicts = [_judge_sequentially(3.0, rng, NOISE_AWARE, known)[0] for _ in range(500)]
    assert verdicts.count(KEEP) / len(verdicts) >= 0.95


def test_explain_says_it_in_plain_words() -> None:
    d = decide(runs(0.98), runs(1.0), True, NOISE_AWARE, Noise(0.01, 10)).to_dict()
    text = explain(d, "loss")
    assert text.startswith("keep: loss 0.98 over 6 run(s) against the best's 1 over 6 run(s), "
                           "a gain of 0.02 = 3.46 standard errors of 0.005774 (noise σ 0.01 "
                           "pooled over 10 degrees of freedom); one-sided Student's t")
    assert text.endswith(f"p = {d['p_value']:.3g} < alpha 0.05")
    assert explain({"reason": "baseline measured 3 time(s)"}, "loss") == \
        "baseline measured 3 time(s)"


@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=7),
       st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=7), st.booleans(),
       st.floats(0, 10), st.integers(0, 50))
def test_never_keeps_a_candidate_that_is_not_better_on_average(
        values: list[float], best: list[float], minimize: bool, sigma: float, df: int) -> None:
    noise = Noise(sigma, df) if df else Noise()
    d = decide(values, best, minimize, NOISE_AWARE, noise)
    better = (statistics.fmean(best) - statistics.fmean(values)) * (1 if minimize else -1)
    if d.verdict == KEEP:
        assert better > 0
        assert len(values) >= NOISE_AWARE.max_runs or noise.sigma == 0 or noise.df == 0
    if d.verdict == RERUN:
        assert len(values) < NOISE_AWARE.max_runs


def test_runs_within_a_tenth_of_sigma_repeat_one_draw_and_steadier_ones_count() -> None:
    """A lucky value with a jitter of a twentieth of σ is one draw: never kept, and it does
    not talk the noise down. Runs steadier than σ but not near-identical (noise that shrinks
    near the optimum, as on examples/quadratic) are a real improvement's, judged on the test."""
    rng = random.Random(5)
    noise = Noise(sigma=1.0, df=60)
    best = [rng.gauss(0.0, 1.0) for _ in range(8)]
    jittered = [-2.5 + 0.05 * rng.gauss(0.0, 1.0) for _ in range(8)]
    d = decide(jittered, best, True, NOISE_AWARE_8, noise)
    assert d.verdict == DISCARD and "did not vary with their seeds" in d.reason
    groups = [[rng.gauss(0.0, 1.0) for _ in range(4)] for _ in range(10)]
    assert pooled_noise([*groups, jittered]) == pooled_noise(groups)
    steadier = [-2.5 + 0.3 * x for x in (1.1, -0.9, 0.8, -1.2, 0.3, -0.2, 1.4, -1.3)]
    assert decide(steadier, best, True, NOISE_AWARE_8, noise).verdict == KEEP


def test_the_repeat_check_waits_for_the_runs_a_keep_is_decided_on() -> None:
    """Two honest runs fall within a tenth of σ of each other one time in nine: checked then,
    a real gain would be lost that often; it is checked where a keep would be decided."""
    noise = Noise(sigma=1.0, df=60)
    d = decide([-3.0, -3.01], [0.1, -0.1, 0.0], True, NOISE_AWARE_8, noise)
    assert d.verdict == RERUN


def test_a_baseline_repeating_one_value_stops_unless_declared_deterministic() -> None:
    """Whatever seeds were found, or varied to no effect: a seed ratchet cannot see (the
    command line, a config file) hides the noise as well, so only the task's word counts."""
    same, varied = [0.5, 0.5, 0.5], ["task.py:3 SEED = 1"]
    fixed = ["train.py:106 torch.manual_seed(1337 + seed_offset)"]
    assert baseline_verdict([0.5, 0.6], False, [], fixed) == BaselineVerdict(keep=True)
    assert baseline_verdict(same, True, [], fixed) == BaselineVerdict(keep=True)
    assert baseline_verdict(same, True, [], []) == BaselineVerdict(keep=True)
    stopped = baseline_verdict(same, False, [], fixed + ["b.py:1 SEED = 2"], "train.py")
    assert not stopped.keep and stopped.message == (
        "the baseline's 3 runs all gave 0.5, and train.py:106 torch.manual_seed(1337 + "
        "seed_offset) (and 1 more) fixes the seed: the noise across seeds is invisible, so a "
        "gain could not be told from a lucky seed; fix: [seeds] files = [\"train.py\"] "
        "(ratchet varies it per run), read RATCHET_SEED in the code where it sets its seed, or "
        "declare [decision] deterministic = true when the result has no randomness")
    in_protected = baseline_verdict(same, False, [], fixed, None)
    assert not in_protected.keep and "[seeds]" not in in_protected.message
    unmoved = baseline_verdict(same, False, varied, fixed, "task.py")
    assert not unmoved.keep and "although each had its own seed at task.py:3 SEED = 1" in \
        unmoved.message and "the command line, a config file" in unmoved.message
    assert "[seeds]" not in unmoved.message and "deterministic = true" in unmoved.message
    plain = baseline_verdict(same, False, [], [])
    assert not plain.keep and "no seed ratchet can vary was found" in plain.message
    assert "--seed 1337" in plain.message and "deterministic = true" in plain.message
    assert all(len(v.message.splitlines()) == 1 for v in (stopped, unmoved, plain))
