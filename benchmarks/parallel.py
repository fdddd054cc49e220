"""Throughput of parallel slots: 40 experiments of a one-second command at 1 and 8 slots.

Goal: throughput at --parallel 8 at least 7 times that at --parallel 1.

    python benchmarks/parallel.py [--n 40] [--sleep 1.0]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _util import one_file_task  # noqa: E402

from ratchet.study import open_study  # noqa: E402


def throughput(parallel: int, n: int, sleep: float) -> float:
    repo = one_file_task(f"sleep {sleep} && echo score: 1")
    study = open_study(repo, f"p{parallel}", proposer="random", seed=0)
    start = time.perf_counter()
    study.run(max_experiments=n, parallel=parallel)
    elapsed = time.perf_counter() - start
    assert len(study.experiments()) == n
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--sleep", type=float, default=1.0)
    args = parser.parse_args()
    one = throughput(1, args.n, args.sleep)
    eight = throughput(8, args.n, args.sleep)
    print(f"{args.n} experiments of `sleep {args.sleep:g}` (the baseline is one of them)")
    print(f"--parallel 1: {one:6.3f} experiments/s")
    print(f"--parallel 8: {eight:6.3f} experiments/s")
    print(f"throughput ratio: {eight / one:5.2f}   (goal >= 7)")


if __name__ == "__main__":
    main()
