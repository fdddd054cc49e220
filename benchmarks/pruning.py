"""Early stopping: TPE with and without pruning on examples/tinygpt (CPU, a shortened budget),
the same seeds and the same number of proposals, in one run; then the pruning study again with
the dollars the unpruned one spent, to see what the saved compute buys. The keep rule is
noise-aware with 2 baseline runs and at most 3 runs of a candidate, to keep the run short.

Goal: >= 40 % less compute at a final best within the noise (the unpruned study's sigma) of
the unpruned study; at an equal dollar budget, a final best at least as good.

    python benchmarks/pruning.py [--budget 6] [--proposals 12] [--seeds 0] [--no-equal-dollars]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _util import commit_all, example_repo  # noqa: E402

from ratchet.study import open_study  # noqa: E402


@dataclass
class Outcome:
    experiments: int
    pruned: int
    compute_s: float
    usd: float
    best: float
    sigma: float | None


def study_of(seed: int, budget: float, pruner: str, startup: int, proposals: int,
             max_usd: float | None = None) -> Outcome:
    repo = example_repo("tinygpt")
    toml = repo / "ratchet.toml"
    text = toml.read_text()
    for old, new in (('pruner = "median"', f'pruner = "{pruner}"'),
                     ("startup_runs = 5", f"startup_runs = {startup}"),
                     ('budget = "60s"', f'budget = "{budget:g}s"'),
                     ("baseline_runs = 3", "baseline_runs = 2\nmax_runs = 3")):
        assert old in text, old
        text = text.replace(old, new)
    toml.write_text(text)
    commit_all(repo)
    study = open_study(repo, f"prune-{pruner}", proposer="tpe", seed=seed)
    if max_usd is None:
        study.run(max_experiments=proposals + 1)  # the baseline is experiment 0
    else:
        study.run(max_usd=max_usd)
    runs = study.experiments()
    best = study.best()
    assert best is not None and best.value is not None
    return Outcome(len(runs), sum(e.status == "pruned" for e in runs),
                   sum(e.wall_s for e in runs), sum(e.cost_usd for e in runs), best.value,
                   study.record.sigma)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--budget", type=float, default=6.0, help="seconds of training a run")
    parser.add_argument("--proposals", type=int, default=12)
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--startup", type=int, default=4, help="[pruning] startup_runs")
    parser.add_argument("--no-equal-dollars", action="store_true")
    args = parser.parse_args()
    print(f"tinygpt on CPU, {args.budget:g} s of training a run, TPE, {args.proposals} "
          f"proposals, median pruner on train_loss (startup {args.startup}, warmup 30 %)")
    print(f"{'seed':>4} {'arm':>14} {'exps':>5} {'pruned':>6} {'compute s':>10} {'$':>8} "
          f"{'best val_bpb':>12} {'sigma':>8}")
    for seed in [int(s) for s in args.seeds.split(",")]:
        plain = study_of(seed, args.budget, "none", args.startup, args.proposals)
        pruned = study_of(seed, args.budget, "median", args.startup, args.proposals)
        arms = [("no pruning", plain), ("pruning", pruned)]
        if not args.no_equal_dollars:
            arms.append(("pruning, same $", study_of(seed, args.budget, "median", args.startup,
                                                     args.proposals, max_usd=plain.usd)))
        for name, o in arms:
            sigma = f"{o.sigma:.4f}" if o.sigma is not None else "-"
            print(f"{seed:>4} {name:>14} {o.experiments:>5} {o.pruned:>6} {o.compute_s:>10.1f} "
                  f"{o.usd:>8.4f} {o.best:>12.4f} {sigma:>8}")
        saved = 1 - pruned.compute_s / plain.compute_s
        within = plain.sigma is not None and abs(pruned.best - plain.best) <= 2 * plain.sigma
        print(f"seed {seed}: pruning spent {saved:.0%} less compute (goal >= 40 %); its best "
              f"is {pruned.best - plain.best:+.4f} from the unpruned best "
              f"({'within' if within else 'outside'} 2 sigma)", flush=True)


if __name__ == "__main__":
    main()
