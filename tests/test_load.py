"""Load (on demand: `pytest -m load`): 16 drivers x 100 instant
experiments on one PostgreSQL study. Nothing lost, nothing counted twice, and the best is the
one the records say it must be."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import commit_all, postgres_available, reset_postgres

from ratchet.study import open_study

DRIVERS, PER_DRIVER = 16, 100
TASK = """\
[task]
editable = ["task.py"]
command = "awk 'BEGIN { srand(); printf \\"score: %.9f\\\\n\\", rand() }'"
timeout = "60s"

[metric]
name = "score"
goal = "minimize"

[decision]
rule = "greedy"
baseline_runs = 1

[space]
A = { float = [0.0, 1.0] }
"""


@pytest.mark.load
@pytest.mark.postgres
@pytest.mark.timeout(1800)
def test_sixteen_drivers_one_hundred_experiments_each(tmp_path: Path) -> None:
    if not postgres_available():
        pytest.skip("no PostgreSQL server answers on 127.0.0.1:5432")
    reset_postgres()
    repo = tmp_path / "task"
    repo.mkdir()
    (repo / "ratchet.toml").write_text(TASK)
    (repo / "task.py").write_text("A = 0.5\n")
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    commit_all(repo)
    storage = "postgresql://127.0.0.1:5432/test"
    total = DRIVERS * PER_DRIVER
    drivers = [subprocess.Popen(
        [sys.executable, "-m", "ratchet.cli", "run", "--plain", "--study", "load", "--storage",
         storage, "--proposer", "random", "--seed", str(i), "--max-experiments", str(total)],
        cwd=repo, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for i in range(DRIVERS)]
    errors = [d.communicate(timeout=1800)[1] for d in drivers]
    assert [d.returncode for d in drivers] == [0] * DRIVERS, "\n".join(errors)

    study = open_study(repo, "load", storage=storage)
    experiments = study.experiments()
    assert [e.number for e in experiments] == list(range(total)), "lost or duplicated numbers"
    assert all(e.finished and len(e.values) == 1 for e in experiments)
    assert sum(e.kind == "baseline" for e in experiments) == 1
    best = study.best()
    assert best is not None
    # Greedy, judged one at a time under the study's lock: the best is the lowest value seen.
    assert best.value == min(e.value for e in experiments if e.value is not None)
    assert len({d.id for d in study.drivers()}) == DRIVERS
