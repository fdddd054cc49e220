"""The numbers behind `ratchet report`, computed from the store: a pure core, no plotting.

Per study: best-so-far after each experiment (the value of the latest kept one, in experiment
order), cumulative dollars split into compute and tokens, kept changes IN and OUTSIDE the
classical space with their share of the improvement, failure rates, and each kept solution's
search and holdout metric. Per method: those curves' mean and spread across seeds.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ratchet.generalize import horizon_stats, trend
from ratchet.records import (
    BASELINE,
    CRASH,
    KEEP,
    PRUNED,
    TIMEOUT,
    VOID,
    Experiment,
    GeneralizationRun,
    StudyRecord,
)
from ratchet.reports.summary import method_of
from ratchet.store.database import Store

DOLLAR_POINTS = 40


@dataclass
class StudySummary:
    name: str
    method: str
    seed: int | None
    reference: bool
    baseline: float | None
    final_best: float | None
    experiments: int
    kept: int
    kept_in: int
    kept_outside: int
    gain_in_share: float | None
    gain_outside_share: float | None
    outside_share_curve: list[float | None]
    crash_rate: float
    timeout_rate: float
    void_rate: float
    pruned_rate: float  # stopped mid-run by [pruning]
    unpromoted_rate: float  # stopped after a short run by [fidelity]
    saved_s: float  # compute the stopped runs did not spend
    compute_usd: float
    tokens_usd: float
    best_curve: list[float | None]  # after experiment 0, 1, 2, ...
    dollars: list[float]  # cumulative, after each experiment
    holdout: list[dict[str, Any]] = field(default_factory=list)
    # Its kept experiments in order (baseline first): number, value, scope, description
    kept_chain: list[dict[str, Any]] = field(default_factory=list)


def summarize(record: StudyRecord, experiments: Sequence[Experiment], minimize: bool,
              reference: bool = False) -> StudySummary:
    best: float | None = None
    curve, dollars, outside_curve = [], [], []
    spent = gain_in = gain_out = 0.0
    kept_in = kept_out = 0
    for e in experiments:
        spent += e.cost_usd
        if e.status == KEEP and e.value is not None:
            if best is not None and e.kind != BASELINE:
                gain = (best - e.value) if minimize else (e.value - best)
                if e.scope == "in":
                    kept_in, gain_in = kept_in + 1, gain_in + gain
                else:
                    kept_out, gain_out = kept_out + 1, gain_out + gain
            best = e.value
        curve.append(best)
        dollars.append(spent)
        total = gain_in + gain_out
        outside_curve.append(gain_out / total if total else None)
    proposals = [e for e in experiments if e.kind != BASELINE]
    total_gain = gain_in + gain_out
    baseline = next((e.value for e in experiments if e.kind == BASELINE
                     and e.status == KEEP), None)
    return StudySummary(
        name=record.name, method=method_of(record), seed=record.seed, reference=reference,
        baseline=baseline, final_best=best, experiments=len(experiments),
        kept=sum(e.status == KEEP for e in proposals), kept_in=kept_in, kept_outside=kept_out,
        gain_in_share=gain_in / total_gain if total_gain else None,
        gain_outside_share=gain_out / total_gain if total_gain else None,
        outside_share_curve=outside_curve,
        crash_rate=_rate(proposals, CRASH), timeout_rate=_rate(proposals, TIMEOUT),
        void_rate=_rate(proposals, VOID),
        pruned_rate=_share(proposals, lambda e: e.status == PRUNED and not e.not_promoted),
        unpromoted_rate=_share(proposals, lambda e: e.not_promoted),
        saved_s=sum(e.saved_s for e in experiments),
        compute_usd=sum(e.cost_usd - e.llm_usd for e in experiments),
        tokens_usd=sum(e.llm_usd for e in experiments),
        best_curve=curve, dollars=dollars,
        holdout=[{"number": e.number, "value": e.value, "holdout": e.holdout}
                 for e in experiments if e.status == KEEP and e.holdout is not None],
        kept_chain=[{"number": e.number, "value": e.value, "scope": e.scope,
                     "description": e.description}
                    for e in experiments if e.status == KEEP and e.value is not None])


def _rate(experiments: Sequence[Experiment], status: str) -> float:
    return _share(experiments, lambda e: e.status == status)


def _share(experiments: Sequence[Experiment], which: Callable[[Experiment], bool]) -> float:
    return sum(which(e) for e in experiments) / len(experiments) if experiments else 0.0


def mean_curve(curves: Sequence[Sequence[float | None]]) -> dict[str, list[float | None]]:
    """Mean and spread across seeds at each index; a shorter study carries its final value."""
    length = max((len(c) for c in curves), default=0)
    means, stds = [], []
    for i in range(length):
        values = [c[min(i, len(c) - 1)] for c in curves if c]
        values = [v for v in values if v is not None]
        means.append(statistics.fmean(values) if values else None)
        stds.append(statistics.stdev(values) if len(values) > 1 else 0.0 if values else None)
    return {"x": list(range(length)), "mean": means, "std": stds}


def dollar_curve(summaries: Sequence[StudySummary]) -> dict[str, list[float | None]]:
    """Best-so-far against dollars spent, on a common grid, mean and spread across seeds."""
    top = max((s.dollars[-1] for s in summaries if s.dollars), default=0.0)
    grid = [top * i / (DOLLAR_POINTS - 1) for i in range(DOLLAR_POINTS)] if top else [0.0]
    curves = []
    for s in summaries:
        curve: list[float | None] = []
        for d in grid:
            done = [i for i, spent in enumerate(s.dollars) if spent <= d + 1e-12]
            curve.append(s.best_curve[done[-1]] if done else None)
        curves.append(curve)
    stats = mean_curve(curves)
    return {"x": grid, "mean": stats["mean"], "std": stats["std"]}


def report_data(store: Store, studies: Sequence[StudyRecord], references: Sequence[StudyRecord],
                metric: str, goal: str, bench: str | None = None) -> dict[str, Any]:
    """The report's numbers: of a bench's studies (its name given: methods across seeds), or
    of studies each on its own (the latest study, say), with reference studies beside."""
    minimize = goal == "minimize"
    summaries = [summarize(r, store.experiments(r.id or 0), minimize) for r in studies]
    refs = [summarize(r, store.experiments(r.id or 0),
                      r.settings.get("goal", goal) == "minimize", reference=True)
            for r in references]
    methods: dict[str, list[StudySummary]] = {}
    runs: dict[str, dict[str, list[GeneralizationRun]]] = {}
    for record, s in zip(studies, summaries, strict=True):
        methods.setdefault(s.method, []).append(s)
        runs.setdefault(s.method, {})[s.name] = store.generalization(record.id or 0)
    table, comparisons = horizon_stats(runs)
    pairs = sorted({(c.a, c.b) for c in comparisons})
    return {
        "metric": metric, "goal": goal, "bench": bench,
        "methods": {m: _method(group) for m, group in methods.items()},
        "studies": [asdict(s) for s in summaries],
        "references": [asdict(s) for s in refs],
        "generalization": {
            "table": [asdict(t) for t in table],
            "comparisons": [asdict(c) for c in comparisons],
            "trends": {f"{a} vs {b}": trend(comparisons, a, b) for a, b in pairs},
        },
    }


def _method(group: Sequence[StudySummary]) -> dict[str, Any]:
    finals = [s.final_best for s in group if s.final_best is not None]
    return {
        "seeds": len(group),
        "final_best_mean": statistics.fmean(finals) if finals else None,
        "final_best_std": statistics.stdev(finals) if len(finals) > 1 else 0.0,
        "experiments_mean": statistics.fmean(s.experiments for s in group),
        "compute_usd_mean": statistics.fmean(s.compute_usd for s in group),
        "tokens_usd_mean": statistics.fmean(s.tokens_usd for s in group),
        "crash_rate": statistics.fmean(s.crash_rate for s in group),
        "timeout_rate": statistics.fmean(s.timeout_rate for s in group),
        "void_rate": statistics.fmean(s.void_rate for s in group),
        "pruned_rate": statistics.fmean(s.pruned_rate for s in group),
        "unpromoted_rate": statistics.fmean(s.unpromoted_rate for s in group),
        "saved_s_mean": statistics.fmean(s.saved_s for s in group),
        "best_by_experiment": mean_curve([s.best_curve for s in group]),
        "best_by_dollar": dollar_curve(group),
        "outside_share": mean_curve([s.outside_share_curve for s in group]),
    }
