"""Watching the unmodified command run before a study: what `ratchet init` may know, not guess.

`observe` exports the repository's committed HEAD (no git metadata, none of the user's
uncommitted or untracked files: the tree a study's experiments get) into a scratch folder
under `.ratchet/`, and runs the command there a few times in ratchet's own sandbox, with the
launcher, limits, environment and unprivileged user of an experiment, each run in a fresh
export with its own `RATCHET_SEED`. Python's output is unbuffered unless the user's
environment says otherwise, so a run cut short still shows what it printed. A run past its
timeout is killed whole and recorded as timed out. The scratch folder goes afterwards,
whatever happens (an error, Ctrl-C).

What the runs printed is kept (the last MAX_LINES lines, at most MAX_BYTES, a run) and read
as facts (`ratchet.knobs.outputfacts`): the values printed, the files the run could not open
(and the `[sandbox] read_only` entries that would give them), and the names printed
identically in every completed run although each had its own seed: the code fixes its seed.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ratchet.config import SandboxConfig, TaskConfig
from ratchet.errors import RatchetError
from ratchet.execute.evaluate import HORIZON_VARIABLE, Evaluator
from ratchet.execute.gitrepo import GitRepo, remove_tree
from ratchet.execute.process import ProcessOutcome, ProcessRunner
from ratchet.execute.sandbox import check_read_only, launcher_for
from ratchet.knobs.outputfacts import (
    absent_paths,
    missing_paths,
    printed_values,
    read_only_suggestions,
    untracked_code,
)
from ratchet.store.glance import STATE_DIR

__all__ = ["SEED_VARIABLE", "Observation", "ObservedRun", "absent_paths", "identical_runs",
           "missing_paths", "observe", "printed_values", "read_only_suggestions", "tail_lines",
           "untracked_code"]

SEED_VARIABLE = "RATCHET_SEED"
MAX_LINES = 2000  # kept of each run's output: its last lines
MAX_BYTES = 2**20  # and at most this much of it
SUMMARY_NAMES = 8  # printed names listed in a summary
_IGNORE_ALL = "# ratchet's state: the store, logs and work trees\n*\n"


@dataclass(frozen=True)
class ObservedRun:
    """One run of the command: how it ended and the last of what it printed."""

    seed: int
    returncode: int | None
    timed_out: bool
    lines: tuple[str, ...]
    wall_s: float = 0.0
    cpu_s: float = 0.0
    breach: str | None = None  # the sandbox limit it broke, when it was killed for one

    @property
    def completed(self) -> bool:
        return self.returncode == 0 and not self.timed_out and self.breach is None

    def outcome(self, timeout_s: float) -> str:
        if self.timed_out:
            return f"timed out after {timeout_s:g}s (killed)"
        if self.breach:
            return f"killed: {self.breach}"
        return f"exit {self.returncode}"


@dataclass(frozen=True)
class Observation:
    """What the unmodified command did in the sandbox; `problem` says why it did not run."""

    command: str
    repo_root: Path
    timeout_s: float
    runs: tuple[ObservedRun, ...] = ()
    workdir: Path | None = None  # where the runs ran (removed since)
    problem: str | None = None

    @property
    def lines(self) -> list[str]:
        return [line for run in self.runs for line in run.lines]

    @property
    def completed(self) -> list[ObservedRun]:
        return [run for run in self.runs if run.completed]

    def printed(self) -> dict[str, list[float]]:
        """The values printed by the first completed run (the first run, if none did)."""
        runs = self.completed or list(self.runs)
        return printed_values(runs[0].lines) if runs else {}

    def missing(self) -> list[str]:
        return missing_paths(self.lines, self.repo_root, self.workdir)

    def absent(self) -> list[str]:
        return absent_paths(self.lines, self.repo_root, self.workdir)

    def read_only(self) -> list[str]:
        return read_only_suggestions(self.lines, self.repo_root, self.workdir)

    def identical(self) -> list[str]:
        return identical_runs(self)

    def summary(self) -> list[str]:
        """Lines for `ratchet init`'s output."""
        if self.problem:
            return [f"not observed: {self.problem}"]
        return [*self._runs_lines(), *self._facts_lines()]

    def _runs_lines(self) -> list[str]:
        lines = [f"observed `{self.command}` on the committed code in the sandbox, "
                 f"{len(self.runs)} run(s) of at most {self.timeout_s:g}s:"]
        for number, run in enumerate(self.runs, 1):
            lines.append(f"  run {number} ({SEED_VARIABLE}={run.seed}): "
                         f"{run.outcome(self.timeout_s)}, {len(run.lines)} lines of output")
        if not self.completed and self.runs and self.runs[-1].lines:
            lines.append("  its last lines: " + " | ".join(self.runs[-1].lines[-3:]))
        return lines

    def _facts_lines(self) -> list[str]:
        lines = []
        printed = self.printed()
        if printed:
            shown = [f"{name} ({len(values)})" for name, values in printed.items()]
            more = len(shown) - SUMMARY_NAMES
            lines.append("printed: " + ", ".join(shown[:SUMMARY_NAMES])
                         + (f" and {more} more" if more > 0 else ""))
        if self.missing():
            lines.append("could not open (the sandbox has only committed files): "
                         + ", ".join(self.missing()))
        for entry in self.read_only():
            lines.append(f"  suggest [sandbox] read_only = [\"{entry}\"]")
        for path in untracked_code(self.lines, self.repo_root, self.workdir):
            lines.append(f"  {path} is code the commit lacks: commit it")
        if self.absent():
            lines.append("could not open, and not found outside the sandbox either: "
                         + ", ".join(self.absent()))
        seeded = [name for name in self.identical() if _fractional(printed.get(name, []))]
        if seeded:
            lines.append(f"printed the same in every run despite a different {SEED_VARIABLE}: "
                         f"{', '.join(seeded)} (the code fixes its own seed)")
        return lines


def identical_runs(observation: Observation) -> list[str]:
    """The names printed with the same values, in the same order, by every run that completed
    or ran out of time (at least two; a run cut short is compared on what it printed before
    it was stopped): with a different seed each, a sign the code fixes its own. Constants (a
    step count, a setting echoed) are among them; values that vary are not."""
    finished = [run for run in observation.runs if run.completed or run.timed_out]
    if len(finished) < 2:
        return []
    cut_short = any(run.timed_out for run in finished)
    first, *others = [printed_values(run.lines) for run in finished]
    return [name for name, values in first.items()
            if all(_same(values, other.get(name), cut_short) for other in others)]


def _same(a: Sequence[float], b: Sequence[float] | None, cut_short: bool) -> bool:
    """Both runs printed the name with the same values: all of them, or, when a run was cut
    short, every value both printed."""
    if not a or not b or (len(a) != len(b) and not cut_short):
        return False
    return all(x == y or (math.isnan(x) and math.isnan(y)) for x, y in zip(a, b, strict=False))


def _fractional(values: Sequence[float]) -> bool:
    return any(math.isfinite(v) and not v.is_integer() for v in values)


def observe(repo_root: Path, command: str, timeout_s: float, runs: int = 2, *,
            sandbox: SandboxConfig | None = None) -> Observation:
    """Run `command` `runs` times on the committed HEAD of `repo_root`, each in a fresh
    export in the sandbox of an experiment (`sandbox`: the task's `[sandbox]`, if it has
    one) with its own seed, killed past `timeout_s`. A sandbox that cannot work here or a
    repository without commits is the observation's `problem`, not an error."""
    if runs < 1:
        raise ValueError("observe needs at least one run")
    box = sandbox or SandboxConfig()
    config = TaskConfig(root=repo_root, name="observe", editable=(), command=command,
                        timeout_s=timeout_s, sandbox=box)
    try:
        repo, launcher = GitRepo(repo_root), launcher_for(box.mode)
        commit = repo.head()
        launcher.check()
        check_read_only(config)
        conceal = _concealed(repo)
    except RatchetError as exc:
        return Observation(command, repo_root, timeout_s, problem=str(exc))
    evaluator = Evaluator(config, conceal=conceal)
    runner = ProcessRunner(launcher)
    seeds = random.SystemRandom().sample(range(1, 2**31), runs)
    with _scratch(repo_root) as scratch:
        tree = scratch / "tree"
        done: list[ObservedRun] = []
        for number, seed in enumerate(seeds):
            done.append(_run_once(repo, commit, tree, scratch / f"run-{number}.log",
                                  evaluator, runner, seed))
            if _lacks_files(done[-1], repo_root):
                break  # the next run would fail the same way: the files are not there
    return Observation(command, repo_root, timeout_s, tuple(done), tree)


def _lacks_files(run: ObservedRun, repo_root: Path) -> bool:
    return not run.completed and not run.timed_out and bool(missing_paths(run.lines, repo_root))


def _run_once(repo: GitRepo, commit: str, tree: Path, log: Path, evaluator: Evaluator,
              runner: ProcessRunner, seed: int) -> ObservedRun:
    """One run in a fresh export of `commit` (nothing an earlier run wrote is there)."""
    config = evaluator.config
    assert config.command is not None
    repo.export(commit, tree)
    env = {"PYTHONUNBUFFERED": "1", **evaluator.environment(), SEED_VARIABLE: str(seed),
           HORIZON_VARIABLE: "1", "RATCHET_SLOT": "0"}
    try:
        outcome = runner.run(config.command, evaluator.sandbox(tree, sees_hidden=True), env,
                             config.timeout_s, log)
    finally:
        remove_tree(tree)
    return _record(seed, outcome, tail_lines(log))


def _record(seed: int, outcome: ProcessOutcome, lines: list[str]) -> ObservedRun:
    return ObservedRun(seed=seed, returncode=outcome.returncode, timed_out=outcome.timed_out,
                       lines=tuple(lines), wall_s=outcome.wall_s, cpu_s=outcome.cpu_s,
                       breach=outcome.breach)


def tail_lines(log: Path, most_lines: int = MAX_LINES, most_bytes: int = MAX_BYTES) -> list[str]:
    """The last lines of `log`: at most `most_lines`, from its last `most_bytes`."""
    try:
        with open(log, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(size - most_bytes, 0))
            raw = f.read(most_bytes)
    except OSError:
        return []
    lines = raw.decode("utf-8", errors="replace").splitlines()
    if size > most_bytes and lines:
        lines = lines[1:]  # the first was cut
    return lines[-most_lines:]


def _concealed(repo: GitRepo) -> list[Path]:
    """What a run must not see: the repository (and so the user's files beside the commit)
    and its git metadata, as for an experiment."""
    common = repo.git("rev-parse", "--path-format=absolute", "--git-common-dir").strip()
    return [repo.root, Path(common)]


@contextlib.contextmanager
def _scratch(repo_root: Path) -> Iterator[Path]:
    """A private folder under the repository's `.ratchet/` (made, ignored by git, and removed
    again if it was not there), removed with all it holds afterwards."""
    state = repo_root / STATE_DIR
    made = not state.exists()
    if made:
        state.mkdir()
        (state / ".gitignore").write_text(_IGNORE_ALL)
    scratch = Path(tempfile.mkdtemp(prefix="observe-", dir=state))
    try:
        yield scratch
    finally:
        remove_tree(scratch)
        if made and os.listdir(state) == [".gitignore"]:  # nothing else came to live there
            with contextlib.suppress(OSError):
                remove_tree(state)

