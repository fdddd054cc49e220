"""The loop end to end on the quadratic example: improvement, baseline as trial 0, parallel
slots, resume, noise-aware re-runs, a driver killed with SIGKILL, Ctrl-C, budgets."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest

from ratchet.study import open_study

SLOW_OBJECTIVE = ("SEED = -1  # -1: a new seed every run, as real training has; "
                  "otherwise a fixed seed",
                  "SEED = -1\nimport time\ntime.sleep(0.6)")


def test_tpe_improves_on_the_baseline_which_is_trial_0(make_repo: Callable[..., Path]) -> None:
    repo = make_repo("quadratic")
    study = open_study(repo, "tpe", proposer="tpe", seed=1)
    progress = study.run(max_experiments=25)
    experiments = study.experiments()
    assert len(experiments) == 25 and progress.stop_reason.startswith("experiment budget")
    baseline = experiments[0]
    assert baseline.kind == "baseline" and baseline.value == pytest.approx(3.84)
    assert len(baseline.values) == 3 and study.record.sigma == 0.0
    best = study.best()
    assert best.value < baseline.value
    kept = [e for e in experiments if e.status == "keep"]
    assert all(b.value < a.value for a, b in zip(kept, kept[1:], strict=False))
    optuna_study = optuna.load_study(study_name="ratchet:tpe", storage=study.store.url)
    trials = optuna_study.get_trials()
    assert trials[0].params == {"X": 0.0, "Y": 0.0, "DEPTH": 2, "ACTIVATION": "relu"}
    assert trials[0].value == pytest.approx(3.84)
    assert len(trials) == 25
    assert optuna_study.best_value == pytest.approx(best.value)


@pytest.mark.parametrize("sampler", ["cmaes", "gp", "random"])
def test_every_sampler_runs_through_the_loop(make_repo: Callable[..., Path],
                                             sampler: str) -> None:
    study = open_study(make_repo("quadratic"), sampler, proposer=sampler, seed=0)
    study.run(max_experiments=5)
    statuses = [e.status for e in study.experiments()]
    assert len(statuses) == 5 and all(s in ("keep", "discard") for s in statuses)


def test_parallel_slots_propose_distinct_values(make_repo: Callable[..., Path]) -> None:
    repo = make_repo("quadratic", replace={"objective.py": SLOW_OBJECTIVE})
    study = open_study(repo, "par", proposer="tpe", seed=0)
    start = time.monotonic()
    study.run(max_experiments=13, parallel=4)
    elapsed = time.monotonic() - start
    proposals = [e for e in study.experiments() if e.kind == "proposal"]
    assert len(proposals) == 12
    params = [tuple(sorted(e.params.items())) for e in proposals]
    assert len(set(params)) == len(params)
    assert {e.slot for e in proposals} == {0, 1, 2, 3}
    # 12 proposals of >= 0.6 s plus 3 baseline runs, on 4 slots: far below the serial 9 s
    assert elapsed < 12 * 0.6 + 3 * 0.6


def test_a_study_resumes_where_it_stopped(make_repo: Callable[..., Path]) -> None:
    repo = make_repo("quadratic")
    open_study(repo, "r", proposer="random", seed=5).run(max_experiments=4)
    study = open_study(repo, "r")
    study.run(max_experiments=9)
    numbers = [e.number for e in study.experiments()]
    assert numbers == list(range(9))
    assert sum(e.kind == "baseline" for e in study.experiments()) == 1
    trials = optuna.load_study(study_name="ratchet:r", storage=study.store.url).get_trials()
    assert len(trials) == 9
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 9  # no replayed stream


def test_noise_aware_pools_noise_confirms_gains_and_remeasures_the_best(
        make_repo: Callable[..., Path]) -> None:
    repo = make_repo("quadratic", replace={"objective.py": ("NOISE = 0.0", "NOISE = 0.4")})
    study = open_study(repo, "noisy", proposer="random", seed=2)
    study.run(max_experiments=15)
    experiments = study.experiments()
    # what to read when it fails: a failed re-run of the best lets a candidate be judged on
    # the runs the best has
    seen = [(e.number, e.status, e.reason, len(e.values)) for e in experiments]
    assert len(experiments[0].values) >= 3 and study.record.sigma > 0
    judged = [e for e in experiments[1:] if e.decision]
    dfs = [e.decision["df"] for e in judged]
    assert dfs == sorted(dfs) and dfs[-1] > 2  # more than the baseline's own 2
    confirmed = [e for e in judged if len(e.values) == 8]
    assert confirmed, "no candidate reached a confirmed decision"
    for e in judged:
        d = e.decision
        assert d["rule"] == "noise-aware" and d["runs"] == len(e.values)
        if e.status == "keep":
            assert d["runs"] == 8 and d["p_value"] < 0.05 and d["best_runs"] >= 8
    for e in confirmed:  # the best had as many runs as its challenger when it was judged
        assert e.decision["best_runs"] >= 8 and e.decision["p_value"] is not None, seen
    assert len(experiments[0].values) >= 8  # the baseline was measured again for them


def test_greedy_rule_runs_each_candidate_once(make_repo: Callable[..., Path]) -> None:
    repo = make_repo("quadratic", replace={"ratchet.toml": ('rule = "noise-aware"',
                                                            'rule = "greedy"')})
    study = open_study(repo, "g", proposer="random", seed=2)
    study.run(max_experiments=6)
    assert all(len(e.values) == 1 for e in study.experiments())
    assert all(e.decision["rule"] == "greedy" for e in study.experiments()[1:])


def test_dollar_budget_stops_the_study(make_repo: Callable[..., Path]) -> None:
    repo = make_repo("quadratic", replace={"ratchet.toml": ("compute_usd_per_hour = 1.0",
                                                            "compute_usd_per_hour = 3600.0")})
    study = open_study(repo, "usd", proposer="random", seed=0)
    progress = study.run(max_usd=2.0, max_experiments=100)
    assert progress.stop_reason.startswith("dollar budget")
    spent = sum(e.cost_usd for e in study.experiments())
    assert spent >= 2.0 and len(study.experiments()) < 100
    assert all(e.cost_usd == pytest.approx(e.wall_s) for e in study.experiments())


def _driver(repo: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "ratchet.cli", "run", "--plain", *args],
                            cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)


def _wait_for_lines(proc: subprocess.Popen[str], count: int, timeout: float = 60) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while len([ln for ln in lines if ln.startswith("#")]) < count:
        assert time.monotonic() < deadline, f"driver too slow: {lines}"
        line = proc.stdout.readline()
        assert line, f"driver ended early: {lines}"
        lines.append(line)
    return lines


def test_sigkill_mid_evaluation_then_resume_loses_nothing(make_repo: Callable[..., Path]) -> None:
    repo = make_repo("quadratic", replace={"objective.py": (
        SLOW_OBJECTIVE[0], "SEED = -1\nimport os, time\n"
        "open(f'/tmp/ratchet-test-{os.getpid()}.pid', 'w').close()\ntime.sleep(1.5)")})
    driver = _driver(repo, "--study", "k", "--proposer", "random", "--seed", "1",
                     "--max-experiments", "6")
    _wait_for_lines(driver, 2)
    time.sleep(0.5)  # the third experiment is now in its evaluation
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    study = open_study(repo, "k")
    before = {e.number: e for e in study.experiments()}
    finished_before = {n: e for n, e in before.items() if e.finished}
    assert len(finished_before) >= 2
    interrupted = [e for e in before.values() if e.status == "running"]
    assert len(interrupted) == 1 and interrupted[0].pgid

    resumed = _driver(repo, "--study", "k", "--max-experiments", "6")
    out, _ = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, out
    assert f"experiment {interrupted[0].number} was interrupted" in out
    after = open_study(repo, "k").experiments()
    assert [e.number for e in after] == list(range(6))
    assert all(e.finished for e in after)
    for number, e in finished_before.items():
        assert after[number].values == e.values and after[number].status == e.status
    rerun = after[interrupted[0].number]
    assert rerun.commit == interrupted[0].commit and rerun.pgid is None
    # the evaluation the killed driver left behind was killed on resume, not left to run on
    assert subprocess.run(["pgrep", "-g", str(interrupted[0].pgid)],
                          capture_output=True).returncode == 1


def test_ctrl_c_finishes_the_running_evaluation_and_records_it(
        make_repo: Callable[..., Path]) -> None:
    repo = make_repo("quadratic", replace={"objective.py": SLOW_OBJECTIVE})
    driver = _driver(repo, "--study", "c", "--proposer", "random", "--max-experiments", "50")
    _wait_for_lines(driver, 2)
    driver.send_signal(signal.SIGINT)
    out, _ = driver.communicate(timeout=60)
    assert driver.returncode == 0, out
    assert "stopped: stopped by the user" in out
    experiments = open_study(repo, "c").experiments()
    assert 2 <= len(experiments) < 50
    assert all(e.finished for e in experiments)


def test_proposals_run_beside_the_baseline_and_are_judged_once_it_is_known(
        make_repo: Callable[..., Path]) -> None:
    repo = make_repo("quadratic", replace={"objective.py": SLOW_OBJECTIVE})
    study = open_study(repo, "beside", proposer="random", seed=4)
    study.run(max_experiments=8, parallel=4)
    baseline, *proposals = study.experiments()
    early = [e for e in proposals if e.created_at < baseline.finished_at]
    assert early, "no proposal started while the baseline was measured"
    for e in proposals:
        assert e.decision["best"] <= baseline.value
        assert e.delta == pytest.approx(e.value - e.decision["best"])


def test_a_failing_baseline_stops_the_study_with_one_line(
        make_repo: Callable[..., Path]) -> None:
    repo = make_repo("quadratic", replace={"objective.py": (
        SLOW_OBJECTIVE[0], "SEED = -1\nimport os\n"
        "if os.environ.get('BREAK_TASK'): raise SystemExit('broken task')")})
    command = [sys.executable, "-m", "ratchet.cli", "run", "--plain", "--parallel", "3",
               "--max-experiments", "10"]
    result = subprocess.run(command, cwd=repo, capture_output=True, text=True, timeout=60,
                            env={**os.environ, "BREAK_TASK": "1"})
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        result.stderr.strip()]  # one line
    assert "the unmodified baseline failed (crash: command phase exited with code 1)" \
        in result.stderr
    experiments = open_study(repo).experiments()
    assert experiments[0].status == "crash"
    assert all(not e.finished for e in experiments[1:])  # will run again once fixed

    fixed = subprocess.run(command, cwd=repo, capture_output=True, text=True, timeout=120)
    assert fixed.returncode == 0, fixed.stderr
    assert "the last baseline failed: measuring it again" in fixed.stdout
    experiments = open_study(repo).experiments()
    baselines = [e for e in experiments if e.kind == "baseline"]
    assert [b.status for b in baselines] == ["crash", "keep"]
    assert all(e.finished for e in experiments) and len(experiments) == 10


def test_ctrl_c_twice_kills_the_running_evaluation_which_reruns_on_resume(
        make_repo: Callable[..., Path]) -> None:
    repo = make_repo("quadratic", replace={"objective.py": (
        SLOW_OBJECTIVE[0], "SEED = -1\nimport time\ntime.sleep(3)")})
    driver = _driver(repo, "--study", "cc", "--proposer", "random", "--max-experiments", "4")
    _wait_for_lines(driver, 1, timeout=90)  # the baseline, 3 runs
    time.sleep(1.0)  # experiment 1 is now sleeping in its evaluation
    driver.send_signal(signal.SIGINT)
    time.sleep(0.3)
    driver.send_signal(signal.SIGINT)
    out, _ = driver.communicate(timeout=30)
    assert driver.returncode == 0, out
    assert "killing the running evaluations" in out
    interrupted = open_study(repo, "cc").experiment(1)
    assert interrupted.status == "pending" and interrupted.values == []

    resumed = _driver(repo, "--study", "cc", "--max-experiments", "4")
    out, _ = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, out
    assert "experiment 1 was interrupted" in out
    assert [e.status in ("keep", "discard") for e in open_study(repo, "cc").experiments()] \
        == [True] * 4


def test_time_budget_stops_starting_experiments(make_repo: Callable[..., Path]) -> None:
    repo = make_repo("quadratic", replace={"objective.py": SLOW_OBJECTIVE})
    study = open_study(repo, "time", proposer="random", seed=0)
    start = time.monotonic()
    progress = study.run(max_time_s=5.0, max_experiments=100)
    assert progress.stop_reason == "time budget reached"
    assert time.monotonic() - start < 5.0 + 2.0  # at most the evaluation in flight runs on
    assert 1 < len(study.experiments()) < 12  # the baseline's 3 runs, then a few proposals
