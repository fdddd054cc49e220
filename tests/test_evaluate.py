import os
import shutil
import time
from pathlib import Path

import pytest

from ratchet.config import parse_config
from ratchet.execute.evaluate import (
    Evaluator,
    MetricError,
    ProcessRunner,
    parse_metric,
    read_metric_file,
    scrub_env,
)
from ratchet.execute.sandbox import Launcher, launcher_for


def task(tmp_path: Path, **task_keys: object) -> Evaluator:
    data = {"task": {"editable": ["run.py"], "command": "python run.py", **task_keys},
            "metric": {"name": "score"}}
    return Evaluator(parse_config(data, tmp_path), base_env=dict(os.environ))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    return state != "Z"


def test_timeout_kills_the_whole_tree_even_a_grandchild_ignoring_sigterm(tmp_path: Path) -> None:
    (tmp_path / "run.py").write_text(
        "import os, signal, subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', "
        "'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)'])\n"
        "open('grandchild.pid', 'w').write(str(child.pid))\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "time.sleep(600)\n")
    evaluator = task(tmp_path, timeout="1.5s")
    start = time.monotonic()
    result = evaluator.evaluate(tmp_path, tmp_path / "log.txt", ProcessRunner())
    assert result.status == "timeout"
    assert "timed out" in (result.reason or "")
    assert time.monotonic() - start < 10
    grandchild = int((tmp_path / "grandchild.pid").read_text())
    deadline = time.monotonic() + 5
    while alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(grandchild)


def test_background_children_do_not_outlive_a_finished_run(tmp_path: Path) -> None:
    (tmp_path / "run.py").write_text(
        "import subprocess, sys\n"
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        "open('orphan.pid', 'w').write(str(p.pid))\n"
        "print('score: 1.0')\n")
    result = task(tmp_path).evaluate(tmp_path, tmp_path / "log.txt", ProcessRunner())
    assert result.status == "ok" and result.value == 1.0
    orphan = int((tmp_path / "orphan.pid").read_text())
    time.sleep(0.2)
    assert not alive(orphan)


def test_records_wall_cpu_and_peak_memory(tmp_path: Path, launcher: Launcher) -> None:
    (tmp_path / "run.py").write_text(
        "import time\nblock = bytearray(200 * 1024 * 1024)\n"
        "for i in range(0, len(block), 4096): block[i] = 1\n"
        "end = time.process_time() + 1.0\n"
        "while time.process_time() < end: pass\n"
        "print('score: 2.5')\nprint('memory_gb: 0.2')\n")
    data = {"task": {"editable": ["run.py"], "command": "python run.py"},
            "metric": {"name": "score", "secondary": ["memory_gb"]}}
    result = Evaluator(parse_config(data, tmp_path)).evaluate(
        tmp_path, tmp_path / "log.txt", ProcessRunner(launcher))
    assert result.status == "ok" and result.value == 2.5
    assert result.secondary == {"memory_gb": 0.2}
    assert result.peak_mem_mb > 190
    # a second of CPU, seen through the sandbox's PID namespace too
    assert result.cpu_s > 0.7 and result.wall_s >= result.cpu_s * 0.9


TWO_HUNGRY_CHILDREN = (
    "import subprocess, sys\n"
    "code = 'b = bytearray({mb} * 2**20)\\nfor i in range(0, len(b), 4096): b[i] = 1\\n"
    "import time; time.sleep({sleep})'\n"
    "children = [subprocess.Popen([sys.executable, '-c', code]) for _ in range(2)]\n"
    "for c in children: c.wait()\n"
    "print('score: 1')\n")


@pytest.fixture(params=["none", "bwrap"])
def launcher(request: pytest.FixtureRequest) -> Launcher:
    if request.param == "bwrap" and shutil.which("bwrap") is None \
            and os.environ.get("CI") != "true":
        pytest.skip("bubblewrap is not installed")
    return launcher_for(request.param)


def test_the_memory_limit_holds_for_the_whole_process_tree(tmp_path: Path,
                                                           launcher: Launcher) -> None:
    # Each child stays under the limit; together they pass it. A per-process limit
    # (ulimit -v) lets this through; the watchdog over the tree kills it.
    (tmp_path / "run.py").write_text(TWO_HUNGRY_CHILDREN.format(mb=250, sleep=30))
    start = time.monotonic()
    result = task(tmp_path, memory_limit="400M").evaluate(
        tmp_path, tmp_path / "log.txt", ProcessRunner(launcher))
    assert result.status == "crash"
    assert result.reason.startswith("command phase killed: its processes together used more "
                                    "than the memory limit of 400M")
    assert time.monotonic() - start < 20
    assert result.peak_mem_mb > 400


def test_peak_memory_is_measured_over_the_whole_tree(tmp_path: Path,
                                                    launcher: Launcher) -> None:
    (tmp_path / "run.py").write_text(TWO_HUNGRY_CHILDREN.format(mb=150, sleep=1))
    result = task(tmp_path).evaluate(tmp_path, tmp_path / "log.txt", ProcessRunner(launcher))
    assert result.status == "ok"
    assert result.peak_mem_mb > 290  # both children at once, not the largest one


def test_the_enforced_budget_scales_with_the_horizon(tmp_path: Path) -> None:
    (tmp_path / "run.py").write_text(
        "import os, time\nbudget = float(os.environ['RATCHET_TIME_BUDGET'])\n"
        "print('budget', budget)\ntime.sleep(budget + 0.5)\nprint('score: 1')\n")
    evaluator = task(tmp_path, timeout="20s", budget="1s", budget_grace="1s")
    at_one = evaluator.evaluate(tmp_path, tmp_path / "one.log", ProcessRunner())
    assert at_one.status == "ok" and "budget 1.0" in (tmp_path / "one.log").read_text()
    at_two = evaluator.evaluate(tmp_path, tmp_path / "two.log", ProcessRunner(), horizon=2)
    assert at_two.status == "ok" and "budget 2.0" in (tmp_path / "two.log").read_text()
    (tmp_path / "run.py").write_text("import time\ntime.sleep(4)\nprint('score: 1')\n")
    late = evaluator.evaluate(tmp_path, tmp_path / "late.log", ProcessRunner(), horizon=1)
    assert late.status == "timeout" and late.reason.startswith("over budget")
    assert late.wall_s < 3.5


def test_a_result_file_behind_a_planted_link_is_void(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "result.json").write_text('{"score": 1}')
    work = tmp_path / "work"
    work.mkdir()
    (work / "run.py").write_text(f"import os\nos.symlink({str(outside)!r}, 'out')\n")
    data = {"task": {"editable": ["run.py"], "command": "python run.py",
                     "evaluate": "true"}, "metric": {"name": "score", "file": "out/result.json"}}
    result = Evaluator(parse_config(data, work), base_env=dict(os.environ)).evaluate(
        work, tmp_path / "log.txt", ProcessRunner())
    # The evaluate phase runs in the committed tree: the planted link is not there.
    assert result.status == "crash" and "was not written" in result.reason
    assert result.value is None and (outside / "result.json").exists()


def test_secrets_never_reach_the_evaluation(tmp_path: Path) -> None:
    (tmp_path / "run.py").write_text(
        "import os\nprint('env:', sorted(k for k in os.environ if k.startswith('MY_')))\n"
        "print('score: 1')\n")
    env = {**os.environ, "MY_API_KEY": "sk-1", "MY_TOKEN": "t", "MY_DB_PASSWORD": "p",
           "MY_SECRET_X": "s", "MY_PLAIN": "ok", "MY_WANDB_KEY": "w"}
    data = {"task": {"editable": ["run.py"], "command": "python run.py",
                     "env_allow": ["MY_WANDB_KEY"]}, "metric": {"name": "score"}}
    evaluator = Evaluator(parse_config(data, tmp_path), base_env=env)
    evaluator.evaluate(tmp_path, tmp_path / "log.txt", ProcessRunner())
    log = (tmp_path / "log.txt").read_text()
    assert "env: ['MY_PLAIN', 'MY_WANDB_KEY']" in log
    assert "sk-1" not in log


def test_scrub_env_is_case_insensitive_and_allows_by_pattern() -> None:
    env = {"openai_api_key": "x", "HF_TOKEN": "y", "PATH": "/bin", "AWS_SECRET": "z"}
    assert scrub_env(env) == {"PATH": "/bin"}
    assert scrub_env(env, ["HF_*"]) == {"PATH": "/bin", "HF_TOKEN": "y"}


@pytest.mark.parametrize(("output", "problem"), [
    ("nothing here\n", "no 'score' value found"),
    ("score: abc\n", "not a number"),
    ("score: nan\n", "is NaN"),
    ("score: inf\n", "is infinite"),
    ("score: -inf\n", "is infinite"),
])
def test_unusable_metrics_are_errors_with_the_reason(output: str, problem: str) -> None:
    with pytest.raises(MetricError, match=problem):
        parse_metric(output, "score")


def test_the_last_metric_line_counts() -> None:
    assert parse_metric("score: 1\nstep 2\nscore: 0.5\n", "score") == 0.5
    assert parse_metric("val_bpb = 0.99\n", "val_bpb") == 0.99
    assert parse_metric("final 7 points", "x", r"final (?P<value>\d+)") == 7.0


def test_metric_from_a_json_file(tmp_path: Path) -> None:
    (tmp_path / "r.json").write_text('{"acc": 0.9}')
    assert read_metric_file(tmp_path / "r.json", "acc") == 0.9
    (tmp_path / "r.json").write_text('{"acc": "NaN"}')
    with pytest.raises(MetricError, match="NaN"):
        read_metric_file(tmp_path / "r.json", "acc")
    with pytest.raises(MetricError, match="was not written"):
        read_metric_file(tmp_path / "missing.json", "acc")


def test_a_nonzero_exit_is_a_crash_and_a_missing_metric_too(tmp_path: Path) -> None:
    (tmp_path / "run.py").write_text("raise SystemExit(3)\n")
    result = task(tmp_path).evaluate(tmp_path, tmp_path / "log.txt", ProcessRunner())
    assert (result.status, result.reason) == ("crash", "command phase exited with code 3")
    (tmp_path / "run.py").write_text("print('score: nan')\n")
    result = task(tmp_path).evaluate(tmp_path, tmp_path / "log.txt", ProcessRunner())
    assert (result.status, result.reason) == ("crash", "score is NaN")


def test_cancel_stops_a_running_evaluation(tmp_path: Path) -> None:
    import threading

    (tmp_path / "run.py").write_text("import time\ntime.sleep(600)\n")
    runner = ProcessRunner()
    threading.Timer(0.5, runner.cancel).start()
    result = task(tmp_path).evaluate(tmp_path, tmp_path / "log.txt", runner)
    assert result.status == "interrupted"


def test_only_the_protected_phase_can_void_a_run(tmp_path: Path) -> None:
    (tmp_path / "run.py").write_text("print('ratchet-void: I refuse')\nprint('score: 1')\n")
    (tmp_path / "check.py").write_text("print('ratchet-void: model is not causal')\n")
    data = {"task": {"editable": ["run.py"], "command": "python run.py"},
            "metric": {"name": "score"}}
    plain = Evaluator(parse_config(data, tmp_path)).evaluate(
        tmp_path, tmp_path / "a.log", ProcessRunner())
    assert plain.status == "ok" and plain.value == 1.0  # edited code cannot void itself
    data["task"]["evaluate"] = "python check.py"
    refused = Evaluator(parse_config(data, tmp_path)).evaluate(
        tmp_path, tmp_path / "b.log", ProcessRunner())
    assert refused.status == "void"
    assert refused.reason == "the evaluator refused to score it: model is not causal"


@pytest.mark.parametrize("reads, names", [("model.pkl", True), ("other.pkl", False)])
def test_an_evaluator_that_reads_what_the_command_wrote_is_told_to_use_predict(
        tmp_path: Path, reads: str, names: bool) -> None:
    (tmp_path / "train.py").write_text("open('model.pkl', 'w').write('weights')\n")
    (tmp_path / "evaluate.py").write_text(f"print('score:', len(open({reads!r}).read()))\n")
    data = {"task": {"editable": ["train.py"], "protected": ["evaluate.py"],
                     "command": "python train.py", "evaluate": "python evaluate.py"},
            "metric": {"name": "score"}}
    result = Evaluator(parse_config(data, tmp_path), base_env=dict(os.environ)).evaluate(
        tmp_path, tmp_path / "log.txt", ProcessRunner())
    assert result.status == "crash" and result.value is None
    if names:  # the committed tree has no model.pkl: the evaluator never sees it
        assert result.reason.startswith("the evaluate phase reads model.pkl, which the command "
                                        "phase wrote") and "[task] predict" in result.reason
    else:
        assert result.reason == "evaluate phase exited with code 1"
