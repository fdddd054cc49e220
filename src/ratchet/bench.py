"""`ratchet bench`: every method × seed as its own resumable study, under the same budget.

Methods are proposer names, agents with their model (`agent:openai:gpt-5`). With a dollar
budget each study runs until its compute + tokens reach it, so a method whose steps cost less
gets more of them. Studies are named `<bench>-<method>-s<seed>`, so running the bench again
continues each where it stopped.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ratchet.engine import Progress, Reporter
from ratchet.errors import UsageError
from ratchet.proposers import EXTERNAL, IMPORTED, PROPOSERS
from ratchet.records import AGENT_NAMES, CLI_AGENT_NAMES, SAMPLER_NAMES, StudyRecord
from ratchet.store.database import Store
from ratchet.study import Study, open_study


@dataclass(frozen=True)
class Method:
    proposer: str
    model: str | None = None

    @property
    def label(self) -> str:
        return f"{self.proposer}:{self.model}" if self.model else self.proposer

    @property
    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9_.-]+", "-", self.label).strip("-")


def parse_methods(text: str) -> list[Method]:
    methods = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        proposer, _, model = item.partition(":")
        if proposer not in PROPOSERS or proposer in (EXTERNAL, IMPORTED):
            raise UsageError(f"--methods: unknown method {proposer!r} (use "
                             f"{', '.join(SAMPLER_NAMES)}, agent:MODEL, hybrid:MODEL, "
                             f"{', '.join(CLI_AGENT_NAMES)})")
        if proposer in AGENT_NAMES and not model:
            raise UsageError(f"--methods: {proposer} needs a model, e.g. {proposer}:openai:gpt-5")
        methods.append(Method(proposer, model or None))
    if not methods:
        raise UsageError("--methods: no method given")
    if len({m.slug for m in methods}) != len(methods):
        raise UsageError("--methods: a method is listed twice")
    return methods


@dataclass(frozen=True)
class BenchPlan:
    name: str
    methods: list[Method]
    seeds: list[int]
    max_usd: float | None = None
    max_experiments: int | None = None
    base_url: str | None = None
    parallel: int = 1

    def study_name(self, method: Method, seed: int) -> str:
        return f"{self.name}-{method.slug}-s{seed}"


def run_bench(repo: str | Path, plan: BenchPlan, storage: str | None = None,
              reporter: Callable[[str], Reporter | None] = lambda _: None,
              announce: Callable[[str], None] = lambda _: None) -> list[Study]:
    """Run (or continue) every study of the plan, seed by seed so a partial bench is balanced."""
    if plan.max_usd is None and plan.max_experiments is None:
        raise UsageError("ratchet bench needs a budget: --budget-usd X or --budget-experiments N")
    studies = []
    for seed in plan.seeds:
        for method in plan.methods:
            study = open_study(repo, plan.study_name(method, seed), storage=storage,
                               proposer=method.proposer, seed=seed, settings={
                                   "model": method.model, "base_url": plan.base_url,
                                   "bench": plan.name, "method": method.label})
            if plan.max_usd is not None and study.config.compute_usd_per_hour <= 0 \
                    and method.proposer in SAMPLER_NAMES:
                raise UsageError("--budget-usd needs [cost].compute_usd_per_hour > 0 in "
                                 "ratchet.toml, or classical studies would never spend it")
            announce(f"{study.name}: {method.label}, seed {seed}")
            progress: Progress = study.run(max_experiments=plan.max_experiments,
                                           max_usd=plan.max_usd, parallel=plan.parallel,
                                           reporter=reporter(study.name))
            announce(f"{study.name}: {progress.stop_reason}")
            studies.append(study)
    return studies


def bench_studies(store: Store, bench: str) -> list[StudyRecord]:
    """The studies of a bench, in creation order."""
    return [s for s in store.studies() if s.settings.get("bench") == bench]
