"""ratchet's overhead per experiment, whether it grows with history, and what the sandbox adds.

200 experiments with the random proposer on a one-file task whose command exits at once (in
the default bubblewrap sandbox); in the same run, that command 200 times in a plain loop, and
200 Optuna ask/tell trials on a SQLite store. Goals: median overhead <= 100 ms; overhead at
experiments 181-200 over 1-20 <= 1.2.

The sandbox: the same phase (a shell command that exits at once) run through ratchet's process
runner with and without bubblewrap, alternating, the same sandbox a real phase gets (repository
and store concealed, private /tmp and HOME, no network). Goal: bwrap adds <= 30 ms per phase.

    python benchmarks/overhead.py [--n 200] [--sandbox-only]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna

sys.path.insert(0, str(Path(__file__).parent))
from _util import one_file_task  # noqa: E402

from ratchet.engine import SilentReporter  # noqa: E402
from ratchet.execute.process import ProcessRunner  # noqa: E402
from ratchet.execute.sandbox import BwrapLauncher, NoLauncher, Sandbox  # noqa: E402
from ratchet.study import open_study  # noqa: E402


class Timestamps(SilentReporter):
    """A reporter that notes when each experiment finished."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def update(self, progress: object) -> None:
        pass

    def finished_experiment(self, experiment: object, progress: object) -> None:
        self.times.append(time.perf_counter())

    def message(self, text: str) -> None:
        pass


def sandbox_overhead(n: int) -> None:
    repo = one_file_task("true")
    worktree = repo / ".ratchet" / "worktrees" / "bench" / "slot-0"
    worktree.mkdir(parents=True)
    sandbox = Sandbox(workdir=worktree, conceal=(repo,))
    log = Path(tempfile.mkdtemp()) / "phase.log"
    runners = {"none": ProcessRunner(NoLauncher()), "bwrap": ProcessRunner(BwrapLauncher())}
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(n):
        for name, runner in runners.items():  # alternating: the machine's drift hits both
            start = time.perf_counter()
            outcome = runner.run("true", sandbox, {"PATH": "/usr/bin:/bin"}, 30, log)
            times[name].append(time.perf_counter() - start)
            assert outcome.returncode == 0, log.read_text()
    none, bwrap = statistics.median(times["none"]), statistics.median(times["bwrap"])
    print(f"one phase (`true`), {n} runs each, alternating:")
    print(f"  no sandbox, median:               {none * 1000:8.1f} ms")
    print(f"  bwrap sandbox, median:            {bwrap * 1000:8.1f} ms")
    print(f"  added by the sandbox per phase:   {(bwrap - none) * 1000:8.1f} ms"
          "   (goal <= 30 ms)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--sandbox-only", action="store_true")
    args = parser.parse_args()
    n = args.n
    sandbox_overhead(n)
    if args.sandbox_only:
        return
    command = "echo score: 0"
    repo = one_file_task(command)

    plain = []
    for _ in range(n):
        start = time.perf_counter()
        subprocess.run(["/bin/sh", "-c", command], cwd=repo, capture_output=True)
        plain.append(time.perf_counter() - start)

    reporter = Timestamps()
    study = open_study(repo, "overhead", proposer="random", seed=0)
    start = time.perf_counter()
    study.run(max_experiments=n, reporter=reporter)
    marks = [start, *reporter.times]
    per_experiment = [b - a for a, b in zip(marks, marks[1:], strict=False)]

    storage = f"sqlite:///{tempfile.mkdtemp()}/optuna.db"
    optuna_study = optuna.create_study(storage=storage, sampler=optuna.samplers.RandomSampler(0))
    optuna_times = []
    for _ in range(n):
        t0 = time.perf_counter()
        trial = optuna_study.ask({"A": optuna.distributions.FloatDistribution(0.0, 1.0)})
        optuna_study.tell(trial, 0.0)
        optuna_times.append(time.perf_counter() - t0)

    plain_median = statistics.median(plain)
    overhead = [t - plain_median for t in per_experiment[1:]]  # experiment 0 is the baseline
    first, last = statistics.median(overhead[:20]), statistics.median(overhead[-20:])
    print(f"experiments: {n} (random proposer, command `echo score: 0`, SQLite store, bwrap)")
    print(f"plain loop, median per command:     {plain_median * 1000:8.1f} ms")
    print(f"ratchet, median per experiment:     {statistics.median(per_experiment) * 1000:8.1f} ms")
    print(f"ratchet overhead, median:           {statistics.median(overhead) * 1000:8.1f} ms"
          "   (goal <= 100 ms)")
    print(f"overhead, experiments 1-20 median:  {first * 1000:8.1f} ms")
    print(f"overhead, experiments {n - 19}-{n} median: {last * 1000:8.1f} ms")
    print(f"growth ratio last/first:            {last / first:8.2f}     (goal <= 1.2)")
    optuna_median = statistics.median(optuna_times)
    print(f"optuna ask+tell on SQLite, median:  {optuna_median * 1000:8.1f} ms")
    print(f"ratchet overhead / optuna per trial:{statistics.median(overhead) / optuna_median:8.2f}")


if __name__ == "__main__":
    main()
