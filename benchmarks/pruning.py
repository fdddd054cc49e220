"""Early stopping: TPE with and without it, the same seeds and the same number of proposals,
in one run; then with early stopping again at the dollars the full-run study spent, to see
what the saved compute buys.

- examples/tinygpt (CPU, a shortened budget): early stopping is the task file's own, a median
  pruner on the training-loss curve and [fidelity] horizons = [0.25] (a quarter-budget run
  first; the best third go on);
- examples/digits: [fidelity] horizons = [0.25] (a quarter of the epochs first); it reports no
  curve.

In both, screening stays on only while the baseline's short and full runs say it pays
([fidelity] only_if_cheaper, the default).

The keep rule is noise-aware with 2 baseline runs and at most 3 runs of a candidate, to keep
the run short. Goal: >= 40 % less compute at a final best within the noise (2 sigma of the
full-run study); at an equal dollar budget, a final best at least as good. Each arm also shows
the compute of candidates not kept: all that early stopping may save, as the baseline and the
noise decision's runs of a candidate that is kept always run in full.

    python benchmarks/pruning.py [--examples tinygpt,digits] [--budget 15] [--grace 20]
                                 [--horizons 0.25] [--reduction-factor 3]
                                 [--proposals 12] [--seeds 0] [--no-equal-dollars]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _util import commit_all, example_repo  # noqa: E402

from ratchet.study import open_study  # noqa: E402

GOAL = 0.40


@dataclass
class Outcome:
    experiments: int
    pruned: int
    not_promoted: int
    compute_s: float
    unkept_s: float  # of candidates not kept: all early stopping can save
    usd: float
    best: float
    sigma: float | None
    minimize: bool


def schedule(args: argparse.Namespace) -> str:
    """The early arm's horizons as a TOML array."""
    return "[" + ", ".join(f"{float(h):g}" for h in args.horizons.split(",")) + "]"


def task_file(example: str, text: str, early: bool, args: argparse.Namespace) -> str:
    """One arm's task file: early stopping on or off, and the shorter keep decision."""
    if example == "tinygpt":
        changes = [('budget = "60s"', f'budget = "{args.budget:g}s"\n'
                                      f'budget_grace = "{args.grace:g}s"'),
                   ("baseline_runs = 3", "baseline_runs = 2\nmax_runs = 3")]
        if early:
            changes += [("horizons = [0.25]", f"horizons = {schedule(args)}"),
                        ("reduction_factor = 3", f"reduction_factor = {args.reduction_factor}")]
        else:
            changes += [('pruner = "median"', 'pruner = "none"'),
                        ("horizons = [0.25]", "horizons = []")]
    else:
        changes = [("baseline_runs = 2", "baseline_runs = 2\nmax_runs = 3")]
        horizons = schedule(args) if early else "[]"
        text += (f"\n[fidelity]\nhorizons = {horizons}\n"
                 f"reduction_factor = {args.reduction_factor}\n")
    for old, new in changes:
        assert old in text, f"{old!r} is not in {example}/ratchet.toml"
        text = text.replace(old, new, 1)
    return text


def study_of(example: str, seed: int, early: bool, args: argparse.Namespace,
             max_usd: float | None = None) -> Outcome:
    repo = example_repo(example)
    toml = repo / "ratchet.toml"
    toml.write_text(task_file(example, toml.read_text(), early, args))
    commit_all(repo)
    study = open_study(repo, "early" if early else "full", proposer="tpe", seed=seed)
    if max_usd is None:
        study.run(max_experiments=args.proposals + 1)  # the baseline is experiment 0
    else:
        study.run(max_usd=max_usd)
    runs = study.experiments()
    best = study.best()
    assert best is not None and best.value is not None
    return Outcome(len(runs), sum(e.status == "pruned" for e in runs),
                   sum(e.not_promoted for e in runs), sum(e.wall_s for e in runs),
                   sum(e.wall_s for e in runs if e.status != "keep"),
                   sum(e.cost_usd for e in runs), best.value, study.record.sigma,
                   study.config.minimize)


def row(example: str, seed: int, name: str, o: Outcome) -> None:
    """One arm's line, printed as soon as it is measured."""
    sigma = f"{o.sigma:.4f}" if o.sigma is not None else "-"
    print(f"{example:>8} {seed:>4} {name:>15} {o.experiments:>5} {o.pruned:>6} "
          f"{o.not_promoted:>6} {o.compute_s:>10.1f} {o.unkept_s:>9.1f} {o.usd:>8.4f} "
          f"{o.best:>10.4f} "
          f"{sigma:>8}", flush=True)


def compare(example: str, seed: int, args: argparse.Namespace) -> None:
    full = study_of(example, seed, False, args)
    row(example, seed, "full runs", full)
    early = study_of(example, seed, True, args)
    row(example, seed, "early stopping", early)
    same_dollars = None
    if not args.no_equal_dollars:
        same_dollars = study_of(example, seed, True, args, max_usd=full.usd)
        row(example, seed, "early, same $", same_dollars)
    saved = 1 - early.compute_s / full.compute_s
    gap = early.best - full.best
    worse_by = gap if full.minimize else -gap
    within = worse_by <= 2 * (full.sigma or 0.0)
    print(f"{example} seed {seed}: early stopping saved {saved:.0%} of the full runs' compute "
          f"(negative: it spent more; goal >= "
          f"{GOAL:.0%}); its best is {gap:+.4f} from the full-run best ("
          f"{'better, or worse by less than' if within else 'worse by more than'} 2 sigma)",
          flush=True)
    unkept = 1 - early.unkept_s / full.unkept_s if full.unkept_s else 0.0
    print(f"{example} seed {seed}: on candidates that were not kept (the baseline and the "
          f"kept ones' runs for the noise decision are never cut short) it saved {unkept:.0%}; "
          f"they were {full.unkept_s / full.compute_s:.0%} of the full-run study's compute, "
          "the most any early stopping could save in it", flush=True)
    if same_dollars is not None:
        at_same = same_dollars.best - full.best
        print(f"{example} seed {seed}: at the full-run study's dollars, early stopping's best "
              f"is {at_same:+.4f} from the full-run best", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", default="tinygpt,digits")
    parser.add_argument("--budget", type=float, default=15.0,
                        help="seconds of training a tinygpt run")
    parser.add_argument("--grace", type=float, default=20.0,
                        help="tinygpt's budget_grace: start-up, data, saving; a short run "
                             "keeps all of it")
    parser.add_argument("--horizons", default="0.25",
                        help="the early arm's [fidelity] horizons, e.g. 0.1,0.3")
    parser.add_argument("--reduction-factor", type=int, default=3,
                        help="the early arm's [fidelity] reduction_factor")
    parser.add_argument("--proposals", type=int, default=12)
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--no-equal-dollars", action="store_true")
    args = parser.parse_args()
    print(f"TPE, {args.proposals} proposals; tinygpt on CPU with {args.budget:g} s of training "
          f"a run ({args.grace:g} s grace); early stopping screens at horizons {schedule(args)}, "
          f"the best 1/{args.reduction_factor} going on; 'pruned' counts both kinds of stop, "
          "'short' those stopped after a short run, 'unkept s' the compute of candidates not "
          "kept")
    print(f"{'example':>8} {'seed':>4} {'arm':>15} {'exps':>5} {'pruned':>6} {'short':>6} "
          f"{'compute s':>10} {'unkept s':>9} {'$':>8} {'best':>10} {'sigma':>8}")
    for example in args.examples.split(","):
        for seed in [int(s) for s in args.seeds.split(",")]:
            compare(example, seed, args)


if __name__ == "__main__":
    main()
