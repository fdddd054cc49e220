"""Acceptance rules: is a candidate really better than the best so far?

Pure functions of the measured values. `greedy` keeps any strict improvement of one run over
the best's mean (the autoresearch rule). `noise-aware` is a one-sided Student's t-test with a
false-accept rate `alpha` the user sets:

- the noise σ is pooled from every code state the study has measured more than once (the
  baseline's repeats, every re-run of a candidate or of the incumbent), with its degrees of
  freedom, so it grows more reliable as the study goes on and its uncertainty is priced in;
- a candidate whose mean is not better than the best's is discarded at once, at any run, and
  so is one better by less than `FUTILITY_T` standard errors before its last run;
- a candidate that looks better earns re-runs up to `max_runs` (confirmation): it is judged
  only on all of them, so one lucky run is never enough;
- the best is the mean of its runs, and it is measured again when it has fewer runs than the
  challenger, so a lucky first measurement of the best does not stand for long;
- the test: t = gain / (σ √(1/n_candidate + 1/n_best)), kept when p < alpha;
- runs that repeat one draw while the study shows noise (code that fixed its own seed, perhaps
  with a jitter on top) prove nothing: such a candidate is discarded, and such a group does not
  talk the pooled noise down;
- a baseline whose repeated runs all give one value is judged by `baseline_verdict`: noise-free
  only when the task says `[decision] deterministic = true`; otherwise the study stops, since
  the noise across seeds is then invisible (a seed found or not, varied by ratchet or set where
  it cannot reach) and a lucky seed would pass for a gain.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ratchet.config import DecisionConfig
from ratchet.records import DISCARD, KEEP

RERUN = "rerun"  # not a status: measure the candidate once more
# Before its last run, a candidate whose gain is under this many standard errors is dropped:
# it would rarely pass, and re-running it is what costs. Chosen with benchmarks/noise.py.
FUTILITY_T = 0.5
# Runs spread below this share of σ repeat one draw (a fixed seed, perhaps with a jitter).
# Not a test of "steadier than σ allows": noise that shrinks near the optimum makes real
# improvements steadier, and such a test discarded 3 of 5 of them on examples/quadratic.
REPEAT_FRACTION = 0.1
REMEASURE = "remeasure"  # not a status: measure the best once more, then judge again


@dataclass(frozen=True)
class Noise:
    """Run-to-run noise pooled over code states: σ and its degrees of freedom."""

    sigma: float = 0.0
    df: int = 0


@dataclass(frozen=True)
class Decision:
    verdict: str
    rule: str
    best: float  # the best's mean
    best_runs: int
    mean: float
    runs: int
    gain: float  # positive means better, whatever the goal
    sigma: float
    df: int
    reason: str
    test: str | None = None
    statistic: float | None = None
    p_value: float | None = None
    alpha: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def pooled_noise(samples: Iterable[Sequence[float]]) -> Noise:
    """σ pooled over groups of repeated measurements, each group one code state.

    A group whose runs (all but) repeat one value, in a study that shows noise elsewhere, is
    code that fixed its own randomness (a seed): its runs are one draw, not several, and must
    not talk the noise down. Such groups are left out."""
    groups = [list(values) for values in samples if len(values) >= 2]
    noise = _pool(groups)
    repeating = [g for g in groups if _repeats_one_draw(g, noise)]
    return _pool([g for g in groups if g not in repeating]) if repeating else noise


def _pool(groups: Sequence[Sequence[float]]) -> Noise:
    squares, df = 0.0, 0
    for values in groups:
        mean = statistics.fmean(values)
        squares += sum((v - mean) ** 2 for v in values)
        df += len(values) - 1
    return Noise(math.sqrt(squares / df), df) if df else Noise()


def _repeats_one_draw(values: Sequence[float], noise: Noise) -> bool:
    """Runs that spread less than a tenth of the study's noise repeat one draw: they did not
    vary as independent runs do, whatever seeds they were given."""
    if len(values) < 2 or noise.sigma <= 0:
        return False
    return statistics.pstdev(values) < REPEAT_FRACTION * noise.sigma


def effective_runs(values: Sequence[float], noise: Noise) -> int:
    """How many independent draws `values` are: one, when they repeat one draw."""
    return 1 if _repeats_one_draw(values, noise) else len(values)


@dataclass(frozen=True)
class BaselineVerdict:
    """Whether a baseline whose runs all gave one value may be kept as noise-free, and what
    to tell the user about it (None: nothing to tell)."""

    keep: bool
    message: str | None = None


def baseline_verdict(values: Sequence[float], deterministic: bool, varied: Sequence[str],
                     fixed: Sequence[str], fix: str | None = None) -> BaselineVerdict:
    """The baseline's runs as evidence of noise. Runs that differ, or a task that declares
    itself deterministic, need nothing said. Runs that all repeat one value stop the study
    whatever seeds were found: a seed ratchet cannot see (`--seed 1337`, `seed: 1337` in a
    config, `def main(seed=1337)`) hides the noise across seeds as well as one it found, and a
    lucky seed would then pass for a gain; only `[decision] deterministic = true` says there is
    no randomness. `varied`: the sites ratchet rewrote per run; `fixed`: the sites found (the
    first named); `fix`: the `[seeds] files` entry that would vary the first."""
    if deterministic or len(values) < 2 or len(set(values)) > 1:
        return BaselineVerdict(keep=True)
    said = f"the baseline's {len(values)} runs all gave {values[0]:.6g}"
    return BaselineVerdict(keep=False, message=(
        f"{said}{_unseen_seed(varied, fixed)}: the noise across seeds is invisible, so a gain "
        f"could not be told from a lucky seed; fix: {_seed_fixes(varied, fix)}"))


def _unseen_seed(varied: Sequence[str], fixed: Sequence[str]) -> str:
    """Why the runs repeat one draw, as far as the seeds found tell."""
    if varied:
        return (f" although each had its own seed at {_sites(varied)}: the seed the value "
                "depends on is set where ratchet does not vary it (the command line, a config "
                "file, another module)")
    if fixed:
        return f", and {_sites(fixed)} fixes the seed"
    return (" and no seed ratchet can vary was found (seeds usually hide on the command line, "
            "`--seed 1337`, or in a config file, `seed: 1337`)")


def _seed_fixes(varied: Sequence[str], fix: str | None) -> str:
    seeds_fix = f'[seeds] files = ["{fix}"] (ratchet varies it per run), ' \
        if fix and not varied else ""
    return (f"{seeds_fix}read RATCHET_SEED in the code where it sets its seed, or declare "
            "[decision] deterministic = true when the result has no randomness")


def _sites(sites: Sequence[str]) -> str:
    more = len(sites) - 1
    return sites[0] + (f" (and {more} more)" if more > 0 else "")


def gain(value: float, best: float, minimize: bool) -> float:
    return best - value if minimize else value - best


def decide(values: Sequence[float], best_values: Sequence[float], minimize: bool,
           rule: DecisionConfig, noise: Noise, can_remeasure: bool = True) -> Decision:
    """The verdict on a candidate measured `values`, against the best measured `best_values`."""
    if not values or not best_values:
        raise ValueError("a decision needs at least one value of the candidate and of the best")
    best, mean = statistics.fmean(best_values), statistics.fmean(values)
    facts = {"rule": rule.rule, "best": best, "best_runs": len(best_values), "mean": mean,
             "runs": len(values), "gain": gain(mean, best, minimize), "sigma": noise.sigma,
             "df": noise.df}
    if rule.rule == "greedy":
        better = facts["gain"] > 0
        return Decision(verdict=KEEP if better else DISCARD, **facts,
                        reason="better than the best" if better else "not better than the best")
    return _noise_aware(facts, values, best_values, rule, noise, can_remeasure)


def _noise_aware(facts: dict[str, Any], values: Sequence[float], best_values: Sequence[float],
                 rule: DecisionConfig, noise: Noise, can_remeasure: bool) -> Decision:
    runs, best_runs = len(values), len(best_values)
    if facts["gain"] <= 0:
        return Decision(verdict=DISCARD, **facts,
                        reason=f"not better than the best's mean over {runs} run(s)")
    t = _t_statistic(facts["gain"], effective_runs(values, noise),
                     effective_runs(best_values, noise), noise)
    if t is None:  # repeated runs showed no noise at all: the gain is real
        return Decision(verdict=KEEP, **facts,
                        reason="better than the best, and repeated runs show no noise")
    if runs < rule.max_runs:
        if t <= FUTILITY_T:
            return Decision(verdict=DISCARD, **facts,
                            reason=f"gain of only {t:.2f} standard errors after {runs} run(s): "
                                   "not worth confirming")
        return Decision(verdict=RERUN, **facts,
                        reason=f"looks better after {runs} run(s): confirming with another run")
    if best_runs < runs and can_remeasure:
        return Decision(verdict=REMEASURE, **facts,
                        reason=f"the best has {best_runs} run(s), the candidate {runs}: "
                               "measuring the best again first")
    from scipy import stats  # imported here: the command line starts without scipy

    p = float(stats.t.sf(t, noise.df))
    test = {"test": "one-sided Student's t, pooled σ", "statistic": t, "p_value": p,
            "alpha": rule.alpha}
    if _repeats_one_draw(values, noise):  # on all its runs, where a keep is decided
        spread = statistics.pstdev(values)
        return Decision(verdict=DISCARD, **facts, **test,
                        reason=f"its {runs} runs repeat one draw (spread {spread:.3g} against "
                               f"the noise σ {noise.sigma:.3g}): they did not vary with their "
                               f"seeds, so they confirm nothing (as one draw, p = {p:.3g})")
    if p < rule.alpha:
        return Decision(verdict=KEEP, **facts, **test,
                        reason=f"gain holds over {runs} runs: p = {p:.3g} < alpha "
                               f"{rule.alpha:g}")
    return Decision(verdict=DISCARD, **facts, **test,
                    reason=f"gain within the noise over {runs} runs: p = {p:.3g} >= "
                           f"alpha {rule.alpha:g}")


def _t_statistic(gain: float, runs: int, best_runs: int, noise: Noise) -> float | None:
    """The gain in standard errors of the difference of two means; None without noise."""
    if noise.df == 0 or noise.sigma == 0.0:
        return None
    return gain / (noise.sigma * math.sqrt(1 / runs + 1 / best_runs))


def explain(decision: dict[str, Any], metric: str) -> str:
    """A stored decision in plain words, for `ratchet show`."""
    d = decision
    if "best_runs" not in d:  # a baseline, or a decision made by an older version
        return d.get("reason", "")
    words = (f"{d['verdict']}: {metric} {d['mean']:.6g} over {d['runs']} run(s) against the "
             f"best's {d['best']:.6g} over {d['best_runs']} run(s), a gain of {d['gain']:.4g}")
    if d.get("p_value") is None:
        return f"{words}; {d['reason']}"
    error = d["gain"] / d["statistic"] if d["statistic"] else float("nan")
    verdict = "<" if d["p_value"] < d["alpha"] else ">="
    return (f"{words} = {d['statistic']:.2f} standard errors of {error:.4g} (noise σ "
            f"{d['sigma']:.4g} pooled over {d['df']} degrees of freedom); {d['test']}: "
            f"p = {d['p_value']:.3g} {verdict} alpha {d['alpha']:g}")
