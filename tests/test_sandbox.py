"""The sandbox, attacked the way an adversarial proposer would: code added to an editable file
tries to read the answer key, copy data out, reach the network, write into the user's
repository, outlive its run, wipe the store, and buy compute. Each attack must fail under bwrap;
the same attacks under `mode = "none"` succeed, which shows the checks can fail."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import commit_all, git
from test_integrity import edit, patch_from

from ratchet.cli import main
from ratchet.execute.process import process_tree
from ratchet.store.database import Store, default_url
from ratchet.study import open_study

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None and os.environ.get("CI") != "true",
                                reason="bubblewrap is not installed (scripts/test.sh installs it)")

GREEDY = ('rule = "noise-aware"\nbaseline_runs = 3', 'rule = "greedy"\nbaseline_runs = 1')

ATTACKS = '''
import json as _json, os as _os, socket as _socket, sqlite3 as _sqlite3, subprocess as _sub
import sys as _sys
from pathlib import Path as _Path

def _attack(name, action):
    try:
        print(f"attack {{name}}: {{action()}}", flush=True)
    except Exception as error:
        print(f"attack {{name}}: failed {{type(error).__name__}}", flush=True)

def _answer_key():
    target = _json.load(open("target.json"))["validation"]
    global X, Y, DEPTH, ACTIVATION
    X, Y, DEPTH, ACTIVATION = target["x"], target["y"], target["depth"], "gelu"
    return "read"

def _copy_out():
    _Path({stolen!r}).write_text(open("target.json").read())
    return "copied"

def _connect():
    _socket.create_connection(("127.0.0.1", {port}), timeout=2).sendall(b"hello")
    return "connected"

def _repository():
    repo = _Path.cwd().parents[3]
    (repo / "pwned.txt").write_text("x")
    (repo / ".git" / "refs" / "heads" / "evil").write_text(open(repo / ".git" / "HEAD").read())
    return "written"

def _daemon():
    _sub.Popen([_sys.executable, "-c", "import time; time.sleep(120)", {token!r}],
               start_new_session=True, stdout=_sub.DEVNULL, stderr=_sub.DEVNULL)
    return "started"

def _store():
    for found in _Path.cwd().parents[3].rglob("ratchet.db"):
        with _sqlite3.connect(found) as db:
            db.execute("DELETE FROM ratchet_experiments")
            db.execute("DELETE FROM ratchet_studies")
        return "wiped"
    return "no store found"

for _name, _action in [("answer-key", _answer_key), ("copy-out", _copy_out),
                       ("network", _connect), ("repository", _repository),
                       ("daemon", _daemon), ("store", _store)]:
    _attack(_name, _action)

'''


class Listener:
    """A TCP listener of the test's own on 127.0.0.1 that records every connection."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.2)
        self.port = self.server.getsockname()[1]
        self.connections = 0
        self.running = True
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while self.running:
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.running = False
        self.thread.join()
        self.server.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.close()


def processes_with(token: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if token.encode() in cmdline:
                found.append(int(entry))
    return found


def attack_patch(repo: Path, stolen: Path, port: int, token: str) -> str:
    code = ATTACKS.format(stolen=str(stolen), port=port, token=token)
    return patch_from(repo, edit("objective.py", "rng = random.Random",
                                 code + "rng = random.Random"))


def with_mode(repo: Path, mode: str) -> None:
    toml = repo / "ratchet.toml"
    toml.write_text(toml.read_text() + f'\n[sandbox]\nmode = "{mode}"\n')
    commit_all(repo, f"sandbox {mode}")


def test_every_attack_fails_under_the_sandbox(make_repo: Callable[..., Path], tmp_path: Path,
                                               listener: Listener) -> None:
    repo = make_repo("quadratic", replace={"ratchet.toml": GREEDY})
    stolen, token = tmp_path / "stolen.json", f"ratchet-daemon-{uuid.uuid4()}"
    study = open_study(repo, "attacks", proposer="random", seed=0)
    refs_before = set(git(repo, "for-each-ref", "--format=%(refname)").split())
    experiment = study.try_patch(attack_patch(repo, stolen, listener.port, token), "attacks")
    log = Path(experiment.log_path).read_text()

    assert "attack answer-key: failed PermissionError" in log
    assert experiment.status != "keep" and experiment.value != 0.0
    assert "attack copy-out: failed" in log and not stolen.exists()
    assert "attack network: failed" in log and listener.connections == 0
    assert not (repo / "pwned.txt").exists()
    refs_after = set(git(repo, "for-each-ref", "--format=%(refname)").split())
    assert refs_after - refs_before == {"refs/heads/ratchet/attacks", "refs/ratchet/attacks/1"}
    assert processes_with(token) == []
    assert "attack store: no store found" in log
    reopened = open_study(repo, "attacks", create=False)
    assert [e.number for e in reopened.experiments()] == [0, 1]
    assert reopened.best().number == 0


def test_the_same_attacks_succeed_without_the_sandbox(make_repo: Callable[..., Path],
                                                      tmp_path: Path, listener: Listener,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """Proof that the checks above can fail: with the sandbox off, the attacks work."""
    repo = make_repo("quadratic", replace={"ratchet.toml": GREEDY})
    with_mode(repo, "none")
    stolen, token = tmp_path / "stolen.json", f"ratchet-daemon-{uuid.uuid4()}"
    patch = attack_patch(repo, stolen, listener.port, token).replace(
        '("store", _store)', '("store", lambda: "skipped")')
    (repo / "attack.diff").write_text(patch)
    try:
        assert main(["try", str(repo / "attack.diff"), "--plain", "--repo", str(repo)]) == 0
        out = capsys.readouterr().out
        assert "warning: sandbox is off" in out
        assert "keep" in out.splitlines()[-1]  # the answer key bought a perfect score
        assert stolen.exists() and (repo / "pwned.txt").exists()
        assert listener.connections == 1
        assert processes_with(token)
    finally:
        for pid in processes_with(token):
            os.kill(pid, signal.SIGKILL)


def test_a_killed_driver_leaves_nothing_running(make_repo: Callable[..., Path]) -> None:
    repo = make_repo("quadratic", replace={"ratchet.toml": GREEDY})
    token = f"ratchet-daemon-{uuid.uuid4()}"
    hang = (f"import subprocess as _s, sys as _y, time as _t\n"
            f"_s.Popen([_y.executable, '-c', 'import time; time.sleep(120)', {token!r}], "
            f"start_new_session=True)\n_t.sleep(120)\n")
    (repo / "hang.diff").write_text(patch_from(repo, edit("objective.py", "rng = random.Random",
                                                          hang + "rng = random.Random")))
    driver = subprocess.Popen([sys.executable, "-m", "ratchet.cli", "try", "hang.diff",
                               "--plain"], cwd=repo, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not processes_with(token) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert processes_with(token), "the attack never started"
    driver.kill()
    driver.wait()
    deadline = time.monotonic() + 10
    while processes_with(token) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_with(token) == []


def test_a_run_past_its_compute_budget_is_killed_and_never_kept(
        make_repo: Callable[..., Path]) -> None:
    repo = make_repo("quadratic", replace={
        "ratchet.toml": ('timeout = "30s"',
                         'timeout = "30s"\nbudget = "1s"\nbudget_grace = "2s"'),
        "objective.py": ("X = 0.0", "X = 0.0\nimport os\n"
                         "print('budget', os.environ['RATCHET_TIME_BUDGET'])")})
    study = open_study(repo, "budget", proposer="random", seed=0)
    patch = patch_from(repo, edit("objective.py", "X = 0.0\n", "X = 1.5\nimport time\n"
                                  "time.sleep(10)\n"))
    start = time.monotonic()
    slow = study.try_patch(patch, "better, but slower than the budget")
    assert slow.status == "timeout" and slow.reason.startswith("over budget")
    assert time.monotonic() - start < 25
    assert study.best().number == 0
    assert "budget 1\n" in Path(study.experiments()[0].log_path).read_text()


def test_a_missing_bwrap_is_a_one_line_error_before_the_baseline(
        make_repo: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    repo = make_repo("quadratic")
    empty = tmp_path / "bin"
    empty.mkdir()
    (empty / "git").symlink_to(shutil.which("git"))
    monkeypatch.setenv("PATH", str(empty))
    assert main(["run", "--max-experiments", "2", "--plain", "--repo", str(repo)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "bubblewrap (`bwrap`) is not installed" in err and "apt-get install bubblewrap" in err
    assert open_study(repo, create=False).experiments() == []


def test_bwrap_without_namespaces_is_a_one_line_error_naming_the_cause(
        make_repo: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    repo = make_repo("quadratic")
    fake = tmp_path / "bin" / "bwrap"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace, likely "
                    "because the kernel does not allow non-privileged user namespaces.' >&2\n"
                    "exit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    assert main(["run", "--max-experiments", "2", "--plain", "--repo", str(repo)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "bwrap cannot create its namespaces here" in err
    assert "unprivileged user namespaces" in err and 'mode = "none"' in err


def test_data_named_read_only_is_placed_in_the_work_tree_and_its_hidden_files_unreadable(
        make_repo: Callable[..., Path]) -> None:
    repo = make_repo("quadratic", replace={"ratchet.toml": GREEDY})
    data = repo / "bigdata"  # untracked, as a large dataset beside the code would be
    (data / "val").mkdir(parents=True)
    (data / "train.txt").write_text("1.5\n")
    (data / "val" / "answers.txt").write_text("secret\n")
    toml = repo / "ratchet.toml"
    toml.write_text(toml.read_text().replace('hidden = ["target.json"]',
                                             'hidden = ["target.json", "bigdata/val/*"]')
                    + '\n[sandbox]\nread_only = ["bigdata"]\n')
    (repo / ".gitignore").write_text("bigdata/\n")
    commit_all(repo)
    reader = ("X = float(open('bigdata/train.txt').read())\n"
              "try:\n    print('answers:', open('bigdata/val/answers.txt').read())\n"
              "except OSError as e:\n    print('answers:', type(e).__name__)\n"
              "try:\n    open('bigdata/new.txt', 'w')\nexcept OSError as e:\n"
              "    print('write:', type(e).__name__)\n")
    study = open_study(repo, "data", proposer="random", seed=0)
    experiment = study.try_patch(patch_from(repo, edit("objective.py", "Y = 0.0\n",
                                                       "Y = 0.0\n" + reader)), "read the data")
    log = Path(experiment.log_path).read_text()
    assert "answers: PermissionError" in log and "write: OSError" in log
    assert experiment.status == "keep"  # X = 1.5 came from the training data
    assert not (data / "new.txt").exists()


def test_config_errors_of_the_sandbox(make_repo: Callable[..., Path],
                                      capsys: pytest.CaptureFixture[str]) -> None:
    repo = make_repo("quadratic")
    toml = repo / "ratchet.toml"
    original = toml.read_text()
    for extra, problem in [
        ('\n[sandbox]\nmode = "docker"\n', "[sandbox].mode: must be 'bwrap' or 'none'"),
        ('\n[sandbox]\nnetwork = "yes"\n', "[sandbox].network: must be true or false"),
        ('\n[sandbox]\nread_only = ["nowhere"]\n',
         "[sandbox].read_only: 'nowhere' does not exist"),
    ]:
        toml.write_text(original + extra)
        assert main(["run", "--max-experiments", "1", "--plain", "--repo", str(repo)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and problem in err, err
        store = Store(default_url(repo))
        assert store.studies() == []  # a mistake leaves no study behind
        store.close()
    toml.write_text(original.replace('timeout = "30s"', 'timeout = "30s"\nbudget = "30s"'))
    assert main(["run", "--max-experiments", "1", "--plain", "--repo", str(repo)]) == 2
    assert "must be shorter than [task].timeout" in capsys.readouterr().err


@pytest.mark.skipif(not Path("/dev/nvidia0").exists(), reason="no GPU on this machine")
def test_gpus_are_passed_through(tmp_path: Path) -> None:
    from ratchet.execute.process import ProcessRunner
    from ratchet.execute.sandbox import BwrapLauncher, Sandbox

    log = tmp_path / "log"
    outcome = ProcessRunner(BwrapLauncher()).run("ls /dev/nvidia0", Sandbox(workdir=tmp_path),
                                                 dict(os.environ), 30, log)
    assert outcome.returncode == 0, log.read_text()


def test_the_process_tree_includes_grandchildren() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import subprocess, sys, time; "
                              "subprocess.Popen([sys.executable, '-c', 'import time; "
                              "time.sleep(30)']); time.sleep(30)"])
    try:
        deadline = time.monotonic() + 10
        while len(process_tree(child.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(process_tree(child.pid)) == 2
    finally:
        for pid in reversed(process_tree(child.pid)):
            os.kill(pid, signal.SIGKILL)
        child.wait()



def test_the_predict_process_runs_the_model_blind_and_cannot_forge_the_metric(
        tmp_path: Path) -> None:
    from ratchet.config import parse_config
    from ratchet.execute.evaluate import Evaluator
    from ratchet.execute.process import ProcessRunner
    from ratchet.execute.sandbox import BwrapLauncher

    work = tmp_path / "work"
    work.mkdir()
    (work / "answers.txt").write_text("6\n")
    (work / "model.py").write_text(  # edited code, imported by the model process
        "import sys\nprint('score: -100')\n"
        "for action in (lambda: open('answers.txt').read(), lambda: open('x', 'w')):\n"
        "    try:\n        action()\n        print('model: allowed', file=sys.stderr)\n"
        "    except OSError as e:\n        print('model:', type(e).__name__, file=sys.stderr)\n"
        "def predict(x):\n    return 2 * x\n")
    (work / "predict.py").write_text(  # replies on the pipe; the model's prints to its log
        "import os, sys\nreplies = os.fdopen(os.dup(1), 'w')\nos.dup2(2, 1)\nimport model\n"
        "for line in sys.stdin:\n"
        "    print(model.predict(float(line)), file=replies, flush=True)\n")
    (work / "evaluate.py").write_text(
        "import os\nw, r = (int(fd) for fd in os.environ['RATCHET_PREDICT_FDS'].split(','))\n"
        "to_model, from_model = os.fdopen(w, 'w'), os.fdopen(r)\n"
        "to_model.write('3\\n'); to_model.flush()\n"
        "answer = float(open('answers.txt').read())\n"
        "print('score:', abs(float(from_model.readline()) - answer))\n")
    data = {"task": {"editable": ["model.py"], "hidden": ["answers.txt"],
                     "command": "python -c 'import model'", "evaluate": "python evaluate.py",
                     "predict": "python predict.py"}, "metric": {"name": "score"}}
    evaluator = Evaluator(parse_config(data, work), base_env=dict(os.environ))
    log = tmp_path / "00001.log"
    result = evaluator.evaluate(work, log, ProcessRunner(BwrapLauncher()))
    assert result.status == "ok" and result.value == 0.0  # 2 * 3 == 6, not the printed -100
    model_log = (tmp_path / "00001.predict.log").read_text()
    assert "model: PermissionError\nmodel: OSError\n" in model_log  # blind and read-only
    assert "score: -100" in model_log and "score: -100" not in log.read_text().split(
        "==> ratchet: evaluate")[1]
    assert "model: PermissionError\nmodel: allowed\n" in log.read_text()  # the command phase


def test_code_the_command_phase_writes_never_runs_in_the_protected_phase(
        make_repo: Callable[..., Path]) -> None:
    """A `json.py` beside evaluate.py would be imported instead of the standard library's and
    could print any loss, bytecode in __pycache__ would run instead of evaluate.py, a tracked
    module rewritten at run time would be imported: none of it reaches the evaluate phase,
    which runs in a copy of the committed tree."""
    repo = make_repo("quadratic", replace={"ratchet.toml": GREEDY})
    (repo / "helper.py").write_text("VALUE = 1\n")
    commit_all(repo, "a helper module, neither editable nor protected")
    study = open_study(repo, "plant", proposer="random", seed=0)
    plant = ('open("json.py", "w").write("import sys\\nprint(\\"loss: 0.000000\\")\\n'
             'sys.exit(0)\\n")\nimport os\nos.makedirs("__pycache__", exist_ok=True)\n'
             'open("__pycache__/evaluate.cpython-311.pyc", "wb").write(b"forged")\n'
             'os.mkfifo("hang.py")\n')  # a FIFO: reading it to hash it would block forever
    shadow = study.try_patch(patch_from(repo, edit("objective.py", "rng = random.Random",
                                                   plant + "rng = random.Random")), "shadow json")
    assert shadow.value == pytest.approx(3.84) and shadow.status == "discard"
    rewrite = ('open("helper.py", "w").write("print(\\"loss: 0.0\\")\\n")\n'
               'open("evaluate.py", "a").write("\\nprint(\\"loss: 0.0\\")\\n")\n')
    changed = study.try_patch(patch_from(repo, edit("objective.py", "rng = random.Random",
                                                    rewrite + "rng = random.Random")),
                              "rewrite a helper")
    assert changed.status == "void"  # evaluate.py is protected: its change voids the run
    assert changed.reason == "protected files changed during the command phase: evaluate.py"
