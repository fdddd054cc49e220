"""Acceptance rules: is a candidate really better than the best so far?

Pure functions of the measured values. `greedy` keeps any strict improvement (the autoresearch
rule). `noise-aware` compares the mean gain over the candidate's runs with a band of `z`
standard errors of the baseline's run-to-run noise: a gain above the band is kept, a gain
inside it earns another run (up to `max_runs`), and it is kept only if it clears the band.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ratchet.config import DecisionConfig
from ratchet.records import DISCARD, KEEP

RERUN = "rerun"  # not a status: the decision to measure a candidate once more


@dataclass(frozen=True)
class Decision:
    verdict: str
    rule: str
    best: float
    mean: float
    gain: float  # positive means better, whatever the goal
    band: float
    sigma: float
    runs: int
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def noise_sigma(values: Sequence[float]) -> float:
    """Run-to-run standard deviation of repeated measurements of the same code."""
    return statistics.stdev(values) if len(values) >= 2 else 0.0


def gain(value: float, best: float, minimize: bool) -> float:
    return best - value if minimize else value - best


def decide(values: Sequence[float], best: float, minimize: bool, rule: DecisionConfig,
           sigma: float) -> Decision:
    if not values:
        raise ValueError("a decision needs at least one measured value")
    mean = statistics.fmean(values)
    mean_gain = gain(mean, best, minimize)
    runs = len(values)
    if rule.rule == "greedy":
        band = 0.0
        verdict = KEEP if mean_gain > 0 else DISCARD
        reason = "strictly better than the best" if verdict == KEEP else "not better than the best"
    else:
        band = rule.z * sigma / math.sqrt(runs)
        verdict, reason = _noise_aware_verdict(mean_gain, band, runs, rule.max_runs)
    return Decision(verdict=verdict, rule=rule.rule, best=best, mean=mean, gain=mean_gain,
                    band=band, sigma=sigma, runs=runs, reason=reason)


def _noise_aware_verdict(mean_gain: float, band: float, runs: int,
                         max_runs: int) -> tuple[str, str]:
    if mean_gain > band:
        return KEEP, f"gain {mean_gain:.6g} clears the noise band {band:.6g} over {runs} run(s)"
    if mean_gain <= 0:
        return DISCARD, f"not better than the best over {runs} run(s)"
    if runs < max_runs:
        return RERUN, f"gain {mean_gain:.6g} is within the noise band {band:.6g}: re-running"
    return DISCARD, f"gain {mean_gain:.6g} stayed within the noise band {band:.6g} " \
                    f"after {runs} runs"
