"""Observing the unmodified command before a study: the facts read from its output (pure), and
real runs of a tiny repository in the real sandbox (bubblewrap)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from ratchet.config import SandboxConfig
from ratchet.errors import UsageError
from ratchet.execute.sandbox import BwrapLauncher
from ratchet.knobs import observe as observe_module
from ratchet.knobs.observe import (
    SEED_VARIABLE,
    Observation,
    ObservedRun,
    identical_runs,
    observe,
    tail_lines,
)
from ratchet.knobs.outputfacts import (
    absent_paths,
    failed_paths,
    missing_paths,
    printed_values,
    read_only_suggestions,
    untracked_code,
)
from tests.conftest import commit_all, git

DATA = "data/shakespeare_char/train.bin"


def _bwrap_problem() -> str | None:
    try:
        BwrapLauncher().check()
    except UsageError as exc:
        return str(exc)
    return None


_PROBLEM = _bwrap_problem()
needs_bwrap = pytest.mark.skipif(_PROBLEM is not None and os.environ.get("CI") != "true",
                                 reason=f"bubblewrap cannot run as this user: {_PROBLEM}")


# printed values


def test_values_printed_mid_line_are_keyed_by_their_names_as_printed() -> None:
    values = printed_values(["step 0: train loss 4.2, val loss 4.3",
                             "step 250: train loss 2.1, val loss 2.25",
                             "val_bpb: 0.99", "iter 10: loss 3.2104, time 120.53ms, mfu 1.20%"])
    assert values == {"step": [0.0, 250.0], "train loss": [4.2, 2.1], "val loss": [4.3, 2.25],
                      "val_bpb": [0.99], "iter": [10.0], "loss": [3.2104], "time": [120.53],
                      "mfu": [1.2]}


def test_equals_signs_dict_keys_and_settings_are_values() -> None:
    values = printed_values(["{'loss': 0.5, \"lr\": 0.001}", "--lr=0.1 acc=0.75",
                             "Overriding: learning_rate = 6e-4",
                             "the final validation loss is 0.3."])
    assert values == {"loss": [0.5], "lr": [0.001, 0.1], "acc": [0.75],
                      "learning_rate": [0.0006], "validation loss": [0.3]}


def test_ansi_escapes_and_progress_bars_are_taken_apart() -> None:
    values = printed_values(["\x1b[32mloss=0.5\x1b[0m",
                             "50%|███ | 5/10 [00:01<00:01, 4.9it/s, loss=0.4]\r"
                             "100%|█████| 10/10 [00:02<00:00, 5.0it/s, loss=0.25]"])
    assert values == {"loss": [0.5, 0.4, 0.25]}


def test_numbers_run_into_other_text_are_not_values() -> None:
    assert printed_values(["Python 3.11.4 on 2024-01-02 at 12:30:01", "step 5/100",
                           "commit 3abc12", "tokens per iteration will be: 16,384",
                           "using nanoGPT model", "", "::: == 1e5"]) == {}


def test_tracebacks_are_not_values() -> None:
    assert printed_values(['  File "/x/train.py", line 4, in <module>',
                           "FileNotFoundError: [Errno 2] No such file or directory: 'x'"]) == {}


def test_huge_numbers_nan_and_junk_do_not_break_reading() -> None:
    values = printed_values(["big " + "9" * 5000, "loss nan", "grad inf", "grad -Infinity",
                             "\x00\xff\ufffd junk " * 1000, "x" * 100_000 + " 3",
                             "val 1e999999"])
    assert values["big"] == [math.inf] and values["val"] == [math.inf]
    assert math.isnan(values["loss"][0]) and values["grad"] == [math.inf, -math.inf]
    assert set(values) == {"big", "loss", "grad", "val"}


# missing paths


def test_the_error_lines_of_python_and_shell_tools_name_the_paths() -> None:
    lines = [f"FileNotFoundError: [Errno 2] No such file or directory: '{DATA}'",
             "cat: data/x.txt: No such file or directory",
             "ls: cannot access 'corpus': No such file or directory",
             "python: can't open file '/abs/train.py': [Errno 2] No such file or directory",
             "bash: line 1: ./run.sh: No such file or directory",
             "/bin/sh: 1: ./prepare.sh: not found",
             "FileNotFoundError: Unable to find '/srv/ds/x.arrow'",
             "OSError: [Errno 2] No such file or directory: 'a b/c.txt' -> 'd'",
             f"FileNotFoundError: [Errno 2] No such file or directory: '{DATA}'"]
    assert failed_paths(lines) == [DATA, "data/x.txt", "corpus", "/abs/train.py", "./run.sh",
                                   "./prepare.sh", "/srv/ds/x.arrow", "a b/c.txt"]


def test_other_errors_commands_and_urls_are_not_missing_paths() -> None:
    assert failed_paths([
        "PermissionError: [Errno 13] Permission denied: '/etc/x.txt'",
        "OSError: [Errno 30] Read-only file system: 'out/ckpt.pt'",
        "/bin/sh: 1: python3: not found",
        "x: error while loading shared libraries: libfoo.so: cannot open shared object file: "
        "No such file or directory",
        "OSError: We couldn't connect to 'https://huggingface.co' to load 'gpt2'",
        "Error: model not found"]) == []


def test_paths_the_repository_has_become_read_only_suggestions(tmp_path: Path) -> None:
    repo, cache = tmp_path / "repo", tmp_path / "elsewhere" / "datasets"
    (repo / "data" / "shakespeare_char").mkdir(parents=True)
    (repo / DATA).write_bytes(b"\0")
    (repo / "helper.py").write_text("")
    cache.mkdir(parents=True)
    (cache / "x.arrow").write_bytes(b"")
    workdir = repo / ".ratchet" / "observe-1" / "tree"
    lines = [f"No such file or directory: '{workdir / 'data' / 'shakespeare_char' / 'val.bin'}'",
             f"FileNotFoundError: [Errno 2] No such file or directory: '{DATA}'",
             f"No such file or directory: '{repo / 'helper.py'}'",
             f"No such file or directory: '{cache / 'x.arrow'}'",
             "No such file or directory: 'nowhere/at_all.csv'"]
    (repo / "data" / "shakespeare_char" / "val.bin").write_bytes(b"\0")
    assert missing_paths(lines, repo, workdir) == [
        "data/shakespeare_char/val.bin", DATA, "helper.py", str(cache / "x.arrow")]
    assert absent_paths(lines, repo, workdir) == ["nowhere/at_all.csv"]
    assert read_only_suggestions(lines, repo, workdir) == ["data", str(cache)]
    assert untracked_code(lines, repo, workdir) == ["helper.py"]


def test_a_dataset_in_home_is_suggested_by_its_top_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    deep = home / ".cache" / "huggingface" / "hub" / "x" / "data.arrow"
    deep.parent.mkdir(parents=True)
    deep.write_bytes(b"")
    monkeypatch.setenv("HOME", str(home))
    lines = [f"FileNotFoundError: [Errno 2] No such file or directory: '{deep}'"]
    assert read_only_suggestions(lines, tmp_path / "repo") == [
        str(home / ".cache" / "huggingface")]


# identical runs


def _run(seed: int, lines: list[str], returncode: int | None = 0,
         timed_out: bool = False) -> ObservedRun:
    return ObservedRun(seed=seed, returncode=returncode, timed_out=timed_out,
                       lines=tuple(lines))


def _observation(*runs: ObservedRun) -> Observation:
    return Observation("python train.py", Path("/nowhere"), 10.0, runs)


def test_names_printed_identically_by_every_completed_run_are_found() -> None:
    fixed = ["step 0: train loss 4.2, val loss 4.3", "time 12.5ms", "loss nan"]
    other = ["step 0: train loss 4.2, val loss 4.3", "time 13.1ms", "loss nan"]
    crashed = _run(3, ["step 0: train loss 9.9, val loss 9.9"], returncode=1)
    observation = _observation(_run(1, fixed), crashed, _run(2, other))
    assert identical_runs(observation) == ["step", "train loss", "val loss", "loss"]


def test_a_run_cut_short_by_the_timeout_is_compared_on_what_it_printed() -> None:
    full = ["step 0: val loss 4.3", "step 50: val loss 3.1", "step 100: val loss 2.9"]
    agrees = _run(2, full[:2], returncode=-9, timed_out=True)
    assert identical_runs(_observation(_run(1, full), agrees)) == ["step", "val loss"]
    disagrees = _run(3, ["step 0: val loss 4.3", "step 50: val loss 3.0"], returncode=-9,
                     timed_out=True)
    assert identical_runs(_observation(_run(1, full), disagrees)) == ["step"]
    silent = _run(4, ["loading"], returncode=-9, timed_out=True)
    assert identical_runs(_observation(_run(1, full), silent)) == []


def test_values_that_differ_or_a_single_completed_run_reveal_nothing() -> None:
    assert identical_runs(_observation(_run(1, ["val loss 4.3"]), _run(2, ["val loss 4.1"]),
                                       _run(3, ["val loss 4.3"]))) == []
    assert identical_runs(_observation(_run(1, ["val loss 4.3"]),
                                       _run(2, ["val loss 4.3"], returncode=1))) == []
    assert identical_runs(_observation(_run(1, ["val loss 4.3", "val loss 4.0"]),
                                       _run(2, ["val loss 4.3"]))) == []


def test_the_summary_says_the_seed_is_fixed_and_what_was_printed() -> None:
    lines = _observation(_run(11, ["step 0: val loss 4.3"]),
                         _run(22, ["step 0: val loss 4.3"])).summary()
    assert lines[1:3] == [f"  run 1 ({SEED_VARIABLE}=11): exit 0, 1 lines of output",
                          f"  run 2 ({SEED_VARIABLE}=22): exit 0, 1 lines of output"]
    assert "printed: step (1), val loss (1)" in lines
    assert any("val loss (the code fixes its own seed)" in line for line in lines)
    assert not any("step" in line for line in lines if "fixes its own seed" in line)


def test_an_observation_that_could_not_run_says_why() -> None:
    observation = Observation("python train.py", Path("/x"), 10.0, problem="no commits")
    assert observation.summary() == ["not observed: no commits"]
    assert observation.printed() == {} and identical_runs(observation) == []


def test_the_tail_of_a_log_is_bounded_in_lines_and_bytes(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    log.write_text("".join(f"line {i}\n" for i in range(5000)))
    assert tail_lines(log, most_lines=3) == ["line 4997", "line 4998", "line 4999"]
    kept = tail_lines(log, most_bytes=100)
    assert kept[-1] == "line 4999" and sum(len(line) + 1 for line in kept) <= 100
    assert all(line.startswith("line ") and len(line) == 9 for line in kept)
    assert tail_lines(tmp_path / "absent.log") == []


# real runs in the sandbox

TRAIN = """\
import os
import random

random.seed({seed})
with open("{data}", "rb") as f:
    data = f.read()
for step in range(3):
    print(f"step {{step}}: train loss {{random.random():.6f}}, val loss {{random.random():.6f}}")
print(f"val_bpb: {{random.random():.6f}}")
"""


def _repo(tmp_path: Path, seed: str = "1337", untracked_data: bool = True) -> Path:
    """A tiny repository: a committed script that reads data the commit lacks (untracked) and
    prints its metrics mid-line."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "train.py").write_text(TRAIN.format(seed=seed, data=DATA))
    (repo / "sleep.py").write_text("import time\nprint('loss 1.0', flush=True)\n"
                                   "while True:\n    time.sleep(1)\n")
    git(repo, "init", "-q")
    commit_all(repo, "initial")
    if untracked_data:
        (repo / "data" / "shakespeare_char").mkdir(parents=True)
        (repo / DATA).write_bytes(b"\0" * 64)
    return repo


def _status(repo: Path) -> str:
    return git(repo, "status", "--porcelain", "--ignored", "--untracked-files=all")


@needs_bwrap
def test_data_the_commit_lacks_is_found_and_suggested(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    before = _status(repo)
    observation = observe(repo, "python train.py", timeout_s=60)
    # the first run could not open the data: a second would fail the same way, and is not run
    assert [(run.returncode, run.timed_out) for run in observation.runs] == [(1, False)]
    assert observation.missing() == [DATA] and observation.absent() == []
    assert observation.read_only() == ["data"]
    assert 'suggest [sandbox] read_only = ["data"]' in "\n".join(observation.summary())
    assert observation.workdir is not None and not observation.workdir.exists()
    assert not (repo / ".ratchet").exists() and _status(repo) == before


@needs_bwrap
def test_with_the_suggested_read_only_a_fixed_seed_prints_identical_runs(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    observation = observe(repo, "python train.py", timeout_s=60,
                          sandbox=SandboxConfig(read_only=("data",)))
    assert [run.completed for run in observation.runs] == [True, True]
    seeds = [run.seed for run in observation.runs]
    assert len(set(seeds)) == 2
    printed = observation.printed()
    assert list(printed) == ["step", "train loss", "val loss", "val_bpb"]
    assert printed["step"] == [0.0, 1.0, 2.0] and len(printed["val loss"]) == 3
    assert observation.identical() == ["step", "train loss", "val loss", "val_bpb"]
    assert observation.missing() == []
    assert any("fixes its own seed" in line for line in observation.summary())


@needs_bwrap
def test_a_script_seeded_from_ratchet_seed_is_not_identical(tmp_path: Path) -> None:
    repo = _repo(tmp_path, seed=f'int(os.environ["{SEED_VARIABLE}"])')
    observation = observe(repo, "python train.py", timeout_s=60, runs=3,
                          sandbox=SandboxConfig(read_only=("data",)))
    assert [run.completed for run in observation.runs] == [True] * 3
    assert observation.identical() == ["step"]
    assert not any("fixes its own seed" in line for line in observation.summary())


@needs_bwrap
def test_uncommitted_edits_are_absent_as_in_a_study(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    (repo / "train.py").write_text("print('dirty: 1')\n")
    (repo / "extra.py").write_text("print('untracked: 1')\n")
    before = _status(repo)
    observation = observe(repo, "python train.py; python extra.py", timeout_s=60, runs=1)
    assert "dirty" not in observation.printed()
    assert failed_paths(observation.lines)[-1].endswith("extra.py")
    assert observation.missing() == [DATA, "extra.py"]
    assert observation.read_only() == ["data"]
    assert _status(repo) == before and (repo / "train.py").read_text() == "print('dirty: 1')\n"


@needs_bwrap
def test_a_command_that_never_ends_is_timed_out_and_cleaned_up(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    (repo / ".ratchet").mkdir()
    (repo / ".ratchet" / "keep").write_text("the user's state\n")
    observation = observe(repo, "python sleep.py & python sleep.py", timeout_s=2, runs=1)
    [run] = observation.runs
    assert run.timed_out and not run.completed
    assert run.lines == ("loss 1.0", "loss 1.0")
    assert "timed out after 2s (killed)" in "\n".join(observation.summary())
    assert sorted(p.name for p in (repo / ".ratchet").iterdir()) == ["keep"]
    assert _processes_in(observation.workdir) == []


def _processes_in(folder: Path | None) -> list[int]:
    """The live processes whose working directory is in `folder`."""
    assert folder is not None
    found = []
    for entry in Path("/proc").iterdir():
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if entry.name.isdigit() and cwd.startswith(str(folder)):
            found.append(int(entry.name))
    return found


@needs_bwrap
def test_an_interrupted_observation_removes_its_export(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = _repo(tmp_path)
    seen: list[Path] = []

    class Interrupted(observe_module.ProcessRunner):
        def run(self, command, sandbox, env, timeout_s, log):  # type: ignore[no-untyped-def]
            seen.append(sandbox.workdir)
            assert (sandbox.workdir / "train.py").is_file()
            raise KeyboardInterrupt

    monkeypatch.setattr(observe_module, "ProcessRunner", Interrupted)
    with pytest.raises(KeyboardInterrupt):
        observe(repo, "python train.py", timeout_s=60)
    assert len(seen) == 1 and not seen[0].exists()
    assert not (repo / ".ratchet").exists()


def test_a_repository_without_commits_is_a_problem_not_an_error(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    observation = observe(tmp_path, "python train.py", timeout_s=5)
    assert observation.runs == () and observation.problem is not None
    assert "no commits" in observation.problem


def test_a_read_only_path_that_does_not_exist_is_a_problem(tmp_path: Path) -> None:
    repo = _repo(tmp_path, untracked_data=False)
    observation = observe(repo, "python train.py", timeout_s=5,
                          sandbox=SandboxConfig(read_only=("data",)))
    assert observation.runs == () and "'data' does not exist" in (observation.problem or "")
