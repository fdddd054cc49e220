"""Many drivers on one study: two clones of a repository, each running `ratchet run` on the
same study in the same database, started together and apart, one of them killed."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from conftest import git

from ratchet.records import Experiment
from ratchet.store.database import Store
from ratchet.study import open_study

SLOW = ("SEED = -1  # -1: a new seed every run, as real training has; otherwise a fixed seed",
        "SEED = -1\nimport time\ntime.sleep(0.4)")


@pytest.fixture
def clones(make_repo: Callable[..., Path], tmp_path: Path) -> tuple[Path, Path]:
    """Two clones of one repository: two machines' checkouts, sharing nothing but the store."""
    origin = make_repo("quadratic", replace={"objective.py": SLOW})
    a, b = tmp_path / "a", tmp_path / "b"
    for clone in (a, b):
        git(tmp_path, "clone", "-q", str(origin), str(clone))
    return a, b


@pytest.fixture
def shared_store(storage_url: str) -> str:
    """One store both clones name: PostgreSQL, or a SQLite file on this machine's disk."""
    return storage_url


def _driver(clone: Path, storage: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "ratchet.cli", "run", "--plain", "--study", "shared",
         "--storage", storage, "--proposer", "random", "--parallel", "2", *args],
        cwd=clone, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)


class FinishedRecords:
    """Watches the store while drivers run: a finished record's verdict, value and commit never
    change afterwards, and its runs only ever grow (a kept one measured again)."""

    def __init__(self, storage: str) -> None:
        self.store = Store(storage)
        self.seen: dict[int, Experiment] = {}
        self.changed: list[str] = []

    def check(self) -> None:
        study = self.store.get_study("shared")
        if study is None:
            return
        for e in self.store.experiments(study.id):
            if not e.finished:
                continue
            before = self.seen.setdefault(e.number, e)
            if (e.status, e.commit, e.kind) != (before.status, before.commit, before.kind) \
                    or e.values[:len(before.values)] != before.values \
                    or (e.status != "keep" and e.values != before.values):
                self.changed.append(f"#{e.number}: {before} -> {e}")
            self.seen[e.number] = e


def _run_together(procs: list[subprocess.Popen[str]], watch: FinishedRecords,
                  timeout: float = 180) -> list[str]:
    deadline = time.monotonic() + timeout
    while any(p.poll() is None for p in procs):
        assert time.monotonic() < deadline, "drivers did not finish"
        watch.check()
        time.sleep(0.1)
    watch.check()
    outputs = [p.communicate()[0] for p in procs]
    for proc, out in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, out
    return outputs


def _wait_for_status_listing(clone: Path, storage: str, pids: list[int]) -> None:
    deadline = time.monotonic() + 60
    while True:
        out = subprocess.run([sys.executable, "-m", "ratchet.cli", "status", "--study", "shared",
                              "--storage", storage], cwd=clone, capture_output=True, text=True,
                             env={**os.environ, "COLUMNS": "200"})
        assert out.returncode == 0 or "no study named" in out.stderr, out.stderr
        listed = out.stdout.split("drivers running now")[-1]
        if "drivers running now" in out.stdout and all(f"\t{pid}\t" in listed for pid in pids):
            return
        assert time.monotonic() < deadline, out.stdout
        time.sleep(0.2)


def _assert_consistent(storage: str, clones: tuple[Path, ...], count: int) -> list[Experiment]:
    study = open_study(clones[0], "shared", storage=storage)
    experiments = study.experiments()
    assert [e.number for e in experiments] == list(range(count)), "numbers: unique, gap-free"
    assert all(e.finished for e in experiments)
    assert sum(e.kind == "baseline" for e in experiments) == 1
    best = study.best()
    kept = [e for e in experiments if e.status == "keep"]
    # The task is noiseless: every kept experiment beat the best before it, so the best is the
    # lowest of them (two drivers that both beat one best cannot both have won).
    assert best is not None and best.value == min(e.value for e in kept)
    assert sum(e.value == best.value for e in kept) == 1
    for clone in clones:  # `ratchet best` brings each clone's branch to the best's code
        out = subprocess.run([sys.executable, "-m", "ratchet.cli", "best", "--study", "shared",
                              "--storage", storage], cwd=clone, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        assert git(clone, "rev-parse", "ratchet/shared^{tree}") == \
            git(clones[0], "rev-parse", f"{best.commit}^{{tree}}")
    trials = optuna.load_study(study_name="ratchet:shared", storage=storage).get_trials()
    assert not [t.number for t in trials if t.state == optuna.trial.TrialState.RUNNING]
    drivers = study.drivers()
    assert len(drivers) >= len(clones) and all(d.stopped_at is not None for d in drivers)
    return experiments


@pytest.mark.parametrize("start", ["together", "apart"])
def test_two_clones_drive_one_study(clones: tuple[Path, Path], shared_store: str,
                                    start: str) -> None:
    if start == "apart" and shared_store.startswith("sqlite"):
        pytest.skip("one SQLite run (together) is enough")
    watch = FinishedRecords(shared_store)
    first = _driver(clones[0], shared_store, "--seed", "1", "--max-experiments", "14")
    if start == "apart":
        while not any(e.finished and e.kind != "baseline" for e in watch.seen.values()):
            assert first.poll() is None, first.communicate()[0]
            watch.check()
            time.sleep(0.1)
    second = _driver(clones[1], shared_store, "--seed", "2", "--max-experiments", "14")
    if start == "together":  # `ratchet status` shows both drivers, from either clone
        _wait_for_status_listing(clones[1], shared_store, [first.pid, second.pid])
    outputs = _run_together([first, second], watch)
    assert not watch.changed, watch.changed
    experiments = _assert_consistent(shared_store, clones, 14)
    assert {e.driver_id for e in experiments} == {None}  # every claim released when finished
    for out in outputs:  # both drivers did part of the work
        assert re.search(r"^#\s+\d+ ", out, re.MULTILINE), out


def test_a_killed_drivers_experiment_is_rerun_by_the_other_and_recorded_once(
        clones: tuple[Path, Path]) -> None:
    storage = f"sqlite:///{clones[0].parent / 'shared.db'}"
    watch = FinishedRecords(storage)
    victim = _driver(clones[0], storage, "--seed", "1", "--max-experiments", "16")
    while not any(e.finished and e.kind != "baseline" for e in watch.seen.values()):
        assert victim.poll() is None, victim.communicate()[0]
        watch.check()
        time.sleep(0.05)
    store = Store(storage)
    study = store.get_study("shared")
    held = []
    while not held:  # the victim is evaluating: its experiments run with their process groups
        held = [e for e in store.experiments(study.id) if e.status == "running" and e.pgid]
        time.sleep(0.02)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    survivor = _driver(clones[1], storage, "--seed", "2", "--max-experiments", "16")
    (out,) = _run_together([survivor], watch)
    assert not watch.changed, watch.changed
    for experiment in held:
        assert f"experiment {experiment.number} was interrupted" in out
    experiments = _assert_consistent(storage, clones, 16)
    assert all(experiments[e.number].commit is not None for e in held)


def _patch(clone: Path, *edits: tuple[str, str]) -> str:
    """A diff of objective.py making the last edit, on the code with the earlier ones made."""
    path = clone / "objective.py"
    for old, new in edits[:-1]:
        path.write_text(path.read_text().replace(old, new))
    git(clone, "add", "objective.py")
    old, new = edits[-1]
    path.write_text(path.read_text().replace(old, new))
    diff = git(clone, "diff")
    git(clone, "reset", "-q", "--hard")
    return diff


def test_code_kept_in_one_clone_is_rebuilt_as_the_same_commit_in_another(
        make_repo: Callable[..., Path], tmp_path: Path) -> None:
    origin = make_repo("quadratic")
    a, b = tmp_path / "a", tmp_path / "b"
    for clone in (a, b):
        git(tmp_path, "clone", "-q", str(origin), str(clone))
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    in_a = open_study(a, "shared", storage=storage, proposer="external")
    to_x, to_y = ("X = 0.0", "X = 1.5"), ("Y = 0.0", "Y = -0.7")
    first = in_a.try_patch(_patch(a, to_x), "x to the target")
    assert first.status == "keep"
    with pytest.raises(subprocess.CalledProcessError):  # b has never seen a's commit
        git(b, "cat-file", "-e", f"{first.commit}^{{commit}}")

    in_b = open_study(b, "shared", storage=storage)
    second = in_b.try_patch(_patch(a, to_x, to_y), "y to the target")
    assert second.status == "keep" and second.parent_commit == first.commit
    git(b, "cat-file", "-e", f"{first.commit}^{{commit}}")  # rebuilt in b, the same commit
    best = in_b.publish_best()
    assert best.experiment.number == second.number
    assert "-X = 0.0" in best.diff and "-Y = 0.0" in best.diff
    assert git(b, "rev-parse", "ratchet/shared^{tree}") == git(b, "rev-parse",
                                                               f"{second.commit}^{{tree}}")


def test_a_starting_driver_leaves_a_live_drivers_fresh_trial_alone(
        make_repo: Callable[..., Path]) -> None:
    """Driver B starts while driver A has asked Optuna for a trial and not yet recorded its
    experiment: B must not fail A's trial, and A finishing it later must not crash."""
    from optuna.trial import TrialState

    from ratchet.proposers import ProposalContext, create_proposer

    study = open_study(make_repo("quadratic"), "o", proposer="random", seed=0)
    a, b = create_proposer(study.context), create_proposer(study.context)
    best = Experiment(study_id=study.id, number=0, kind="baseline")
    proposal = a.propose(ProposalContext(number=1, best=best,
                                         base_values=study.context.base_values))
    b.recover([])  # B's start: no experiment holds A's trial yet
    (trial,) = a.study.get_trials(deepcopy=False)
    assert trial.number == proposal.trial_number and trial.state == TrialState.RUNNING
    a.withdraw(proposal)
    a.withdraw(proposal)  # finished already (by another driver, say): no error
    assert a.study.get_trials(deepcopy=False)[0].state == TrialState.FAIL
