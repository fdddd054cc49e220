"""The sandbox's third round of attacks (issue 22): edited code looks for an answer key wherever
the machine holds a copy, writes kernel settings, reads /etc/shadow, forks a thousand processes,
hides memory in tmpfs, floods its output, fills the disk. Each attack runs under bwrap, where it
must fail or end the run with its reason, and without a sandbox (or with the one defence turned
off), where it succeeds: that shows each check can fail."""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import commit_all, git
from test_integrity import edit, patch_from

from ratchet.config import parse_config
from ratchet.execute import process as process_module
from ratchet.execute import sandbox as sandbox_module
from ratchet.execute.evaluate import PREDICT_CPU, Evaluator, derived_predict_budget
from ratchet.execute.process import ProcessRunner
from ratchet.execute.sandbox import BwrapLauncher, Launcher, NoLauncher, Sandbox
from ratchet.study import open_study

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None and os.environ.get("CI") != "true",
                                reason="bubblewrap is not installed (scripts/test.sh installs it)")

ANSWER = "the-answer-" + uuid.uuid4().hex


def run(work: Path, code: str, launcher: Launcher, **sandbox: object) -> tuple[str, object]:
    """`code` as the command phase of a one-phase task; its output and the run's result."""
    (work / "run.py").write_text(code + "\nprint('score: 1')\n")
    data: dict = {"task": {"editable": ["run.py"], "command": "python run.py", "timeout": "60s"},
                  "metric": {"name": "score"}}
    memory = sandbox.pop("memory_limit", None)
    if memory:
        data["task"]["memory_limit"] = memory
    if sandbox:
        data["sandbox"] = sandbox
    log = work.parent / f"{work.name}.log"
    result = Evaluator(parse_config(data, work), base_env=dict(os.environ)).evaluate(
        work, log, ProcessRunner(launcher))
    return log.read_text(errors="replace"), result


@pytest.fixture
def work(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


def answer_key_in(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "target.json").write_text(ANSWER)
    return folder


@pytest.fixture
def packaged() -> Iterator[Path]:
    """A copy inside the interpreter's own tree, as ratchet's wheel ships its examples."""
    try:
        folder = answer_key_in(Path(sys.prefix) / f"ratchet-copy-{uuid.uuid4().hex}")
    except OSError:
        pytest.skip("the interpreter's tree is not writable by this user")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def copies() -> Iterator[list[Path]]:
    """Copies of an answer key elsewhere on the machine: HOME, /tmp, /var/tmp, /opt, /srv
    (those this user may write)."""
    made = []
    for place in (Path.home(), Path("/tmp"), Path("/var/tmp"), Path("/opt"), Path("/srv")):
        try:
            made.append(answer_key_in(place / f"answer-{uuid.uuid4().hex}"))
        except OSError:
            continue
    yield made
    for folder in made:
        shutil.rmtree(folder, ignore_errors=True)


READ_COPIES = """
import sys
for path in sys.argv[1:] or {paths!r}:
    try:
        print('read:', open(path).read())
    except OSError as error:
        print('refused:', type(error).__name__)
"""


@pytest.mark.parametrize("launcher", [BwrapLauncher(), NoLauncher()], ids=["bwrap", "none"])
def test_no_copy_of_an_answer_key_anywhere_on_the_machine_is_readable(
        work: Path, packaged: Path, copies: list[Path], launcher: Launcher,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # `packaged` plays ratchet's bundled examples inside site-packages
    monkeypatch.setattr(sandbox_module, "_bundled_examples", lambda: [packaged])
    copies = [packaged, *copies]
    paths = [str(folder / "target.json") for folder in copies]
    output, result = run(work, READ_COPIES.format(paths=paths), launcher)
    assert result.status == "ok"
    reads = output.count(f"read: {ANSWER}")
    if isinstance(launcher, BwrapLauncher):
        assert reads == 0, output
        assert output.count("refused:") == len(copies)
    else:
        assert reads == len(copies)  # without the sandbox every copy is there to read


def test_the_packaged_copy_is_readable_when_its_concealment_is_off(
        work: Path, packaged: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox_module, "_bundled_examples", lambda: [])
    path = str(packaged / "target.json")
    output, _ = run(work, READ_COPIES.format(paths=[path]), BwrapLauncher())
    assert f"read: {ANSWER}" in output  # inside the interpreter's tree: only concealment hides it


@pytest.mark.parametrize("concealed", [True, False])
def test_an_import_path_inside_the_repository_stays_concealed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, concealed: bool) -> None:
    """An editable install of the user's own project puts its repository on the import path;
    the repository is concealed, so that entry must not be bound back into the sandbox."""
    repo, work, log = tmp_path / "repo", tmp_path / "work", tmp_path / "run.log"
    (repo / "src").mkdir(parents=True)
    (repo / "src" / "answers.txt").write_text(ANSWER)
    work.mkdir()
    monkeypatch.syspath_prepend(str(repo / "src"))
    box = Sandbox(workdir=work, conceal=(repo,) if concealed else ())
    ProcessRunner(BwrapLauncher()).run(f"cat {repo / 'src' / 'answers.txt'} || echo absent",
                                       box, dict(os.environ), 30, log)
    assert (ANSWER in log.read_text()) is not concealed


KERNEL = """
import os
print('uid:', os.getuid(), 'euid:', os.geteuid())
for path in ['/proc/sys/kernel/core_pattern', '/proc/sys/vm/drop_caches',
             '/proc/sys/kernel/randomize_va_space']:
    try:
        open(path, 'r+').close()
        print('writable:', path)
    except OSError as error:
        print('closed:', path, type(error).__name__)
for path in ['/etc/shadow', '/etc/gshadow']:
    try:
        open(path).read()
        print('readable:', path)
    except OSError as error:
        print('unreadable:', path, type(error).__name__)
print('capabilities:', [line.split()[1] for line in open('/proc/self/status')
                        if line.startswith('CapEff')][0])
"""


def test_edited_code_is_never_root_and_cannot_touch_kernel_settings_or_shadow(work: Path) -> None:
    output, result = run(work, KERNEL, BwrapLauncher())
    assert result.status == "ok"
    assert "uid: 0 " not in output and "euid: 0\n" not in output
    assert "writable:" not in output and output.count("closed:") == 3
    assert "\nreadable:" not in output and output.count("unreadable:") == 2
    assert "capabilities: 0000000000000000" in output


@pytest.mark.skipif(os.geteuid() != 0, reason="shows the attack as root, where it works unboxed")
def test_kernel_settings_and_shadow_are_open_to_a_root_run_without_the_sandbox(
        work: Path) -> None:
    output, _ = run(work, KERNEL, NoLauncher())
    assert "uid: 0 " in output and "writable: /proc/sys/kernel/core_pattern" in output
    assert "readable: /etc/shadow" in output


FORK = """
import os, time
children = []
for _ in range({count}):
    try:
        pid = os.fork()
    except OSError as error:
        print('fork refused:', type(error).__name__, flush=True)
        break
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    children.append(pid)
print('forked:', len(children), flush=True)
time.sleep(20)  # the watchdog has this long to see them all (killed at once when it does)
"""


@pytest.mark.parametrize("launcher", [BwrapLauncher(), NoLauncher()], ids=["bwrap", "none"])
def test_a_thousand_processes_end_the_run(work: Path, launcher: Launcher) -> None:
    output, result = run(work, FORK.format(count=1000), launcher, max_processes=100)
    assert result.status == "crash"
    assert result.reason == "command phase killed: it ran more than 100 processes at once"


def test_processes_within_the_limit_are_fine(work: Path) -> None:
    output, result = run(work, FORK.format(count=20).replace("time.sleep(30)", "time.sleep(1)"),
                         BwrapLauncher(), max_processes=100)
    assert result.status == "ok" and "forked: 20" in output


WRITE = """
written = 0
try:
    with open({path!r}, 'wb') as f:
        for _ in range({mib}):
            f.write(b'x' * 2**20)
            f.flush()
            written += 1
except OSError as error:
    print('refused after', written, 'MiB:', type(error).__name__, flush=True)
print('wrote', written, 'MiB', flush=True)
import time; time.sleep({linger})  # the watchdog's time to see it (killed when it does)
"""


def hoard(where: Path | str, linger: float = 15) -> str:
    return WRITE.format(path=f"{where}/hoard", mib=600, linger=linger)


@pytest.mark.parametrize("where", ["/dev/shm", "/tmp"])
def test_memory_hidden_in_tmpfs_counts_against_the_limit(work: Path, where: str) -> None:
    output, result = run(work, hoard(where), BwrapLauncher(), memory_limit="300M")
    assert "wrote 600 MiB" not in output
    assert result.status == "crash", output


def test_tmpfs_hoarding_passes_the_limit_without_the_sandbox(tmp_path: Path, work: Path) -> None:
    where = tmp_path / "shm"
    where.mkdir()
    output, result = run(work, hoard(where, linger=0), NoLauncher(), memory_limit="300M")
    assert "wrote 600 MiB" in output and result.status == "ok"  # a disk counts nowhere


FLOOD = """
import sys
line = 'x' * 1023 + '\\n'
for _ in range(100 * 1024):
    sys.stdout.write(line)
sys.stdout.flush()
"""


def test_flooding_output_ends_the_run_and_the_log_stays_bounded(work: Path) -> None:
    output, result = run(work, FLOOD, BwrapLauncher(), max_output="1M")
    assert result.status == "crash"
    assert result.reason == "command phase killed: it printed more than 1M"
    log = work.parent / f"{work.name}.log"
    assert log.stat().st_size < 2 * 2**20  # cut at the limit, not the 100 MiB printed
    assert "output cut here" in output


def test_output_under_the_limit_is_kept_whole(work: Path) -> None:
    output, result = run(work, FLOOD.replace("100 * 1024", "100"), BwrapLauncher(),
                         max_output="1M")
    assert result.status == "ok" and output.count("x" * 1023) == 100


FILL = WRITE.format(path="filler.bin", mib=40, linger=0)


def test_filling_the_disk_ends_the_run(work: Path) -> None:
    output, result = run(work, FILL, BwrapLauncher(), max_disk="10M")
    assert "wrote 40 MiB" not in output
    assert result.status == "crash"
    assert (work / "filler.bin").stat().st_size <= 11 * 2**20


def test_the_same_fill_passes_with_a_larger_limit(work: Path) -> None:
    output, result = run(work, FILL, BwrapLauncher(), max_disk="100M")
    assert "wrote 40 MiB" in output and result.status == "ok"


def test_open_files_are_capped(work: Path) -> None:
    code = ("import os\nfds = []\ntry:\n    for _ in range(5000):\n"
            "        fds.append(os.open('/dev/null', os.O_RDONLY))\n"
            "except OSError as error:\n    print('refused at', len(fds), type(error).__name__)\n")
    output, result = run(work, code, BwrapLauncher(), max_open_files=256)
    assert result.status == "ok" and "refused at" in output
    opened = int(output.split("refused at ")[1].split()[0])
    assert opened < 256


TRAIN_IN_PREDICT = """
import os, sys, time
replies = os.fdopen(os.dup(1), 'w')
start = time.process_time()
while time.process_time() - start < {train_s}:  # "training" before the first answer
    sum(i * i for i in range(10000))
for line in sys.stdin:
    print(2 * float(line), file=replies, flush=True)
"""

SCORE = ("import os\nw, r = (int(fd) for fd in os.environ['RATCHET_PREDICT_FDS'].split(','))\n"
         "to_model, from_model = os.fdopen(w, 'w'), os.fdopen(r)\n"
         "to_model.write('3\\n'); to_model.flush()\n"
         "print('score:', float(from_model.readline()))\n")


@pytest.mark.parametrize("budget, status", [(1.0, "timeout"), (None, "ok")])
def test_a_predict_process_that_trains_past_its_budget_is_over_budget(
        work: Path, budget: float | None, status: str) -> None:
    (work / "model.py").write_text(TRAIN_IN_PREDICT.format(train_s=3))  # the edited model
    (work / "predict.py").write_text("import model\n")
    (work / "evaluate.py").write_text(SCORE)
    data = {"task": {"editable": ["model.py"], "command": "true",
                     "evaluate": "python evaluate.py", "predict": "python predict.py"},
            "metric": {"name": "score"}}
    result = Evaluator(parse_config(data, work), base_env=dict(os.environ)).evaluate(
        work, work.parent / "run.log", ProcessRunner(BwrapLauncher()), predict_budget_s=budget)
    assert result.status == status, result.reason
    if budget is not None:
        assert result.reason.startswith("over budget: the predict process used more than 1s")
    else:
        assert result.value == 6.0 and result.secondary["predict_cpu_s"] >= 2.5


def test_a_flood_of_files_ends_the_run(work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(process_module, "MAX_ENTRIES", 200)  # 1,000,000 in earnest
    code = "import os\nos.mkdir('many')\nfor i in range(500):\n    open(f'many/{i}', 'w')\n"
    _, result = run(work, code, BwrapLauncher())
    assert result.status == "crash"
    assert result.reason == ("command phase killed: it made more than 200 files and folders in "
                             "its work tree")


def test_a_study_caps_predict_by_what_the_baselines_took(tmp_path: Path) -> None:
    """No predict_budget in the task: a candidate's predict may use twice the baseline's CPU
    plus the slack; one that trains past that is over budget, one that does not is scored."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "model.py").write_text("SECONDS = 0.0\n" +
                                   TRAIN_IN_PREDICT.format(train_s="SECONDS"))
    (repo / "predict.py").write_text("import model\n")
    (repo / "evaluate.py").write_text(SCORE)
    (repo / "ratchet.toml").write_text(
        '[task]\neditable = ["model.py"]\nprotected = ["evaluate.py", "predict.py"]\n'
        'command = "true"\nevaluate = "python evaluate.py"\npredict = "python predict.py"\n'
        '[metric]\nname = "score"\ngoal = "maximize"\n'
        '[decision]\nrule = "greedy"\nbaseline_runs = 1\n'
        '[space]\nSECONDS = { float = [0.0, 0.1] }\n')
    git(repo, "init", "-q")
    commit_all(repo, "a task whose model runs in predict")
    study = open_study(repo, "budget", proposer="random", seed=0)
    study.run(max_experiments=1)
    used = study.experiments()[0].secondary[PREDICT_CPU]
    allowed = derived_predict_budget(used)
    over = study.try_patch(patch_from(repo, edit("model.py", "SECONDS = 0.0",
                                                 f"SECONDS = {allowed + 1:.2f}")), "train")
    assert over.status == "timeout"
    assert over.reason.startswith(f"over budget: the predict process used more than "
                                  f"{allowed:g}s of CPU")
    within = study.try_patch(patch_from(repo, edit("model.py", "SECONDS = 0.0",
                                                   "SECONDS = 0.1")), "a little work")
    assert within.status in ("keep", "discard") and within.value == 6.0
