"""No candidate can stop the driver: whatever a patch or its run leaves (folders nested a
thousand deep, code too deep to parse, files the driver may not read, FIFOs, sparse files of
many GiB) ends as that experiment's void or crash with a one-line reason; the driver returns,
a resume goes on, and no work tree is left behind."""

import contextlib
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import commit_all, git
from sqlalchemy.exc import OperationalError

from ratchet.errors import PatchRejected
from ratchet.execute import tree_walk
from ratchet.execute.gitrepo import remove_tree
from ratchet.execute.tree_walk import TreeError, digests, read_digest, walk
from ratchet.execute.workspace import tree_digest
from ratchet.knobs import datafile
from ratchet.knobs.scope import IN, OUTSIDE, classify
from ratchet.knobs.source import KnobRewriteError, find_knobs, rewrite_knobs
from ratchet.study import open_study

TASK = """\
[task]
editable = ["train.py", "pkg/**", "conf/*.yaml"]
protected = ["check.py", "data/**"]
command = "python train.py"
timeout = "60s"

[metric]
name = "loss"
goal = "minimize"

[decision]
rule = "greedy"
baseline_runs = 1

[knobs]
files = ["conf/*.yaml"]

[space]
X = { float = [-3.0, 3.0] }
lr = { float = [0.01, 1.0] }
"""
TRAIN = 'X = 0.0\nprint(f"loss: {(X - 1.0) ** 2}")\n'
LONG_SUM = "Z = " + " + ".join(["1"] * 1500) + "\n"
NEST_1100 = "import os\nfor _ in range(1100):\n    os.mkdir('d')\n    os.chdir('d')\n"
SPARSE_1_GIB = ("import os\nos.makedirs('data/sub')\n"
                "with open('data/sub/big.py', 'w') as f:\n    f.truncate(1 << 30)\n")
HOSTILE_MODES = """\
import os, socket
os.makedirs('data/locked/inner')
open('data/locked/inner/m.py', 'w').write('x = 1')
open('data/z.py', 'w').write('x = 1')
os.mkfifo('data/pipe.py')
os.mkfifo('pipe.py')
socket.socket(socket.AF_UNIX).bind('data/sock')
os.chmod('data/z.py', 0)
os.chmod('data/locked/inner/m.py', 0)
os.chmod('data/locked/inner', 0)
os.chmod('data/locked', 0)
os.makedirs('w/v')
os.chmod('w/v', 0)
os.chmod('w', 0o500)
"""


def make_task(root: Path, sandbox: str | None = None) -> Path:
    """A small task whose command prints the metric: no evaluate phase to depend on."""
    repo = root / "task"
    (repo / "data").mkdir(parents=True)
    (repo / "conf").mkdir()
    (repo / "ratchet.toml").write_text(TASK + (f'\n[sandbox]\nmode = "{sandbox}"\n'
                                               if sandbox else ""))
    (repo / "train.py").write_text(TRAIN)
    (repo / "check.py").write_text("print('ok')\n")
    (repo / "data" / "ref.txt").write_text("1\n")
    (repo / "conf" / "c.yaml").write_text("lr: 0.1\n")
    git(repo, "init", "-q")
    commit_all(repo, "initial")
    return repo


@pytest.fixture(autouse=True)
def _clean(tmp_path: Path) -> Iterator[None]:
    """The trees these tests make would stop pytest's own clean-up (it recurses)."""
    yield
    with contextlib.suppress(Exception):
        remove_tree(tmp_path)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_task(tmp_path)


def patch_from(repo: Path, change) -> str:  # type: ignore[no-untyped-def]
    change(repo)
    git(repo, "add", "-A")
    patch = git(repo, "diff", "--cached", "--binary")
    git(repo, "reset", "-q", "--hard")
    return patch


def train_patch(repo: Path, code: str, train: str = TRAIN) -> str:
    return patch_from(repo, lambda r: (r / "train.py").write_text(train + code))


def nested_patch(repo: Path, levels: int) -> str:
    def change(root: Path) -> None:
        folder = root / "pkg"
        folder.mkdir()
        fd = os.open(folder, os.O_RDONLY)
        try:  # relative to a descriptor: no path grows past PATH_MAX, no recursion
            for _ in range(levels):
                os.mkdir("a", dir_fd=fd)
                inner = os.open("a", os.O_RDONLY, dir_fd=fd)
                os.close(fd)
                fd = inner
            os.close(os.open("x.py", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
        finally:
            os.close(fd)
    return patch_from(repo, change)


def worktrees_left(repo: Path) -> list[str]:
    root = repo / ".ratchet" / "worktrees"
    if not root.exists():
        return []
    return [f"{study}/{entry}" for study in os.listdir(root) for entry in os.listdir(root / study)]


def resumes(repo: Path, experiments: int = 4) -> None:
    """A later `run` of the same study goes on past the hostile experiment."""
    study = open_study(repo, "t")
    progress = study.run(max_experiments=experiments)
    assert progress.stop_reason == f"experiment budget reached ({experiments})"
    later = study.experiments()[2:]
    assert len(later) == experiments - 2 and all(e.status in ("keep", "discard") for e in later)
    assert worktrees_left(repo) == []


def tried(repo: Path, patch: str, description: str):  # type: ignore[no-untyped-def]
    study = open_study(repo, "t", proposer="random", seed=0)
    experiment = study.try_patch(patch, description)  # returns: the driver did not die
    assert worktrees_left(repo) == []
    return experiment


# the attacks, through the product's own path


def test_a_patch_that_nests_folders_1100_deep_is_void_before_it_runs(repo: Path) -> None:
    experiment = tried(repo, nested_patch(repo, 1100), "deep folders")
    assert experiment.status == "void"
    assert experiment.reason.startswith("rejected before running: pkg/a/a/")
    assert "(1102 levels): folders nested deeper than 128 levels" in experiment.reason
    assert "\n" not in experiment.reason and len(experiment.reason) < 300
    resumes(repo)


def test_folders_the_command_nests_1100_deep_void_the_run(repo: Path) -> None:
    experiment = tried(repo, train_patch(repo, NEST_1100), "deep folders at run time")
    assert experiment.status == "void"
    assert experiment.reason.startswith("the work tree: folders nested deeper than 128 levels: "
                                        "d/d/d/")
    resumes(repo)


def test_a_sum_of_1500_terms_is_outside_the_space_not_a_dead_driver(repo: Path) -> None:
    """Python runs it (its parser copes); the driver's classifier, whose comparison of
    syntax trees recurses, calls it OUTSIDE the knob space."""
    experiment = tried(repo, train_patch(repo, LONG_SUM), "a sum of 1,500 terms")
    assert experiment.scope == OUTSIDE and experiment.status == "discard"
    resumes(repo)


def test_a_knob_file_nested_too_deep_to_read_is_outside_the_space(repo: Path) -> None:
    deep_yaml = "lr: 0.1\nx: " + "[" * 3000 + "]" * 3000 + "\n"
    patch = patch_from(repo, lambda r: (r / "conf" / "c.yaml").write_text(deep_yaml))
    experiment = tried(repo, patch, "deep yaml")
    assert experiment.scope == OUTSIDE and experiment.status == "discard"
    resumes(repo)


def test_a_kept_change_with_code_too_deep_to_rewrite_voids_knob_proposals_on_it(
        repo: Path) -> None:
    """A sum of 1,500 terms beside a better X is kept; the knobs of that code are still read,
    and setting them there (libcst recurses) is a void with a reason, not a dead driver."""
    experiment = tried(repo, train_patch(repo, LONG_SUM, TRAIN.replace("0.0", "1.0")), "sum")
    assert experiment.status == "keep" and experiment.scope == OUTSIDE
    context = open_study(repo, "t").context
    knobs = context.knobs_at(experiment.commit)
    assert knobs["X"].value == 1.0 and "Z" not in knobs
    with pytest.raises(PatchRejected, match="cannot set knobs in train.py: the code is nested "
                                            "too deeply to rewrite"):
        context._knob_files({"X": 0.5}, experiment.commit)


def test_a_sparse_1_gib_protected_file_voids_the_run_unread(repo: Path) -> None:
    experiment = tried(repo, train_patch(repo, SPARSE_1_GIB), "sparse file")
    assert experiment.status == "void"
    assert experiment.reason == ("the work tree: data/sub/big.py is 1 GiB: ratchet hashes "
                                 "files of at most 256 MiB")
    resumes(repo)


def test_modes_the_command_leaves_void_the_run_for_a_driver_that_is_not_root(
        tmp_path: Path) -> None:
    """Folders and files no one may read, a folder no one may write, FIFOs and a socket: the
    driver (here without root's power over file modes) voids the run, reads no FIFO, removes
    the tree and resumes."""
    repo = make_task(tmp_path, sandbox="none")
    patch = train_patch(repo, HOSTILE_MODES)
    script = f"""
import json, os
from pathlib import Path
from ratchet.study import open_study
repo = Path({str(repo)!r})
study = open_study(repo, "t", proposer="random", seed=0)
tried = study.try_patch({patch!r}, "modes")
progress = open_study(repo, "t").run(max_experiments=4)
root = repo / ".ratchet" / "worktrees" / "t"
print(json.dumps({{"status": tried.status, "reason": tried.reason,
                  "stop": progress.stop_reason, "left": os.listdir(root),
                  "later": [e.status for e in study.experiments()[2:]]}}))
"""
    result = subprocess.run(_without_root() + [sys.executable, "-c", script],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.splitlines()[-1])
    assert outcome["status"] == "void"
    assert outcome["reason"] == ("the work tree: cannot list the folder data/locked: "
                                 "Permission denied")
    assert outcome["stop"] == "experiment budget reached (4)"
    assert outcome["left"] == []
    assert len(outcome["later"]) == 2 and set(outcome["later"]) <= {"keep", "discard"}


def test_ratchet_try_and_run_survive_a_candidate_that_nests_folders(repo: Path) -> None:
    (repo / "p.diff").write_text(train_patch(repo, NEST_1100))
    tried_ = _ratchet(repo, "try", "p.diff", "--plain")
    assert tried_.returncode == 0, tried_.stderr
    assert "void" in tried_.stdout and "folders nested deeper than 128 levels" in tried_.stdout
    run = _ratchet(repo, "run", "--max-experiments", "3", "--plain")
    assert run.returncode == 0, run.stderr
    assert "stopped: experiment budget reached (3)" in run.stdout
    assert worktrees_left(repo) == []


def test_an_unexpected_error_on_one_candidate_is_its_crash_the_driver_goes_on(
        repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ratchet.context import StudyContext

    real = StudyContext.build_candidate

    def build(self, experiment):  # type: ignore[no-untyped-def]
        if experiment.description == "poison":
            raise RuntimeError("something no one foresaw\nsecond line")
        return real(self, experiment)

    monkeypatch.setattr(StudyContext, "build_candidate", build)
    experiment = tried(repo, train_patch(repo, "# poison\n"), "poison")
    assert experiment.status == "crash"
    assert experiment.reason == ("ratchet could not handle this candidate: RuntimeError: "
                                 "something no one foresaw")
    resumes(repo)


def test_a_store_failure_while_handling_a_candidate_still_stops_the_driver(
        repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ratchet.context import StudyContext

    def build(self, experiment):  # type: ignore[no-untyped-def]
        raise OperationalError("SELECT", {}, Exception("the database is gone"))

    monkeypatch.setattr(StudyContext, "build_candidate", build)
    study = open_study(repo, "t", proposer="random", seed=0)
    with pytest.raises(OperationalError):
        study.try_patch(train_patch(repo, "# any\n"), "any")


# the pieces: walking, hashing, removing, parsing


def test_walk_is_iterative_and_bounded(tmp_path: Path) -> None:
    _nest(tmp_path / "deep", 1500, "x")
    with pytest.raises(TreeError, match="folders nested deeper than 128 levels"):
        list(walk(tmp_path / "deep"))
    assert [e.rel for e in walk(tmp_path / "deep", max_depth=2000)] == ["x/" * 1500 + "f"]
    many = tmp_path / "many"
    many.mkdir()
    for i in range(20):
        (many / str(i)).write_text("")
    with pytest.raises(TreeError, match="more than 10 files and folders"):
        list(walk(many, max_entries=10))
    (many / ".git").mkdir()
    (many / ".git" / "HEAD").write_text("")
    os.symlink("/etc", many / "etc")  # listed, never followed
    assert sorted(e.rel for e in walk(many)) == sorted([*map(str, range(20)), "etc"])


def test_hashing_reads_no_fifo_and_no_more_than_the_cap(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.py")  # a read would block forever
    with open(tmp_path / "big.py", "w") as f:
        f.truncate(48 << 30)  # 48 GiB, no disk used
    (tmp_path / "ok.py").write_text("x = 1\n")
    os.symlink("ok.py", tmp_path / "link.py")
    entries = {e.rel: e for e in walk(tmp_path)}
    assert read_digest(entries["pipe.py"]) == "special:10000"
    assert read_digest(entries["link.py"]) == "symlink:ok.py"
    with pytest.raises(TreeError, match="big.py is 48 GiB: ratchet hashes files of at most "
                                        "256 MiB"):
        read_digest(entries["big.py"])
    assert tree_digest(tmp_path, lambda rel: rel != "big.py").keys() == \
        {"pipe.py", "ok.py", "link.py"}  # big.py, not asked for, is never opened
    for i in range(4):
        (tmp_path / f"{i}.py").write_text("x" * 100)
    small = (e for e in walk(tmp_path) if e.rel[0].isdigit())
    with pytest.raises(TreeError, match="hold more than 300 bytes together"):
        digests(small, max_total=300)  # many files under the cap add up past what is read


def test_remove_tree_removes_any_depth_and_modes(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("")
    tree = _hostile_tree(tmp_path / "tree", outside)
    remove_tree(tree)
    assert not tree.exists() and (outside / "keep").exists()
    remove_tree(tree)  # gone already: nothing to do
    (tmp_path / "file").write_text("")
    remove_tree(tmp_path / "file")
    assert not (tmp_path / "file").exists()


def test_remove_tree_removes_any_depth_and_modes_for_a_driver_that_is_not_root(
        tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("")
    tree = _hostile_tree(tmp_path / "tree", outside)
    script = ("import sys; from pathlib import Path; from ratchet.execute.gitrepo import "
              f"remove_tree; remove_tree(Path({str(tree)!r}))")
    result = subprocess.run(_without_root() + [sys.executable, "-c", script],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert not tree.exists() and (outside / "keep").exists()


def test_remove_tree_keeps_few_folders_open(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    monkeypatch.setattr(tree_walk, "MAX_OPEN_DIRS", 3)  # every deeper folder is moved up
    _nest(tmp_path / "tree", 40, "n")
    remove_tree(tmp_path / "tree")
    assert not (tmp_path / "tree").exists()


def test_parsing_candidate_code_degrades_instead_of_raising() -> None:
    source = "X = 2\n" + LONG_SUM
    assert [k.name for k in find_knobs(source)] == ["X"]  # Z too deep to evaluate: no knob
    assert find_knobs("X = 1\0\n") == []
    with pytest.raises(KnobRewriteError, match="nested too deeply"):
        rewrite_knobs(source, {"X": 3})
    assert classify({"a.py": "X = 1\n"}, {"a.py": "X = 2\n" + LONG_SUM}, ["X"]) == OUTSIDE
    assert classify({"a.py": "X = 1\n"}, {"a.py": "X = 2\n"}, ["X"]) == IN
    deep = "[" * 5000 + "]" * 5000
    for name, text in [("c.json", '{"a": 1, "b": ' + deep + "}"),
                       ("c.yaml", "a: 1\nb: " + deep + "\n"), ("c.toml", "a = 1\nb = " + deep)]:
        assert datafile.entries(text, name) == []
        assert datafile.shape(text, name, frozenset({"a"})) is None
        assert classify({name: text}, {name: text.replace("1", "2", 1)}, ["a"]) == OUTSIDE
    assert classify({"c.yaml": "1: a\nb: c\n"}, {"c.yaml": "1: a\nb: d\n"}, ["b"]) == OUTSIDE


# helpers


def _ratchet(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ratchet.cli", *args], cwd=repo,
                          capture_output=True, text=True, timeout=300)


def _without_root() -> list[str]:
    """A command prefix that runs without power over file modes: as root, without the
    capabilities that override them (the process stays root, so it can run this venv)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is needed to run as root without CAP_DAC_OVERRIDE")
    caps = "-dac_override,-dac_read_search,-fowner"
    return [setpriv, "--inh-caps", caps, "--bounding-set", caps]


def _nest(top: Path, levels: int, name: str) -> None:
    """`levels` folders `name` under `top`, a file `f` in the last (past PATH_MAX if long)."""
    top.mkdir()
    fd = os.open(top, os.O_RDONLY)
    try:
        for _ in range(levels):
            os.mkdir(name, dir_fd=fd)
            inner = os.open(name, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = inner
        os.close(os.open("f", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
    finally:
        os.close(fd)


def _hostile_tree(tree: Path, outside: Path) -> Path:
    """Folders 1,100 deep with 200-character names (far past PATH_MAX), folders and files of
    mode 000 and 0500, sticky and setgid folders, a FIFO, a socket, links out of the tree."""
    _nest(tree, 1100, "n" * 200)
    (tree / "locked" / "inner").mkdir(parents=True)
    (tree / "locked" / "inner" / "f").write_text("x")
    os.mkfifo(tree / "locked" / "pipe")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tree / "sock"))
    os.symlink(outside, tree / "out")
    os.symlink(outside / "keep", tree / "locked" / "keep")
    (tree / "sticky").mkdir()
    (tree / "sticky" / "f").write_text("")
    os.chmod(tree / "sticky", 0o1777 | stat.S_ISGID)
    os.chmod(tree / "locked" / "inner" / "f", 0)
    os.chmod(tree / "locked" / "inner", 0)
    os.chmod(tree / "locked", 0o500)
    os.chmod(tree, 0)
    return tree
