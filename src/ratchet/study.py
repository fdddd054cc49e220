"""The Python API: `open_study(...)` and a `Study`, which the command line only wraps.

    study = ratchet.open_study("path/to/repo", proposer="tpe", seed=0)
    study.run(max_experiments=30)
    study.best(), study.experiments()
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ratchet.config import (
    TASK_FILE,
    TaskConfig,
    changed_keys,
    config_from_text,
    read_toml,
)
from ratchet.context import StudyContext, editable_sources
from ratchet.engine import (
    HEARTBEAT_S,
    STALE_AFTER_S,
    Budget,
    Engine,
    Progress,
    Reporter,
    SilentReporter,
)
from ratchet.errors import UsageError
from ratchet.execute.executor import Executor
from ratchet.execute.gitrepo import GitRepo
from ratchet.execute.local import LocalExecutor
from ratchet.execute.sandbox import check_read_only
from ratchet.execute.workspace import study_branch
from ratchet.knobs import catalog
from ratchet.proposers import IMPORTED, PatchProposer, Proposer, create_proposer
from ratchet.proposers import check_proposer_name as _check_proposer_name
from ratchet.proposers.classical import forget_sampler
from ratchet.records import KEEP, TRY, Driver, Experiment, StudyRecord
from ratchet.store.database import STATE_DIR, Store, default_url, sqlite_files

NETWORK_FILESYSTEMS = ("nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "fuse", "ceph", "glusterfs",
                       "lustre", "afs")


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
    _ensure_state_dir(git.root)
    store = Store(storage or default_url(git.root))
    if proposer is not None:
        _check_proposer_name(proposer)
    settings = {k: v for k, v in (settings or {}).items() if v not in (None, False)}
    record = _find(store, git, name, proposer, settings)
    if record is None:
        if not create:
            raise UsageError(f"no study named {name!r} (see `ratchet status` for the studies "
                             "here)" if name else "no study in this repository yet (start one "
                             "with `ratchet run`)")
        record = _create(store, git, name or _next_name(store, proposer), proposer, seed,
                         settings)
    return Study(store, record, frozen_config(store, record, git), git)


def _find(store: Store, git: GitRepo, name: str | None, proposer: str | None,
          settings: dict[str, Any]) -> StudyRecord | None:
    """The named study, or without a name the repository's latest if the proposer matches."""
    if name is not None:
        record = store.get_study(name)
        if record is not None and proposer is not None and proposer != record.proposer:
            raise UsageError(f"study {name!r} uses the {record.proposer} proposer, "
                             f"not {proposer} (start a new study with --study NEW_NAME)")
    else:
        studies = [s for s in store.studies(str(git.root)) if s.proposer != IMPORTED]
        record = studies[-1] if studies and proposer in (None, studies[-1].proposer) else None
    if record is not None:
        _check_same_settings(record, settings)
    return record


def _next_name(store: Store, proposer: str | None) -> str:
    taken = {s.name for s in store.studies()}
    base = proposer or "tpe"
    return next(f"{base}-{i}" for i in range(1, len(taken) + 2) if f"{base}-{i}" not in taken)


def _create(store: Store, git: GitRepo, name: str, proposer: str | None, seed: int | None,
            settings: dict[str, Any]) -> StudyRecord:
    """A new study on the current commit, with that commit's task file frozen into it: its
    rules are the committed ones, never an edit lying around in the checkout."""
    _check_study_name(name)
    base = git.head()
    working = _checkout_task_file(git)
    if working is None:
        raise UsageError(f"{TASK_FILE}: not found in {git.root} (run `ratchet init` to write "
                         "one)")
    config = config_from_text(working, git.root)  # the file's own mistakes are named first
    sources = editable_sources(git, config, base)
    catalog.check_space(config, sources)
    catalog.check_flags(config, sources)
    check_read_only(config)
    text = _committed_task_file(git, base, working)
    return store.get_or_create_study(StudyRecord(
        name=name, task=config.name, repo_root=str(git.root), base_commit=base,
        proposer=proposer or "tpe", seed=seed, rule=config.decision.rule, settings=settings,
        config=text))


def _committed_task_file(git: GitRepo, base: str, working: str) -> str:
    """The task file committed at `base`, which must be the checkout's `working` one: a study
    runs by the committed file, never an edit lying around."""
    if not git.has_file(base, TASK_FILE):
        raise UsageError(f"{TASK_FILE} is not committed: a study runs by the committed task "
                         f"file (git add {TASK_FILE} && git commit)")
    text = git.read_file(base, TASK_FILE)
    changed = task_file_changes(text, working)
    if changed:
        raise UsageError(f"{TASK_FILE} has uncommitted changes ({changed}): commit them first; "
                         "a study runs by the committed task file")
    return text


def task_file_changes(reference: str, other: str) -> str | None:
    """The keys in which two task files differ, for a message (comments and layout are no
    difference); None when they agree."""
    changed = changed_keys(read_toml(reference), read_toml(other))
    return ", ".join(changed[:6]) + (", …" if len(changed) > 6 else "") if changed else None


def _checkout_task_file(git: GitRepo) -> str | None:
    path = git.root / TASK_FILE
    return path.read_text(errors="replace") if path.is_file() else None


def frozen_config(store: Store, record: StudyRecord, git: GitRepo) -> TaskConfig:
    """The task file the study started with. A study from before task files were frozen
    freezes its base commit's (or, lacking one, the checkout's) now."""
    if record.config is None:
        assert record.id is not None
        in_base = git.has_commit(record.base_commit) and \
            git.has_file(record.base_commit, TASK_FILE)
        text = git.read_file(record.base_commit, TASK_FILE) if in_base else \
            _checkout_task_file(git)
        if text is None:
            raise UsageError(f"study {record.name!r} has no recorded task file and {TASK_FILE} "
                             f"is not in {git.root} (run `ratchet init` to write one)")
        record.config = store.freeze_config(record.id, text)
    return config_from_text(record.config, git.root)


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
    """The facade: open, query, run, try, publish. Below it, the engine sees only the study's
    `context`, an executor and a proposer."""

    def __init__(self, store: Store, record: StudyRecord, config: TaskConfig,
                 repo: GitRepo) -> None:
        self.store, self.repo = store, repo
        self._bind(record, config)

    def _bind(self, record: StudyRecord, config: TaskConfig) -> None:
        self.context = StudyContext(self.store, record, config, self.repo)
        self.record, self.config = record, config

    @property
    def name(self) -> str:
        return self.context.name

    @property
    def id(self) -> int:
        return self.context.id

    # queries

    def experiments(self) -> list[Experiment]:
        return self.store.experiments(self.id)

    def experiment(self, number: int) -> Experiment:
        experiment = self.store.experiment(self.id, number)
        if experiment is None:
            raise UsageError(f"study {self.name!r} has no experiment {number}")
        return experiment

    def best(self) -> Experiment | None:
        return self.store.best(self.id)

    def drivers(self, live: bool = False) -> list[Driver]:
        return self.store.drivers(self.id, live)

    # running

    def run(self, max_experiments: int | None = None, max_time_s: float | None = None,
            max_usd: float | None = None, parallel: int = 1, gpus: list[str] | None = None,
            reporter: Reporter | None = None, proposer: Proposer | None = None,
            executor: str = "local", address: str | None = None,
            heartbeat_s: float = HEARTBEAT_S, stale_after_s: float = STALE_AFTER_S) -> Progress:
        """Run this driver until a budget ends. Other drivers (processes, machines) may run
        the same study at the same time through the same database."""
        if parallel < 1:
            raise UsageError("--parallel must be at least 1")
        reporter = reporter or SilentReporter()
        restarted = self.check_task_file()
        if restarted:
            reporter.message(restarted)
        check_concurrency(self.store)
        proposer = proposer or create_proposer(self.context)
        if not self.repo.has_commit(self.record.base_commit):
            raise UsageError(f"study {self.name!r} starts from commit "
                             f"{self.record.base_commit[:10]}, which this repository lacks "
                             "(git fetch it from the clone that started the study)")
        warning = self.context.check_sandbox()
        if warning:
            reporter.message(warning)
        self.context.ensure_branch()
        # The executor is ready (a cluster's workers started) before the driver registers:
        # from then on it works, and other drivers see it.
        runner = self._executor(executor, parallel, gpus, address)
        try:
            driver = Engine.register(self.context, runner)
        except BaseException:
            runner.close()
            raise
        engine = Engine(self.context, proposer, runner, Budget(max_experiments, max_time_s,
                                                               max_usd), reporter,
                        heartbeat_s=heartbeat_s, stale_after_s=stale_after_s, driver=driver)
        return engine.run()

    def check_task_file(self) -> str | None:
        """Refuse to go on when the checkout's task file is not the one the study froze, unless
        the study never kept a result: nothing measured binds it, so it starts again from the
        checkout under the committed file. The message saying it did, if it did."""
        working = _checkout_task_file(self.repo)
        if working is None or self.record.config is None:
            return None
        changed = task_file_changes(self.record.config, working)
        if not changed:
            return None
        if any(e.status == KEEP for e in self.experiments()):
            commit = "" if self._committed(working) else \
                f"commit it (git add {TASK_FILE} && git commit), then "
            raise UsageError(
                f"{TASK_FILE} differs from the one study {self.name!r} started with "
                f"({changed}): a study that kept a result keeps its rules; restore the file "
                f"to resume it, or {commit}start a new study under it with "
                "`ratchet run --study NEW_NAME ...`")
        return self._restart(working, changed)

    def _committed(self, working: str) -> bool:
        head = self.repo.head()
        return self.repo.has_file(head, TASK_FILE) and \
            task_file_changes(self.repo.read_file(head, TASK_FILE), working) is None

    def _restart(self, working: str, changed: str) -> str:
        """Start again from the checkout's commit under its task file: the record keeps what
        was run, the branch moves to the new base, and a new baseline will be measured."""
        base = self.repo.head()
        text = _committed_task_file(self.repo, base, working)
        config = config_from_text(text, self.repo.root)
        self.store.reclaim_stale(self.id, STALE_AFTER_S)
        record = self.store.restart_study(self.id, base, text, config.name,
                                          config.decision.rule)
        with self.store.schema_lock():
            forget_sampler(self.store.url, self.name)  # its trials fit the old [space]
        self.repo.update_ref(f"refs/heads/{study_branch(self.name)}", base)
        self._bind(record, config)
        before = self.experiments()
        listed = ", ".join(f"#{e.number} {e.status}" for e in before[:3]) + \
            (", …" if len(before) > 3 else "")
        earlier = f"; its earlier experiments ({listed}) stay in its record" if before else ""
        return (f"study {self.name!r} never kept a result, so {TASK_FILE}'s changes "
                f"({changed}) do not bind it: it starts again from commit {base[:10]}, "
                f"branch {study_branch(self.name)} with it{earlier}; a new baseline is measured")

    def try_patch(self, patch: str, description: str = "user patch",
                  reporter: Reporter | None = None, onto_base: bool = False) -> Experiment:
        """Evaluate a user's change through exactly the path a proposal takes, and record it.

        The patch applies to the best code so far, or with `onto_base` to the study's base.
        """
        before = {e.number for e in self.experiments()}
        self.run(reporter=reporter, proposer=PatchProposer(patch, description, onto_base))
        return next(e for e in reversed(self.experiments())
                    if e.kind == TRY and e.number not in before)

    def publish_best(self) -> BestResult:
        best = self.best()
        if best is None:
            raise UsageError(f"study {self.name!r} has no finished baseline yet")
        self.context.sync_branch()
        branch = study_branch(self.name)
        diff = self.repo.diff(self.record.base_commit, f"refs/heads/{branch}")
        return BestResult(experiment=best, branch=branch, diff=diff)

    def _executor(self, kind: str, parallel: int, gpus: list[str] | None,
                  address: str | None) -> Executor:
        context = self.context
        if kind == "local":
            if address is not None:
                raise UsageError("--address is for --executor ray")
            return LocalExecutor(self.repo, context.evaluator, context.launcher,
                                 [context.worktree_path(i) for i in range(parallel)],
                                 gpus)
        if kind == "ray":
            from ratchet.execute.ray_executor import RayExecutor

            return RayExecutor(self.repo, self.config, address or "auto", parallel)
        raise UsageError(f"unknown executor {kind!r} (choose from: local, ray)")


def check_concurrency(store: Store, mounts: str | None = None) -> None:
    """Several drivers share a study through the database: PostgreSQL anywhere, SQLite only
    where its file lives on this machine's own disk (its locks do not hold over NFS)."""
    files = sqlite_files(store.url)
    if files and _on_network_filesystem(files[0].parent, mounts):
        raise UsageError(f"the SQLite store {files[0]} is on a network filesystem, where its "
                         "locks are unsafe: use --storage postgresql://...")


def _on_network_filesystem(path: Path, mounts: str | None = None) -> bool:
    """Whether `path` lies on NFS, CIFS or another network mount (`mounts`: /proc/mounts)."""
    if mounts is None:
        try:
            mounts = Path("/proc/mounts").read_text()
        except OSError:
            return False
    best, kind = "", ""
    resolved = str(path.resolve())
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        mount = fields[1]
        inside = resolved == mount or resolved.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) > len(best):
            best, kind = mount, fields[2]
    return kind.split(".")[0] in NETWORK_FILESYSTEMS
