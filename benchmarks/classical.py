"""TPE vs random on examples/digits: mean best-so-far validation accuracy at trials 10, 20, 30.

5 seeds x 30 trials per sampler (trial 0 is the baseline). Deterministic training (SEED knob
fixed), greedy acceptance, so the comparison is of the samplers alone.

    python benchmarks/classical.py [--seeds 5] [--trials 30] [--parallel 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _util import example_repo  # noqa: E402

from ratchet.study import open_study  # noqa: E402

CHECKPOINTS = (10, 20, 30)


def best_so_far(values: list[float]) -> list[float]:
    out, best = [], float("-inf")
    for v in values:
        best = max(best, v)
        out.append(best)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--parallel", type=int, default=2)
    args = parser.parse_args()
    repo = example_repo("digits", {"ratchet.toml": ('rule = "noise-aware"', 'rule = "greedy"')})
    curves: dict[str, list[list[float]]] = {"tpe": [], "random": []}
    start = time.perf_counter()
    for sampler in curves:
        for seed in range(args.seeds):
            study = open_study(repo, f"{sampler}-{seed}", proposer=sampler, seed=seed)
            study.run(max_experiments=args.trials, parallel=args.parallel)
            values = [e.value if e.value is not None else float("-inf")
                      for e in study.experiments()]
            curves[sampler].append(best_so_far(values))
    print(f"examples/digits, validation accuracy (maximize), {args.seeds} seeds x {args.trials} "
          f"trials, --parallel {args.parallel}, {time.perf_counter() - start:.0f}s in all")
    print("mean best-so-far (std over seeds)")
    header = "sampler " + "".join(f"  trial {c:<12}" for c in CHECKPOINTS if c <= args.trials)
    print(header)
    for sampler, runs in curves.items():
        cells = []
        for c in CHECKPOINTS:
            if c > args.trials:
                continue
            at = [run[c - 1] for run in runs]
            spread = statistics.stdev(at) if len(at) > 1 else 0.0
            cells.append(f"  {statistics.fmean(at):.4f} ({spread:.4f})")
        print(f"{sampler:<8}" + "".join(cells))
    baseline = curves["tpe"][0][0]
    print(f"baseline (trial 0): {baseline:.4f}")


if __name__ == "__main__":
    main()
