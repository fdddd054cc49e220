"""First contact: how long `ratchet --help` and `ratchet status` take to start and finish.

Goal: under 0.3 s each. Median of `--runs` runs, on a repository with one small study.

    python benchmarks/startup.py [--runs 7]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _util import one_file_task  # noqa: E402

from ratchet.study import open_study  # noqa: E402


def seconds(command: list[str], cwd: Path, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, cwd=cwd, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    repo = one_file_task("echo score: 1", baseline_runs=1)
    open_study(repo, "startup", proposer="random").run(max_experiments=2)
    ratchet = [sys.executable, "-m", "ratchet.cli"]
    python = seconds([sys.executable, "-c", "pass"], repo, args.runs)
    print(f"python itself: {python:.3f} s (median of {args.runs})")
    for name, extra in (("ratchet --help", ["--help"]), ("ratchet status", ["status"])):
        print(f"{name}: {seconds([*ratchet, *extra], repo, args.runs):.3f} s")


if __name__ == "__main__":
    main()
