"""Scaling out: how busy N workers are kept, for local slots, N drivers on one PostgreSQL study,
and a Ray cluster on 127.0.0.1; and what one experiment costs on PostgreSQL next to SQLite.

Every evaluation sleeps `--sleep` seconds. Each configuration runs for `--seconds` of driver
time (a time budget, so drivers that start at different moments all work the whole window).
Efficiency is the useful work done while every driver was running (from the last driver's
start to the first driver's stop), each run's overlap with that window counted at the share of
its wall time that was the sleep, divided by N workers times the window. 1.0 = no overhead.

Goal: efficiency >= 0.85 at 16 workers, for each of the three. A shared machine is noisy, so
each configuration runs `--repeat` times; the table shows the median and every run's figure,
and how busy the machine's CPUs were meanwhile (a figure taken at 100 % busy measures the
machine, not ratchet: N drivers need N processes' worth of CPU between their evaluations).

    python benchmarks/scale.py [--workers 1,2,4,8,16] [--seconds 20] [--sleep 1]
                               [--modes local,drivers,ray] [--repeat 3] [--overhead-n 40]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _util import one_file_task  # noqa: E402

from ratchet.records import Driver, Experiment  # noqa: E402
from ratchet.store.database import Store  # noqa: E402
from ratchet.study import open_study  # noqa: E402

POSTGRES = "postgresql://127.0.0.1:5432/test"
RAY_ENV = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


def task_repo(sleep: float) -> Path:
    command = f"sleep {sleep:g}; awk 'BEGIN {{ srand(); print \\\"score:\\\", rand() }}'"
    return one_file_task(command, baseline_runs=1)


def reset_postgres() -> None:
    import psycopg

    with psycopg.connect("host=127.0.0.1 port=5432 dbname=test", autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")


def driver_command(storage: str, seconds: float, *extra: str) -> list[str]:
    return [sys.executable, "-m", "ratchet.cli", "run", "--plain", "--study", "scale",
            "--storage", storage, "--proposer", "random", "--max-time", f"{seconds:g}s", *extra]


def run_drivers(repo: Path, commands: list[list[str]], env: dict[str, str] | None = None) -> None:
    procs = [subprocess.Popen(c, cwd=repo, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True, env=env) for c in commands]
    for proc in procs:
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"a driver failed: {err.strip().splitlines()[-1:]}")


def efficiency(storage: str, workers: int, sleep: float) -> tuple[float, int, float]:
    """Useful share of the workers' time while all drivers ran; runs counted; the window."""
    store = Store(storage)
    study = store.get_study("scale")
    assert study is not None and study.id is not None
    drivers: list[Driver] = store.drivers(study.id)
    start = max(_seconds(d.started_at) for d in drivers)
    end = min(_seconds(d.stopped_at) for d in drivers)
    runs: list[Experiment] = [e for e in store.experiments(study.id) if e.finished_at]
    useful = 0.0
    for e in runs:
        began, ended = _seconds(e.created_at), _seconds(e.finished_at)
        overlap = max(0.0, min(ended, end) - max(began, start))
        useful += overlap * min(1.0, sleep / max(ended - began, 1e-9))
    store.close()
    return useful / (workers * (end - start)), len(runs), end - start


class CpuMeter:
    """The share of all CPUs that was busy between start and stop, from /proc/stat."""

    def __enter__(self) -> CpuMeter:
        self.before = _cpu_times()
        return self

    def __exit__(self, *exc: object) -> None:
        busy_before, total_before = self.before
        busy_after, total_after = _cpu_times()
        self.busy = (busy_after - busy_before) / max(total_after - total_before, 1)


def _cpu_times() -> tuple[int, int]:
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def _seconds(moment: datetime | None) -> float:
    assert moment is not None
    return moment.timestamp()


def local(workers: int, seconds: float, sleep: float) -> str:
    repo = task_repo(sleep)
    storage = f"sqlite:///{repo / '.ratchet' / 'ratchet.db'}"
    run_drivers(repo, [driver_command(storage, seconds, "--parallel", str(workers))])
    return storage


def drivers(workers: int, seconds: float, sleep: float) -> str:
    reset_postgres()
    repo = task_repo(sleep)
    open_study(repo, "scale", storage=POSTGRES, proposer="random")  # made once, then shared
    run_drivers(repo, [driver_command(POSTGRES, seconds) for _ in range(workers)])
    return POSTGRES


class RayCluster:
    """One node on 127.0.0.1 with as many CPUs as the largest configuration needs."""

    def __init__(self, cpus: int) -> None:
        self.port = 6300 + os.getpid() % 500
        self.ray = Path(sys.executable).parent / "ray"
        subprocess.run([str(self.ray), "start", "--head", "--node-ip-address=127.0.0.1",
                        f"--port={self.port}", f"--num-cpus={cpus}",
                        "--include-dashboard=false", "--disable-usage-stats"],
                       env=RAY_ENV, check=True, capture_output=True)

    def run(self, workers: int, seconds: float, sleep: float) -> str:
        repo = task_repo(sleep)
        storage = f"sqlite:///{repo / '.ratchet' / 'ratchet.db'}"
        run_drivers(repo, [driver_command(storage, seconds, "--parallel", str(workers),
                                          "--executor", "ray", "--address",
                                          f"127.0.0.1:{self.port}")], env=RAY_ENV)
        return storage

    def stop(self) -> None:
        subprocess.run([str(self.ray), "stop", "--force"], env=RAY_ENV, capture_output=True)


def overhead(n: int) -> dict[str, tuple[float, float]]:
    """Per experiment of an instant command, one driver, SQLite next to PostgreSQL: seconds of
    wall time, and seconds of CPU spent by the driver and the processes it started."""
    per_experiment = {}
    for name, storage in (("sqlite", None), ("postgresql", POSTGRES)):
        if storage:
            reset_postgres()
        repo = task_repo(0)
        url = storage or f"sqlite:///{Path(tempfile.mkdtemp()) / 'store.db'}"
        study = open_study(repo, "overhead", storage=url, proposer="random", seed=0)
        cpu_before, start = _cpu_seconds(), time.perf_counter()
        study.run(max_experiments=n)
        per_experiment[name] = ((time.perf_counter() - start) / n,
                                (_cpu_seconds() - cpu_before) / n)
    return per_experiment


def _cpu_seconds() -> float:
    own, children = (resource.getrusage(w) for w in (resource.RUSAGE_SELF,
                                                      resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", default="1,2,4,8,16")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--sleep", type=float, default=1.0)
    parser.add_argument("--modes", default="local,drivers,ray")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--overhead-n", type=int, default=40)
    args = parser.parse_args()
    counts = [int(w) for w in args.workers.split(",")]
    modes = args.modes.split(",")
    print(f"`sleep {args.sleep:g}` evaluations, {args.seconds:g} s of driver time each, "
          f"{os.cpu_count()} CPU cores here")
    print(f"{'workers':>8} " + " ".join(f"{m:>38}" for m in modes))
    cluster = RayCluster(max(counts)) if "ray" in modes else None
    try:
        for workers in counts:
            cells = []
            for mode in modes:
                runner = {"local": local, "drivers": drivers}.get(mode) or \
                    (cluster.run if cluster else None)
                assert runner is not None, mode
                figures, loads = [], []
                for _ in range(args.repeat):
                    with CpuMeter() as meter:
                        storage = runner(workers, args.seconds, args.sleep)
                    figures.append(efficiency(storage, workers, args.sleep)[0])
                    loads.append(meter.busy)
                each = "/".join(f"{f:.2f}" for f in figures)
                cells.append(f"{statistics.median(figures):5.3f} ({each}) "
                             f"cpu {statistics.median(loads):4.0%}")
            print(f"{workers:>8} " + " ".join(f"{c:>38}" for c in cells), flush=True)
    finally:
        if cluster:
            cluster.stop()
    if args.overhead_n:
        costs = overhead(args.overhead_n)
        print("per experiment of an instant command, one driver: " + ", ".join(
            f"{name} {wall * 1000:.0f} ms ({cpu * 1000:.0f} ms of CPU)"
            for name, (wall, cpu) in costs.items()))


if __name__ == "__main__":
    main()
