"""Evaluations on a Ray cluster started inside the test, on 127.0.0.1 only: a head node with no
CPUs and worker nodes of one CPU each. A node killed mid-run: its evaluation runs elsewhere
and is recorded once."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import commit_all

from ratchet.execute.process import process_tree
from ratchet.proposers.base import Proposal, ProposalContext, Proposer
from ratchet.study import open_study

ray = pytest.importorskip("ray") if os.environ.get("CI") != "true" else __import__("ray")
RAY = Path(sys.executable).parent / "ray"
ENV = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_health_check_period_ms": "500",
       "RAY_health_check_failure_threshold": "2", "RAY_USAGE_STATS_ENABLED": "0"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _raylets() -> set[int]:
    out = subprocess.run(["pgrep", "-f", "ray/raylet/raylet"], capture_output=True, text=True)
    return {int(pid) for pid in out.stdout.split()}


class Cluster:
    def __init__(self) -> None:
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"

    def start_head(self) -> None:
        self._ray("start", "--head", "--node-ip-address=127.0.0.1", f"--port={self.port}",
                  "--num-cpus=0", "--include-dashboard=false", "--disable-usage-stats")

    def add_node(self) -> int:
        """A worker node with one CPU; its raylet's pid."""
        before = _raylets()
        self._ray("start", f"--address={self.address}", "--node-ip-address=127.0.0.1",
                  "--num-cpus=1")
        (raylet,) = _raylets() - before
        return raylet

    def stop(self) -> None:
        subprocess.run([str(RAY), "stop", "--force"], env=ENV, capture_output=True)

    def _ray(self, *args: str) -> None:
        out = subprocess.run([str(RAY), *args], env=ENV, capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == 0, out.stdout + out.stderr


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    if _raylets():
        pytest.skip("a Ray cluster already runs on this machine")
    cluster = Cluster()
    try:
        cluster.start_head()
        yield cluster
    finally:
        cluster.stop()


def test_a_node_lost_mid_run_reruns_the_evaluation_elsewhere_recorded_once(
        cluster: Cluster, make_repo: Callable[..., Path], tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    repo = make_repo("quadratic", replace={"objective.py": (
        "SEED = -1  # -1: a new seed every run, as real training has; otherwise a fixed seed",
        "SEED = -1\nimport os, time\n"
        f"open(os.path.join({str(marks)!r}, os.environ['RATCHET_EXPERIMENT'] + '-' + "
        "str(os.getpid())), 'w').close()\ntime.sleep(3)")})
    with open(repo / "ratchet.toml", "a") as f:  # the marks live outside the sandbox's view
        f.write('\n[sandbox]\nmode = "none"\n')
    commit_all(repo)
    first_node = cluster.add_node()
    driver = subprocess.Popen(
        [sys.executable, "-m", "ratchet.cli", "run", "--plain", "--study", "r", "--proposer",
         "random", "--max-experiments", "2", "--executor", "ray", "--address", cluster.address],
        cwd=repo, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while not list(marks.iterdir()):  # the baseline's first run is on the only node
            assert driver.poll() is None and time.monotonic() < deadline, driver.communicate()
            time.sleep(0.05)
        for pid in process_tree(first_node):  # the node and all it runs, mid-run
            os.kill(pid, signal.SIGKILL)
        cluster.add_node()
        out, _ = driver.communicate(timeout=240)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 0, out
    experiments = open_study(repo, "r").experiments()
    assert [e.number for e in experiments] == [0, 1] and all(e.finished for e in experiments)
    baseline = experiments[0]
    assert baseline.status == "keep" and len(baseline.values) == 3, baseline
    started = sorted(p.name for p in marks.iterdir())
    # Four starts of the baseline for its three runs: the one on the lost node ran again.
    assert sum(name.startswith("0-") for name in started) == 4, started
    assert Path(baseline.log_path).read_text().count("trained:") >= 1


class GivenValues(Proposer):
    """Proposes the knob A at the given values, in order."""

    name = "given"

    def __init__(self, values: list[float]) -> None:
        self.values = list(values)

    def propose(self, context: ProposalContext) -> Proposal | None:
        return Proposal(f"A={self.values[0]}", params={"A": self.values.pop(0)}) \
            if self.values else None


def test_a_hopeless_run_on_a_worker_is_stopped_there(cluster: Cluster, tmp_path: Path) -> None:
    from test_pruning import RATCHET_TOML, TASK_PY  # the scripted curves
    repo = tmp_path / "curves"
    repo.mkdir()
    (repo / "task.py").write_text(TASK_PY)
    (repo / "ratchet.toml").write_text(RATCHET_TOML)
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    commit_all(repo)
    cluster.add_node()
    study = open_study(repo, "p", proposer="random", seed=0)
    study.run(proposer=GivenValues([0.95, 0.3, 0.9]), executor="ray", address=cluster.address)
    baseline, early, better, hopeless = study.experiments()
    assert (early.status, better.status) == ("discard", "keep")
    assert hopeless.status == "pruned", hopeless.reason
    assert hopeless.reason and hopeless.reason.startswith("pruned at step 1: loss 1.9")
    log = Path(hopeless.log_path or "").read_text()  # the worker's log, brought back
    assert "ratchet-step: 1 " in log and "ratchet-step: 4 " not in log
    assert hopeless.wall_s < 5


def test_no_cluster_at_the_address_is_a_one_line_usage_error(
        make_repo: Callable[..., Path]) -> None:
    repo = make_repo("quadratic")
    out = subprocess.run(
        [sys.executable, "-m", "ratchet.cli", "run", "--plain", "--max-experiments", "1",
         "--executor", "ray", "--address", f"127.0.0.1:{_free_port()}"],
        cwd=repo, env={**ENV, "RAY_gcs_rpc_server_connect_timeout_s": "2"},
        capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "cannot connect to a Ray cluster" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert open_study(repo).experiments() == []  # nothing was run
