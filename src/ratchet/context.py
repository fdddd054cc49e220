"""What the engine and the proposers work with: one study's store, config, code and files.

`StudyContext` is the narrow object handed down from the `Study` facade: the engine, the
executors and the proposers see this and nothing above it.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterable, Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

from ratchet.config import TaskConfig
from ratchet.errors import ConfigError, PatchRejected, UsageError
from ratchet.execute.evaluate import SEED_VARIABLE, Evaluator, Overlay
from ratchet.execute.gitrepo import GitRepo
from ratchet.execute.sandbox import Launcher, check_read_only, launcher_for
from ratchet.execute.workspace import Candidate, CandidateBuilder, one_line, study_branch
from ratchet.globs import matches_any
from ratchet.knobs import catalog
from ratchet.knobs.scope import OUTSIDE, classify
from ratchet.knobs.seeding import seeding_change
from ratchet.knobs.seeds import (
    SeedSite,
    find_seeds,
    only_seeds_differ,
    rewrite_seeds,
    same_code,
)
from ratchet.knobs.source import Knob
from ratchet.records import Experiment, StudyRecord
from ratchet.store.database import STATE_DIR, Store, sqlite_files


class StudyContext:
    def __init__(self, store: Store, record: StudyRecord, config: TaskConfig,
                 repo: GitRepo) -> None:
        self.store, self.record, self.config, self.repo = store, record, config, repo
        self.state_dir = repo.root / STATE_DIR
        self.launcher: Launcher = launcher_for(config.sandbox.mode)
        self.evaluator = Evaluator(config, conceal=self.concealed_paths())
        self.builder = CandidateBuilder(repo, record.name, config.editable, config.protected)
        self.known_commits: set[str] = set()  # commits seen in this clone (git objects stay)

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def id(self) -> int:
        assert self.record.id is not None
        return self.record.id

    def experiments(self) -> list[Experiment]:
        return self.store.experiments(self.id)

    # knobs

    @cached_property
    def base_sources(self) -> dict[str, str]:
        """The editable Python files of the base commit, read once: knobs live in them."""
        return self.sources_at(self.record.base_commit)

    @cached_property
    def knobs(self) -> dict[str, Knob]:
        """The knobs of the base code; every `[space]` name must be one of them."""
        knobs = self.knobs_in(self.base_sources)
        catalog.check_space(self.config, self.base_sources)
        catalog.check_flags(self.config, self.base_sources)
        return knobs

    @cached_property
    def base_values(self) -> dict[str, Any]:
        return {k.name: k.value for k in self.knobs.values()}

    def knobs_at(self, commit: str) -> dict[str, Knob]:
        return self.knobs_in(self.sources_at(self.materialize(commit)))

    def knobs_in(self, sources: Mapping[str, str]) -> dict[str, Knob]:
        return catalog.knobs_in(sources, self.config)

    def sources_at(self, commit: str) -> dict[str, str]:
        """The files of `commit` that knobs are read from."""
        return editable_sources(self.repo, self.config, commit)

    # code states

    def build_candidate(self, experiment: Experiment, judged: bool = False
                        ) -> tuple[Candidate, str]:
        """The commit for an experiment (knob values on its parent, or its patch) and its
        scope: IN the classical space or OUTSIDE it. A change of seeding is refused unless the
        experiment was `judged` already (rebuilt from the record, under its own rules)."""
        parent = self.materialize(experiment.parent_commit or self.record.base_commit)
        if experiment.params is not None and experiment.commit is None:
            files = self._knob_files(experiment.params, parent)
            candidate = self.builder.from_files(parent, files, experiment.description,
                                                experiment.number)
            old = self.base_sources if parent == self.record.base_commit else \
                self.sources_at(parent)
            before = {p: old.get(p) for p in files}
            if not judged:
                _refuse_reseeding(before, dict(files))
            return candidate, classify(before, dict(files), self._space_names())
        candidate = self.builder.from_patch(parent, experiment.diff, experiment.description,
                                            experiment.number)
        before, after = self._changed_texts(candidate.parent, candidate.commit)
        if not judged:
            _refuse_reseeding(before, after)
        return candidate, self.scope_of(candidate.parent, candidate.commit)

    def materialize(self, commit: str) -> str:
        """`commit`, made in this clone if another driver's clone made it: its experiment's
        diff applied to its parent, which gives the same commit (candidates have fixed dates)."""
        if commit in self.known_commits or self.repo.has_commit(commit):
            self.known_commits.add(commit)
            return commit
        experiment = self.store.experiment_with_commit(self.id, commit)
        if experiment is None or commit == self.record.base_commit:
            raise UsageError(f"commit {commit[:10]} of study {self.name!r} is neither in this "
                             "repository nor recorded in the store (fetch the study's base "
                             "commit into this clone)")
        built = self.build_candidate(experiment, judged=True)[0].commit
        if built != commit:
            raise PatchRejected(f"experiment {experiment.number} rebuilt as {built[:10]}, "
                                f"not {commit[:10]}")
        return built

    def scope_of(self, parent: str, commit: str) -> str:
        """IN when only values of `[space]` knobs changed, else OUTSIDE (parsed-code check)."""
        old, new = self._changed_texts(parent, commit)
        if any(text is None for text in (*old.values(), *new.values())):
            return OUTSIDE  # a file added, removed, or not text
        return classify(old, new, self._space_names())

    def _changed_texts(self, parent: str, commit: str
                       ) -> tuple[dict[str, str | None], dict[str, str | None]]:
        """The changed files' texts before and after (None: absent on that side, or binary)."""
        old: dict[str, str | None] = {}
        new: dict[str, str | None] = {}
        for change in self.repo.changes(parent, commit):
            old[change.path] = None if change.status == "A" else \
                self.repo.read_text(parent, change.path)
            new[change.path] = None if change.status == "D" else \
                self.repo.read_text(commit, change.path)
        return old, new

    def _space_names(self) -> list[str]:
        return [p.name for p in self.config.space]

    # seeds

    @cached_property
    def varied_seeds(self) -> list[SeedSite]:
        """The hard-coded seeds of the base code that every run gets as its own RATCHET_SEED:
        those of the `[seeds] files`, which never include a protected file."""
        return self._seeds_in(self._python_files(self.config.seed_files))

    @cached_property
    def fixed_seeds(self) -> list[SeedSite]:
        """Hard-coded seeds of the base code that its runs may use: in the scripts the command
        runs (first, protected or not), then in the editable Python files."""
        scripts = [p for p in command_scripts(self.config.command)
                   if p in self._base_files]
        return self._seeds_in([*scripts, *(p for p in self._python_files(self.config.editable)
                                           if p not in scripts)])

    def seed_overlay(self, commit: str, seed: int) -> Overlay | None:
        """The `[seeds] files` of `commit` with their hard-coded seeds set to a run's `seed`,
        for that run's own copy of the code (on the executor's side, once per run)."""
        if not self.config.seed_files:
            return None
        files, written = {}, []
        patterns = self.config.seed_files
        for path in self.repo.list_files(commit):
            if not path.endswith(".py") or not matches_any(path, patterns) \
                    or matches_any(path, self.config.protected):
                continue
            text = self.repo.read_text(commit, path)
            sites = find_seeds(text, path) if text is not None else []
            if text is not None and sites:
                files[path] = rewrite_seeds(text, path, seed)
                written += [f"{s.path}:{s.line}" for s in sites]
        return Overlay(files, f"{SEED_VARIABLE}={seed}, written at "
                              f"{', '.join(written) or 'no seed of the [seeds] files'}")

    def seed_fix(self, site: SeedSite) -> str | None:
        """The `[seeds] files` entry that would vary `site` (none for a protected file)."""
        return None if matches_any(site.path, self.config.protected) else site.path

    def check_seed_files(self) -> None:
        """No file the `[seeds] files` globs match at the base commit may be protected."""
        for path in self._python_files(self.config.seed_files, protected_too=True):
            if matches_any(path, self.config.protected):
                raise ConfigError(f"ratchet.toml: [seeds].files: {path} is protected: ratchet "
                                  "never rewrites a protected file")

    @cached_property
    def _base_files(self) -> list[str]:
        return self.repo.list_files(self.record.base_commit)

    def _python_files(self, patterns: Iterable[str], protected_too: bool = False) -> list[str]:
        patterns = tuple(patterns)
        return [p for p in self._base_files if p.endswith(".py") and matches_any(p, patterns)
                and (protected_too or not matches_any(p, self.config.protected))]

    def _seeds_in(self, paths: Iterable[str]) -> list[SeedSite]:
        sites = []
        for path in paths:
            text = self.repo.read_text(self.record.base_commit, path)
            sites += find_seeds(text, path) if text is not None else []
        return sites

    # the study's branch

    def advance_branch(self, kept: Experiment, previous_best: Experiment) -> None:
        assert kept.commit is not None
        message = (f"ratchet {self.name} #{kept.number}: {kept.description}\n\n"
                   f"{self.config.metric.name}: {previous_best.value:.6g} -> {kept.value:.6g}")
        self._branch_to(kept.commit, message)

    def sync_branch(self) -> None:
        """Bring the branch to the best's code when another driver moved the best."""
        best = self.store.best(self.id)
        if best is None or best.commit is None or best.commit == self.record.base_commit:
            self.ensure_branch()
            return
        tip = self.ensure_branch()
        if self.repo.tree_of(tip) != self.repo.tree_of(self.materialize(best.commit)):
            self._branch_to(best.commit, f"ratchet {self.name} #{best.number}: "
                                         f"{best.description}")

    def ensure_branch(self) -> str:
        ref = f"refs/heads/{study_branch(self.name)}"
        tip = self.repo.resolve(ref)
        if tip is None:
            self.repo.update_ref(ref, self.record.base_commit)
            tip = self.record.base_commit
        return tip

    def _branch_to(self, commit: str, message: str) -> None:
        tip = self.ensure_branch()
        tree = self.repo.tree_of(self.materialize(commit))
        self.repo.update_ref(f"refs/heads/{study_branch(self.name)}",
                             self.repo.commit_tree(tree, tip, message))

    # files and protection

    def worktree_path(self, slot: int) -> Path:
        """A slot's work tree, this process's own: drivers may share a checkout."""
        return self.state_dir / "worktrees" / self.name / f"{os.getpid()}-slot-{slot}"

    def log_path(self, number: int) -> Path:
        return self.state_dir / "logs" / self.name / f"{number:05d}.log"

    def concealed_paths(self) -> list[Path]:
        """What no sandboxed process may see: the repository (its git metadata, `.ratchet/`
        with the store, logs and every work tree but its own), and a store kept elsewhere."""
        common = self.repo.git("rev-parse", "--path-format=absolute", "--git-common-dir")
        return [self.repo.root, Path(common.strip()), *sqlite_files(self.store.url)]

    def check_sandbox(self) -> str | None:
        """The sandbox works here, or a one-line error; the warning an unsandboxed run gives."""
        self.launcher.check()
        check_read_only(self.config)
        return self.launcher.warning()

    def _knob_files(self, params: Mapping[str, Any], parent: str) -> dict[str, str]:
        """The files with the knobs set to `params`, on the code of `parent`."""
        sources, knobs = self.base_sources, self.knobs
        if parent != self.record.base_commit:  # knobs searched on code a kept change made
            sources = self.sources_at(parent)
            knobs = self.knobs_in(sources)
        by_file: dict[str, dict[str, Any]] = {}
        for name, value in params.items():
            knob = knobs.get(name)
            if knob is None:
                raise PatchRejected(f"knob {name} no longer exists in the code")
            by_file.setdefault(knob.path, {})[name] = _like(knob.value, value)
        files = {}
        for path, values in by_file.items():
            try:
                files[path] = catalog.rewrite(path, sources[path], values)
            except (ValueError, KeyError, RecursionError, MemoryError) as exc:
                raise PatchRejected(f"cannot set knobs in {path}: {one_line(exc)}") from None
        return files


def command_scripts(command: str | None) -> list[str]:
    """The Python files a command names (`python train.py config/x.py` names both)."""
    try:
        tokens = shlex.split(command or "")
    except ValueError:  # unbalanced quotes: the shell would refuse it too
        return []
    return [os.path.normpath(t) for t in tokens if t.endswith(".py") and not t.startswith("-")]


def _refuse_reseeding(old: Mapping[str, str | None], new: Mapping[str, str | None]) -> None:
    """A change of how the code seeds its randomness is void, whoever proposed it: a lucky seed
    is no discovery, and one the runs cannot vary (`random.seed(a=1075)`, a seed key in a
    config file, RATCHET_SEED overridden) would repeat its draw on every run. A change of seed
    values alone says so in its own words."""
    if _only_seeds(old, new):
        reseeded = [p for p in old if only_seeds_differ(old[p] or "", new[p] or "", p)]
        raise PatchRejected(f"changes nothing but seed values ({', '.join(reseeded)})")
    difference = seeding_change(old, new)
    if difference is not None:
        raise PatchRejected(f"changes how the code seeds its randomness: {difference}")


def _only_seeds(old: Mapping[str, str | None], new: Mapping[str, str | None]) -> bool:
    """Python files changed in seed values alone (comments and formatting aside)."""
    if not old or any(old[p] is None or new.get(p) is None or not p.endswith(".py")
                      for p in old):
        return False
    reseeded = [p for p in old if only_seeds_differ(old[p] or "", new[p] or "", p)]
    return bool(reseeded) and all(p in reseeded or same_code(old[p] or "", new[p] or "")
                                  for p in old)


def editable_sources(repo: GitRepo, config: TaskConfig, commit: str) -> dict[str, str]:
    """The texts of the files of `commit` that knobs are read from."""
    texts = {path: repo.read_text(commit, path) for path in repo.list_files(commit)
             if catalog.holds_knobs(path, config)}
    return {path: text for path, text in texts.items() if text is not None}  # binary: no knobs


def _like(original: Any, value: Any) -> Any:
    """`value` in the type of the knob's original value where that loses nothing."""
    if isinstance(value, list):
        return tuple(value)
    if isinstance(original, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value
