"""The Python API: `open_study(...)` and a `Study`, which the command line only wraps.

    study = ratchet.open_study("path/to/repo", proposer="tpe", seed=0)
    study.run(max_experiments=30)
    study.best(), study.experiments()
"""

from __future__ import annotations

import fcntl
import os
import signal
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from ratchet.config import TaskConfig, load_config
from ratchet.errors import PatchRejected, UsageError
from ratchet.evaluate import Evaluator, RunResult
from ratchet.gitrepo import GitRepo
from ratchet.globs import matches_any
from ratchet.knobs import Knob, find_knobs, rewrite_knobs
from ratchet.loop import Budget, Engine, Progress, Reporter, SilentReporter, Slot
from ratchet.process import kill_group
from ratchet.proposers import IMPORTED, PatchProposer, Proposer, create_proposer
from ratchet.proposers import check_proposer_name as _check_proposer_name
from ratchet.records import KEEP, Experiment, StudyRecord
from ratchet.sandbox import Launcher, launcher_for
from ratchet.scope import classify
from ratchet.store import STATE_DIR, Store, default_url, sqlite_files
from ratchet.workspace import Candidate, CandidateBuilder, study_branch


@dataclass(frozen=True)
class BestResult:
    experiment: Experiment
    branch: str
    diff: str


def open_study(repo: str | Path = ".", name: str | None = None, *, storage: str | None = None,
               proposer: str | None = None, seed: int | None = None,
               create: bool = True, settings: Mapping[str, Any] | None = None) -> Study:
    """Open the named study of the repository at `repo`, creating it if `create` allows.

    Without a name: the most recent study of the repository, or, when `proposer` names
    another proposer than that study's (or there is none), a new study for that proposer.
    `settings` (an agent's model and endpoint, `fresh`) are recorded with a new study.
    """
    git = GitRepo.find(Path(repo))
    config = load_config(git.root)
    _ensure_state_dir(git.root)
    store = Store(storage or default_url(git.root))
    if proposer is not None:
        _check_proposer_name(proposer)
    settings = {k: v for k, v in (settings or {}).items() if v not in (None, False)}
    record = _find_or_create(store, git, config, name, proposer, seed, create, settings)
    return Study(store, record, config, git)


def _find_or_create(store: Store, git: GitRepo, config: TaskConfig, name: str | None,
                    proposer: str | None, seed: int | None, create: bool,
                    settings: dict[str, Any]) -> StudyRecord:
    if name is not None:
        record = store.get_study(name)
        if record is not None:
            if proposer is not None and proposer != record.proposer:
                raise UsageError(f"study {name!r} uses the {record.proposer} proposer, "
                                 f"not {proposer} (start a new study with --study NEW_NAME)")
            _check_same_settings(record, settings)
            return record
    else:
        studies = [s for s in store.studies(str(git.root)) if s.proposer != IMPORTED]
        if studies and (proposer is None or studies[-1].proposer == proposer):
            _check_same_settings(studies[-1], settings)
            return studies[-1]
        if not create:
            raise UsageError("no study in this repository yet (start one with `ratchet run`)")
        taken = {s.name for s in store.studies()}
        base = proposer or "tpe"
        name = next(f"{base}-{i}" for i in range(1, len(taken) + 2) if f"{base}-{i}" not in taken)
    if not create:
        raise UsageError(f"no study named {name!r} (see `ratchet status` for the studies here)")
    _check_study_name(name)
    return store.create_study(StudyRecord(
        name=name, task=config.name, repo_root=str(git.root), base_commit=git.head(),
        proposer=proposer or "tpe", seed=seed, rule=config.decision.rule, settings=settings))


def _check_same_settings(record: StudyRecord, settings: dict[str, Any]) -> None:
    for key, value in settings.items():
        if key in record.settings and record.settings[key] != value:
            raise UsageError(f"study {record.name!r} was started with {key} "
                             f"{record.settings[key]!r}, not {value!r} (start a new study "
                             "with --study NEW_NAME)")


def _check_study_name(name: str) -> None:
    if not name or not all(c.isalnum() or c in "-_." for c in name) or name.startswith("."):
        raise UsageError(f"study name {name!r}: use letters, digits, '-', '_' and '.' only")


def _ensure_state_dir(root: Path) -> None:
    state = root / STATE_DIR
    state.mkdir(exist_ok=True)
    ignore = state / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# ratchet's state: the store, logs and work trees\n*\n")


class Study:
    def __init__(self, store: Store, record: StudyRecord, config: TaskConfig,
                 repo: GitRepo) -> None:
        self.store, self.record, self.config, self.repo = store, record, config, repo
        self.state_dir = repo.root / STATE_DIR
        self.launcher: Launcher = launcher_for(config.sandbox.mode)
        self.evaluator = Evaluator(config, conceal=self.concealed_paths())
        self.builder = CandidateBuilder(repo, record.name, config.editable, config.protected)

    @cached_property
    def base_sources(self) -> dict[str, str]:
        """The editable Python files of the base commit, read once: knobs live in them."""
        return self.sources_at(self.record.base_commit)

    @cached_property
    def knobs(self) -> dict[str, Knob]:
        """The knobs of the base code; every `[space]` name must be one of them."""
        knobs = _knobs_in(self.base_sources)
        for param in self.config.space:
            if param.name not in knobs:
                raise UsageError(f"ratchet.toml: [space].{param.name}: no module-level constant "
                                 f"of that name in the editable files")
        return knobs

    @cached_property
    def base_values(self) -> dict[str, Any]:
        return {k.name: k.value for k in self.knobs.values()}

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def id(self) -> int:
        assert self.record.id is not None
        return self.record.id

    # queries

    def experiments(self) -> list[Experiment]:
        return self.store.experiments(self.id)

    def experiment(self, number: int) -> Experiment:
        experiment = self.store.experiment(self.id, number)
        if experiment is None:
            raise UsageError(f"study {self.name!r} has no experiment {number}")
        return experiment

    def best(self) -> Experiment | None:
        kept = self.store.experiments(self.id, statuses=[KEEP])
        return kept[-1] if kept else None

    # running

    def run(self, max_experiments: int | None = None, max_time_s: float | None = None,
            max_usd: float | None = None, parallel: int = 1, gpus: list[str] | None = None,
            reporter: Reporter | None = None, proposer: Proposer | None = None) -> Progress:
        if parallel < 1:
            raise UsageError("--parallel must be at least 1")
        proposer = proposer or create_proposer(self)
        budget = Budget(max_experiments, max_time_s, max_usd)
        self.check_sandbox(reporter or SilentReporter())
        self._ensure_branch()
        with self._lock():
            return Engine(self, proposer, budget, parallel, gpus, reporter).run()

    def try_patch(self, patch: str, description: str = "user patch",
                  reporter: Reporter | None = None, onto_base: bool = False) -> Experiment:
        """Evaluate a user's change through exactly the path a proposal takes, and record it.

        The patch applies to the best code so far, or with `onto_base` to the study's base.
        """
        self.run(reporter=reporter, proposer=PatchProposer(patch, description, onto_base))
        return next(e for e in reversed(self.experiments()) if e.kind == "try")

    # what the engine calls

    def build_candidate(self, experiment: Experiment) -> Candidate:
        """The commit for a proposed experiment: knob values on the base, or its patch."""
        parent = experiment.parent_commit or self.record.base_commit
        if experiment.params is not None:
            return self.builder.from_files(parent, self._knob_files(experiment.params, parent),
                                           experiment.description, experiment.number)
        return self.builder.from_patch(parent, experiment.diff, experiment.description,
                                       experiment.number)

    def evaluate_in_slot(self, experiment: Experiment, slot: Slot) -> RunResult:
        assert slot.runner is not None
        if experiment.commit is None:
            try:
                candidate = self.build_candidate(experiment)
            except PatchRejected as exc:
                return RunResult(status="void", reason=f"rejected before running: {exc}")
            experiment.commit, experiment.diff = candidate.commit, candidate.diff
            experiment.scope = self.scope_of(candidate.parent, candidate.commit)
            self.store.save_experiment(experiment)
        self.repo.export(experiment.commit, slot.worktree)
        log = Path(experiment.log_path or self.log_path(experiment.number))
        log.parent.mkdir(parents=True, exist_ok=True)
        env = {"RATCHET_STUDY": self.name, "RATCHET_EXPERIMENT": str(experiment.number),
               "RATCHET_SLOT": str(slot.index)}
        if slot.gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = slot.gpu
        return self.evaluator.evaluate(slot.worktree, log, slot.runner, env)

    def scope_of(self, parent: str, commit: str) -> str:
        """IN when only values of `[space]` knobs changed, else OUTSIDE (parsed-code check)."""
        old: dict[str, str | None] = {}
        new: dict[str, str | None] = {}
        for change in self.repo.changes(parent, commit):
            old[change.path] = None if change.status == "A" else \
                self.repo.read_file(parent, change.path)
            new[change.path] = None if change.status == "D" else \
                self.repo.read_file(commit, change.path)
        return classify(old, new, [p.name for p in self.config.space])

    def advance_branch(self, kept: Experiment, previous_best: Experiment) -> None:
        branch = f"refs/heads/{study_branch(self.name)}"
        tip = self.repo.resolve(branch) or self.record.base_commit
        assert kept.commit is not None
        message = (f"ratchet {self.name} #{kept.number}: {kept.description}\n\n"
                   f"{self.config.metric.name}: {previous_best.value:.6g} -> {kept.value:.6g}")
        commit = self.repo.commit_tree(self.repo.tree_of(kept.commit), tip, message)
        self.repo.update_ref(branch, commit)

    def publish_best(self) -> BestResult:
        best = self.best()
        if best is None:
            raise UsageError(f"study {self.name!r} has no finished baseline yet")
        self._ensure_branch()
        branch = study_branch(self.name)
        diff = self.repo.diff(self.record.base_commit, f"refs/heads/{branch}")
        return BestResult(experiment=best, branch=branch, diff=diff)

    def concealed_paths(self) -> list[Path]:
        """What no sandboxed process may see: the repository (its git metadata, `.ratchet/`
        with the store, logs and every work tree but its own), and a store kept elsewhere."""
        common = self.repo.git("rev-parse", "--path-format=absolute", "--git-common-dir")
        return [self.repo.root, Path(common.strip()), *sqlite_files(self.store.url)]

    def check_sandbox(self, reporter: Reporter) -> None:
        """Once per run, before the baseline: the sandbox works here, or a one-line error; an
        unsandboxed run says what is unprotected."""
        self.launcher.check()
        for entry in self.config.sandbox.read_only:
            path = Path(entry).expanduser()
            if not (path if path.is_absolute() else self.repo.root / path).exists():
                raise UsageError(f"ratchet.toml: [sandbox].read_only: {entry!r} does not exist")
        warning = self.launcher.warning()
        if warning:
            reporter.message(warning)

    def worktree_path(self, slot: int) -> Path:
        return self.state_dir / "worktrees" / self.name / f"slot-{slot}"

    def log_path(self, number: int) -> Path:
        return self.state_dir / "logs" / self.name / f"{number:05d}.log"

    def kill_leftovers(self, unfinished: Iterable[Experiment]) -> None:
        """Kill evaluations a killed driver left behind, found by process group and work tree."""
        groups = {e.pgid for e in unfinished if e.pgid}
        if groups:
            _kill_groups_under(groups, self.state_dir / "worktrees" / self.name)

    # internals

    def _knob_files(self, params: Mapping[str, Any], parent: str) -> dict[str, str]:
        """The files with the knobs set to `params`, on the code of `parent`."""
        sources, knobs = self.base_sources, self.knobs
        if parent != self.record.base_commit:  # knobs searched on code a kept change made
            sources = self.sources_at(parent)
            knobs = _knobs_in(sources)
        by_file: dict[str, dict[str, Any]] = {}
        for name, value in params.items():
            knob = knobs.get(name)
            if knob is None:
                raise PatchRejected(f"knob {name} no longer exists in the code")
            by_file.setdefault(knob.path, {})[name] = _like(knob.value, value)
        return {path: rewrite_knobs(sources[path], values) for path, values in by_file.items()}

    def knobs_at(self, commit: str) -> dict[str, Knob]:
        return _knobs_in(self.sources_at(commit))

    def sources_at(self, commit: str) -> dict[str, str]:
        """The editable Python files of `commit`."""
        return {path: self.repo.read_file(commit, path) for path in self.repo.list_files(commit)
                if path.endswith(".py") and matches_any(path, self.config.editable)}

    def _ensure_branch(self) -> None:
        branch = f"refs/heads/{study_branch(self.name)}"
        if self.repo.resolve(branch) is None:
            self.repo.update_ref(branch, self.record.base_commit)

    def _lock(self) -> _StudyLock:
        return _StudyLock(self.state_dir / "locks" / f"{self.name}.lock", self.name)


def _knobs_in(sources: Mapping[str, str]) -> dict[str, Knob]:
    """Knobs by name across files; the first definition of a name wins."""
    knobs: dict[str, Knob] = {}
    for path, source in sources.items():
        for knob in find_knobs(source, path):
            knobs.setdefault(knob.name, knob)
    return knobs


def _like(original: Any, value: Any) -> Any:
    """`value` in the type of the knob's original value where that loses nothing."""
    if isinstance(value, list):
        return tuple(value)
    if isinstance(original, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _kill_groups_under(groups: set[int], root: Path) -> None:
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            if os.getpgid(pid) in groups and Path(os.readlink(f"/proc/{pid}/cwd")).is_relative_to(
                    root):
                kill_group(os.getpgid(pid), signal.SIGKILL)
        except (OSError, ValueError):
            continue


class _StudyLock:
    """One driver per study at a time: a second `ratchet run` is refused, not interleaved."""

    def __init__(self, path: Path, name: str) -> None:
        self.path, self.name = path, name

    def __enter__(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = open(self.path, "a+")
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.handle.close()
            raise UsageError(f"study {self.name!r} is already running in another process") from None

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.handle, fcntl.LOCK_UN)
        self.handle.close()
