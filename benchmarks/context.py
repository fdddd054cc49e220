"""The agent's prompt as history grows: its size stays under the budget, and it builds fast.

A study on examples/tinygpt is given a synthetic history (kept, discarded, crashed and voided
experiments with descriptions, hypotheses, notes and ~1 KB diffs); at 10, 100, 1000 and 5000
experiments the full prompt of an episode (system, tool definitions, opening message) is built
from the store, as the agent gets it. Goals: never above the budget ([agent].context_tokens,
16k by default); under 1 s to build at 5000.

Tokens are ratchet's conservative estimate (UTF-8 bytes / 3); bytes / 4 is shown beside it as
what common tokenizers give for English and code.

    python benchmarks/context.py [--sizes 10,100,1000,5000] [--budget 16000]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _util import example_repo  # noqa: E402

from ratchet.agent.brief import TOOLS_TOKENS, ResearchBrief  # noqa: E402
from ratchet.agent.notebook import estimate_tokens  # noqa: E402
from ratchet.records import CRASH, DISCARD, KEEP, VOID, Experiment  # noqa: E402
from ratchet.study import open_study  # noqa: E402

IDEAS = ["raise the learning rate", "deeper model", "wider MLP", "swap AdamW for Muon",
         "longer warmup", "add dropout", "tie embeddings", "rotary base 50k", "smaller batch",
         "cosine schedule", "QK-norm off", "sliding window 128", "weight decay 0.2"]


def synthetic(study_id: int, number: int, rng: random.Random, best: float) -> Experiment:
    status = rng.choices([KEEP, DISCARD, CRASH, VOID], weights=[1, 14, 3, 1])[0]
    idea = f"{rng.choice(IDEAS)} (variant {number})"
    diff = "".join(f"-OLD_LINE_{i} = {rng.random():.6f}\n+NEW_LINE_{i} = {rng.random():.6f}\n"
                   for i in range(20))
    value = None if status in (CRASH, VOID) else best + rng.uniform(-0.01, 0.05)
    return Experiment(
        study_id=study_id, number=number, kind="proposal", status=status, description=idea,
        diff=diff, value=value, delta=None if value is None else value - best,
        reason={CRASH: "exit code 1: CUDA out of memory", VOID: "protected file"}.get(status),
        rationale={"hypothesis": f"{idea} should lower val_bpb", "expected_effect": "-0.01",
                   "notes": [f"note {number}: {idea} looked promising"] if number % 7 == 0
                   else []})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10,100,1000,5000")
    parser.add_argument("--budget", type=int, default=16000)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    repo = example_repo("tinygpt", {"ratchet.toml": (
        "[decision]", f"[agent]\ncontext_tokens = {args.budget}\n\n[decision]")})
    study = open_study(repo, "context-bench", proposer="agent",
                       settings={"model": "openai:bench"})
    brief = ResearchBrief(study.context)
    code, _ = brief.code_at(study.record.base_commit)
    rng = random.Random(0)
    best = 1.99
    study.store.add_experiment(Experiment(study_id=study.id, number=0, kind="baseline",
                                          status=KEEP, value=best, description="baseline"))
    made = 1
    print(f"budget {args.budget} tokens; system {estimate_tokens(brief.system)}, tools "
          f"{TOOLS_TOKENS}; editable code {sum(len(t) for t in code.values())} bytes")
    print(f"{'experiments':>11} {'tokens (est.)':>13} {'bytes/4':>8} {'build s (median of 5)':>22}")
    for size in sizes:
        while made < size:
            experiment = synthetic(study.id, made, rng, best)
            if experiment.status == KEEP:
                best = experiment.value = best - rng.uniform(0.001, 0.01)
            study.store.add_experiment(experiment)
            made += 1
        times = []
        for _ in range(5):
            start = time.perf_counter()
            kept = study.store.experiments(study.id, statuses=[KEEP])
            opening = brief.opening(kept[-1], code)
            times.append(time.perf_counter() - start)
        prompt = brief.system + opening
        tokens = estimate_tokens(brief.system) + TOOLS_TOKENS + estimate_tokens(opening)
        over = "  OVER BUDGET" if tokens > args.budget else ""
        print(f"{size:>11} {tokens:>13} {len(prompt.encode()) // 4 + TOOLS_TOKENS * 3 // 4:>8} "
              f"{statistics.median(times):>22.3f}{over}")


if __name__ == "__main__":
    main()
