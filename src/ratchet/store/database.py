"""The store: studies and experiments in SQLite (default) or PostgreSQL, through SQLAlchemy.

Every call is its own committed transaction, so a killed driver loses nothing it had recorded.
The schema is versioned with Alembic migrations that run when a store is opened.
"""

from __future__ import annotations

import dataclasses
import fcntl
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command as alembic_command
from alembic.config import Config as AlembicConfig
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from ratchet.errors import RatchetError, UsageError
from ratchet.records import (
    BASELINE,
    KEEP,
    PENDING,
    RUNNING,
    UNFINISHED,
    VOID,
    WAITING,
    Driver,
    Experiment,
    GeneralizationRun,
    StudyRecord,
)
from ratchet.store.glance import STATE_DIR, default_url  # noqa: F401 (callers import them here)

MIGRATION_LOCK_KEY = 0x72617463  # "ratc": PostgreSQL advisory lock held while migrating
SUPPORTED = ("sqlite", "postgresql")


REASON_CHARS = 2000


class _Base(DeclarativeBase):
    pass


class _ShortText(sa.types.TypeDecorator[str]):
    """Text cut to REASON_CHARS on its way in: a reason quotes output, which code under test
    controls and could make megabytes long."""

    impl = sa.Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Any) -> str | None:
        if value is None or len(value) <= REASON_CHARS:
            return value
        return value[:REASON_CHARS - 1] + "…"


class _StudyRow(_Base):
    __tablename__ = "ratchet_studies"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200), unique=True)
    task: Mapped[str] = mapped_column(sa.String(200))
    repo_root: Mapped[str] = mapped_column(sa.Text)
    base_commit: Mapped[str] = mapped_column(sa.String(64))
    proposer: Mapped[str] = mapped_column(sa.String(100))
    seed: Mapped[int | None]
    rule: Mapped[str] = mapped_column(sa.String(40))
    sigma: Mapped[float | None]
    settings: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    # The kept experiment that challengers must beat, and a counter bumped with every change to
    # it: a driver moves the pointer only if it still holds the value it judged against.
    best_id: Mapped[int | None]
    best_version: Mapped[int] = mapped_column(default=0, server_default="0")
    config: Mapped[str | None] = mapped_column(sa.Text)  # the task file, frozen at the start


class _DriverRow(_Base):
    __tablename__ = "ratchet_drivers"
    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(sa.ForeignKey("ratchet_studies.id"))
    host: Mapped[str] = mapped_column(sa.String(255))
    pid: Mapped[int]
    executor: Mapped[str] = mapped_column(sa.String(40))
    slots: Mapped[int]
    started_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    heartbeat_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    stopped_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    stop_reason: Mapped[str | None] = mapped_column(sa.Text)


class _ExperimentRow(_Base):
    __tablename__ = "ratchet_experiments"
    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(sa.ForeignKey("ratchet_studies.id"))
    number: Mapped[int]
    kind: Mapped[str] = mapped_column(sa.String(20))
    status: Mapped[str] = mapped_column(sa.String(20))
    parent_commit: Mapped[str | None] = mapped_column(sa.String(64))
    commit: Mapped[str | None] = mapped_column(sa.String(64))
    description: Mapped[str] = mapped_column(sa.Text)
    params: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    diff: Mapped[str] = mapped_column(sa.Text)
    values: Mapped[list[float]] = mapped_column(sa.JSON)
    seeds: Mapped[list[int]] = mapped_column(sa.JSON, default=list, server_default="[]")
    value: Mapped[float | None]
    secondary: Mapped[dict[str, float]] = mapped_column(sa.JSON)
    holdout: Mapped[float | None]
    delta: Mapped[float | None]
    decision: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    reason: Mapped[str | None] = mapped_column(_ShortText)
    wall_s: Mapped[float]
    cpu_s: Mapped[float]
    peak_mem_mb: Mapped[float]
    cost_usd: Mapped[float]
    llm_usd: Mapped[float]
    tokens_in: Mapped[int]
    tokens_out: Mapped[int]
    tokens_cached: Mapped[int]
    rationale: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    trial_number: Mapped[int | None]
    scope: Mapped[str | None] = mapped_column(sa.String(10))
    slot: Mapped[int | None]
    pgid: Mapped[int | None]
    driver_id: Mapped[int | None]
    remeasure: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    log_path: Mapped[str | None] = mapped_column(sa.Text)
    curve: Mapped[list[list[float]] | None] = mapped_column(sa.JSON)
    saved_s: Mapped[float] = mapped_column(default=0.0, server_default="0")
    screens: Mapped[list[list[float]]] = mapped_column(sa.JSON, default=list,
                                                       server_default="[]")
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))


class _GeneralizationRow(_Base):
    __tablename__ = "ratchet_generalization"
    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(sa.ForeignKey("ratchet_studies.id"))
    experiment_number: Mapped[int]
    horizon: Mapped[float]
    run: Mapped[int]
    status: Mapped[str] = mapped_column(sa.String(20))
    value: Mapped[float | None]
    reason: Mapped[str | None] = mapped_column(_ShortText)
    wall_s: Mapped[float]
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))


@contextmanager
def _sqlite_file_lock(url: str) -> Iterator[None]:
    """An exclusive lock beside a SQLite database file (processes of one machine); nothing for
    a server, whose migration takes an advisory lock instead."""
    files = sqlite_files(url)
    if not files:
        yield
        return
    with open(f"{files[0]}.migrate-lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def sqlite_files(url: str) -> list[Path]:
    """The files of a SQLite store (database, WAL, shared memory); none for a server."""
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite") or not parsed.database \
            or parsed.database == ":memory:":
        return []
    database = Path(parsed.database).resolve()
    return [database, *(Path(f"{database}{suffix}") for suffix in ("-wal", "-shm", "-journal"))]


def normalize_url(url: str) -> str:
    """A SQLAlchemy URL for a supported backend, or a UsageError that names the problem."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise UsageError(f"--storage {url!r}: not a database URL "
                         "(expected sqlite:///path/to.db or postgresql://host/db)") from None
    backend = parsed.get_backend_name()
    if backend not in SUPPORTED:
        raise UsageError(f"--storage {url!r}: unsupported database {backend!r} "
                         "(use sqlite or postgresql)")
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise UsageError(f"--storage {url!r}: a SQLite store in memory would lose every "
                             "result when ratchet stops; give a file (sqlite:///path/to.db)")
        parent = Path(parsed.database).parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"--storage {url!r}: cannot create {parent}: "
                             f"{exc.strerror or exc}") from None
    return parsed.render_as_string(hide_password=False)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # In WAL mode NORMAL syncs at checkpoints, not at every commit: a killed process loses
    # nothing committed; only a power cut may lose the last commits, never consistency.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


class Store:
    """Studies and their experiments, behind the same calls on SQLite and PostgreSQL."""

    def __init__(self, url: str) -> None:
        self.url = normalize_url(url)
        self.engine: Engine = sa.create_engine(self.url, pool_pre_ping=True)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        try:
            self._migrate()
        except OSError as exc:  # e.g. the lock file beside a SQLite database
            raise UsageError(f"cannot open storage {make_url(self.url)!r}: "
                             f"{exc.strerror or exc}") from None
        except SQLAlchemyError as exc:
            reason = str(exc.orig if getattr(exc, "orig", None) else exc).strip().splitlines()
            raise UsageError(f"cannot open storage {make_url(self.url)!r}: "
                             f"{reason[0] if reason else type(exc).__name__}") from None

    def _migrate(self) -> None:
        """Create or upgrade the schema; drivers that start together take turns."""
        config = AlembicConfig()
        config.set_main_option("script_location",
                               str(resources.files("ratchet.store") / "migrations"))
        with _sqlite_file_lock(self.url), self.engine.begin() as connection:
            if connection.dialect.name == "postgresql":  # held until this transaction ends
                connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"),
                                   {"key": MIGRATION_LOCK_KEY})
            config.attributes["connection"] = connection
            alembic_command.upgrade(config, "head")

    @contextmanager
    def schema_lock(self) -> Iterator[None]:
        """Held while a schema is made: ours, or Optuna's (whose own creation is not safe when
        drivers start together). Others wait for it."""
        with _sqlite_file_lock(self.url), self.engine.connect() as connection:
            postgres = connection.dialect.name == "postgresql"
            if postgres:
                connection.execute(sa.text("SELECT pg_advisory_lock(:key)"),
                                   {"key": MIGRATION_LOCK_KEY})
                connection.commit()
            try:
                yield
            finally:
                if postgres:
                    connection.execute(sa.text("SELECT pg_advisory_unlock(:key)"),
                                       {"key": MIGRATION_LOCK_KEY})
                    connection.commit()

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _session(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            yield session

    # studies

    def create_study(self, record: StudyRecord,
                     experiments: Iterable[Experiment] = ()) -> StudyRecord:
        """A study, with finished `experiments` if any, in one transaction: all or nothing."""
        if self.get_study(record.name):
            raise UsageError(f"a study named {record.name!r} already exists")
        with self._session() as session:
            row = _StudyRow(**_fields(record, exclude={"id", "created_at"}), created_at=_now())
            session.add(row)
            session.flush()
            kept = None
            for experiment in experiments:
                fields = _fields(experiment, exclude={"id", "created_at", "study_id",
                                                      "finished_at"})
                added = _ExperimentRow(**fields, study_id=row.id, created_at=_now(),
                                       finished_at=_now())
                session.add(added)
                if experiment.status == KEEP:
                    kept = added
            if kept is not None:
                session.flush()
                row.best_id = kept.id
            return _study(row)

    def get_or_create_study(self, record: StudyRecord) -> StudyRecord:
        """The study named like `record`, created from it unless another driver was first."""
        try:
            return self.create_study(record)
        except (UsageError, IntegrityError):
            existing = self.get_study(record.name)
            if existing is None:
                raise
            return existing

    def get_study(self, name: str) -> StudyRecord | None:
        with self._session() as session:
            row = session.scalars(sa.select(_StudyRow).where(_StudyRow.name == name)).first()
            return _study(row) if row else None

    def studies(self, repo_root: str | None = None) -> list[StudyRecord]:
        query = sa.select(_StudyRow).order_by(_StudyRow.created_at, _StudyRow.id)
        if repo_root is not None:
            query = query.where(_StudyRow.repo_root == repo_root)
        with self._session() as session:
            return [_study(row) for row in session.scalars(query)]

    def freeze_config(self, study_id: int, text: str) -> str:
        """Record the study's task file unless one is recorded; the recorded text."""
        with self._session() as session:
            session.execute(sa.update(_StudyRow).where(_StudyRow.id == study_id,
                                                       _StudyRow.config.is_(None))
                            .values(config=text))
            return session.scalars(sa.select(_StudyRow.config)
                                   .where(_StudyRow.id == study_id)).one()

    def restart_study(self, study_id: int, base_commit: str, config: str, task: str,
                      rule: str) -> StudyRecord:
        """Start a study that never kept a result again, from `base_commit` under the task file
        `config`, in one transaction: its finished experiments stay as they were, unfinished
        ones are voided (they belong to the old base). A UsageError, changing nothing, when it
        kept one or a driver still runs it."""
        with self._session() as session:
            _lock_study(session, study_id)
            row = session.get_one(_StudyRow, study_id)
            rows = list(session.scalars(sa.select(_ExperimentRow).where(
                _ExperimentRow.study_id == study_id)))
            kept = next((e.number for e in rows if e.status == KEEP), None)
            if kept is not None:
                raise UsageError(f"study {row.name!r} kept experiment {kept}: its rules are "
                                 "fixed")
            live = session.scalars(sa.select(_DriverRow.pid).where(
                _DriverRow.study_id == study_id, _DriverRow.stopped_at.is_(None))).first()
            if live is not None:
                raise UsageError(f"study {row.name!r} is being run by another driver (pid "
                                 f"{live}): stop it before changing the study's task file")
            for experiment in rows:
                if experiment.status in UNFINISHED:
                    experiment.status, experiment.driver_id = VOID, None
                    experiment.reason = f"the study restarted from commit {base_commit[:10]}"
                    experiment.finished_at = _now()
            row.base_commit, row.config, row.task, row.rule = base_commit, config, task, rule
            row.sigma = None
            return _study(row)

    def set_sigma(self, study_id: int, sigma: float) -> None:
        with self._session() as session:
            session.execute(sa.update(_StudyRow).where(_StudyRow.id == study_id)
                            .values(sigma=sigma))

    # drivers

    def register_driver(self, driver: Driver) -> Driver:
        now = _now()
        row = _DriverRow(**_fields(driver, exclude={"id", "started_at", "heartbeat_at",
                                                     "stopped_at", "stop_reason"}),
                         started_at=now, heartbeat_at=now)
        with self._session() as session:
            session.add(row)
            session.flush()
            return _driver(row)

    def heartbeat(self, driver_id: int) -> bool:
        """Mark the driver alive; False when others have declared it stopped."""
        with self._session() as session:
            result = session.execute(sa.update(_DriverRow).where(
                _DriverRow.id == driver_id, _DriverRow.stopped_at.is_(None))
                .values(heartbeat_at=_now()))
            return bool(result.rowcount)  # type: ignore[attr-defined]

    def stop_driver(self, driver_id: int, reason: str) -> None:
        """The driver has stopped: what it held runs again on another driver."""
        with self._session() as session:
            session.execute(sa.update(_DriverRow).where(
                _DriverRow.id == driver_id, _DriverRow.stopped_at.is_(None))
                .values(stopped_at=_now(), stop_reason=reason))
            _release_claims(session, [driver_id])

    def drivers(self, study_id: int, live: bool = False) -> list[Driver]:
        query = (sa.select(_DriverRow).where(_DriverRow.study_id == study_id)
                 .order_by(_DriverRow.id))
        if live:
            query = query.where(_DriverRow.stopped_at.is_(None))
        with self._session() as session:
            return [_driver(row) for row in session.scalars(query)]

    def reclaim_stale(self, study_id: int, stale_after_s: float,
                      dead: Iterable[int] = ()) -> list[Experiment]:
        """Declare stopped the drivers silent for `stale_after_s` and those known `dead`; what
        they held is released (running experiments go back to pending, to run again once) and
        returned."""
        cutoff = _now() - timedelta(seconds=stale_after_s)
        with self._session() as session:
            _lock_study(session, study_id)
            stale = list(session.scalars(sa.select(_DriverRow.id).where(
                _DriverRow.study_id == study_id, _DriverRow.stopped_at.is_(None),
                sa.or_(_DriverRow.heartbeat_at < cutoff, _DriverRow.id.in_(list(dead))))))
            if not stale:
                return []
            session.execute(sa.update(_DriverRow).where(_DriverRow.id.in_(stale))
                            .values(stopped_at=_now(), stop_reason="stopped heartbeating"))
            return _release_claims(session, stale)

    # experiments

    def add_experiment(self, experiment: Experiment, limit: int | None = None,
                       log_path: Callable[[int], str] | None = None) -> Experiment | None:
        """Record a new experiment under the next free number of its study, which the database
        allocates (`log_path` names its log from it); None if the study already holds `limit`
        experiments."""
        with self._session() as session:
            _lock_study(session, experiment.study_id)
            return _add(session, experiment, limit, log_path)

    def ensure_baseline(self, baseline: Experiment,
                        log_path: Callable[[int], str] | None = None) -> Experiment:
        """The study's baseline: the latest one unless it failed, else `baseline`, added (one
        transaction: drivers that start together add one baseline)."""
        with self._session() as session:
            _lock_study(session, baseline.study_id)
            row = session.scalars(sa.select(_ExperimentRow).where(
                _ExperimentRow.study_id == baseline.study_id,
                _ExperimentRow.kind == BASELINE).order_by(_ExperimentRow.number.desc())).first()
            if row is not None and row.status in (*UNFINISHED, KEEP):
                return _experiment(row)
            added = _add(session, baseline, None, log_path)
            assert added is not None
            return added

    def claim(self, study_id: int, driver_id: int) -> Experiment | None:
        """Take the next experiment that needs a run (the best to measure again first, then the
        baseline, then by number); rows other drivers are claiming are skipped, not waited on."""
        claimable = sa.or_(_ExperimentRow.status == PENDING,
                           sa.and_(_ExperimentRow.status == KEEP, _ExperimentRow.remeasure,
                                   _ExperimentRow.driver_id.is_(None)))
        query = (sa.select(_ExperimentRow)
                 .where(_ExperimentRow.study_id == study_id, claimable)
                 .order_by(sa.case((_ExperimentRow.status == KEEP, 0), else_=1),
                           sa.case((_ExperimentRow.kind == BASELINE, 0), else_=1),
                           _ExperimentRow.number)
                 .limit(1).with_for_update(skip_locked=True))
        with self._session() as session:
            if session.bind.dialect.name == "sqlite":  # type: ignore[union-attr]
                _lock_study(session, study_id)  # SQLite has no row locks: one writer at a time
            row = session.scalars(query).first()
            if row is None:
                return None
            row.driver_id = driver_id
            if row.status == PENDING:
                row.status = RUNNING
            return _experiment(row)

    def mark_started(self, experiment_id: int, driver_id: int, pgid: int, commit: str | None,
                     diff: str | None, scope: str | None) -> None:
        """A run of this driver's started: its process group, and its commit once built."""
        values: dict[str, Any] = {"pgid": pgid}
        if commit is not None:
            values |= {"commit": commit, "diff": diff, "scope": scope}
        with self._session() as session:
            session.execute(sa.update(_ExperimentRow).where(
                _ExperimentRow.id == experiment_id, _ExperimentRow.driver_id == driver_id,
                _ExperimentRow.status.in_(UNFINISHED)).values(**values))

    def experiments(self, study_id: int, statuses: Iterable[str] | None = None
                    ) -> list[Experiment]:
        query = (sa.select(_ExperimentRow).where(_ExperimentRow.study_id == study_id)
                 .order_by(_ExperimentRow.number))
        if statuses is not None:
            query = query.where(_ExperimentRow.status.in_(list(statuses)))
        with self._session() as session:
            return [_experiment(row) for row in session.scalars(query)]

    def experiment(self, study_id: int, number: int) -> Experiment | None:
        query = sa.select(_ExperimentRow).where(_ExperimentRow.study_id == study_id,
                                                _ExperimentRow.number == number)
        with self._session() as session:
            row = session.scalars(query).first()
            return _experiment(row) if row else None

    def experiment_with_commit(self, study_id: int, commit: str) -> Experiment | None:
        query = (sa.select(_ExperimentRow).where(_ExperimentRow.study_id == study_id,
                                                 _ExperimentRow.commit == commit)
                 .order_by(_ExperimentRow.number).limit(1))
        with self._session() as session:
            row = session.scalars(query).first()
            return _experiment(row) if row else None

    def best(self, study_id: int) -> Experiment | None:
        with self._session() as session:
            return _best(session, study_id)

    def count(self, study_id: int) -> tuple[int, float]:
        """How many experiments the study holds, and what they cost in dollars."""
        with self._session() as session:
            count, usd = session.execute(
                sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(_ExperimentRow.cost_usd),
                                                            0.0))
                .where(_ExperimentRow.study_id == study_id)).one()
            return int(count), float(usd)

    @contextmanager
    def judging(self, study_id: int, driver_id: int) -> Iterator[Judgement]:
        """One transaction holding the study's lock, for a verdict and everything it changes."""
        with self._session() as session:
            _lock_study(session, study_id)
            yield Judgement(session, study_id, driver_id)

    # generalization runs

    def add_generalization(self, run: GeneralizationRun) -> None:
        with self._session() as session:
            session.add(_GeneralizationRow(**dataclasses.asdict(run), created_at=_now()))

    def generalization(self, study_id: int) -> list[GeneralizationRun]:
        query = (sa.select(_GeneralizationRow).where(_GeneralizationRow.study_id == study_id)
                 .order_by(_GeneralizationRow.horizon, _GeneralizationRow.run))
        with self._session() as session:
            return [GeneralizationRun(**{f.name: getattr(row, f.name)
                                         for f in dataclasses.fields(GeneralizationRun)})
                    for row in session.scalars(query)]


class ClaimLost(RatchetError):
    """The experiment is no longer this driver's: it was declared stopped and the experiment
    given to another, or the row is finished. The result is dropped, never recorded twice."""


class Judgement:
    """Reads and writes inside `Store.judging`: the study is locked until the block ends."""

    def __init__(self, session: Session, study_id: int, driver_id: int) -> None:
        self.session, self.study_id, self.driver_id = session, study_id, driver_id
        self.version = self.session.scalar(sa.select(_StudyRow.best_version)
                                           .where(_StudyRow.id == study_id))

    def best(self) -> Experiment | None:
        return _best(self.session, self.study_id)

    def samples(self) -> dict[int, list[float]]:
        """Every experiment's measured values by id: the noise is pooled over them."""
        rows = self.session.execute(sa.select(_ExperimentRow.id, _ExperimentRow.values)
                                    .where(_ExperimentRow.study_id == self.study_id))
        return {id_: list(values) for id_, values in rows if values}

    def save(self, experiment: Experiment, release: bool = False) -> None:
        """Write this driver's experiment; `release` gives up the claim. Raises ClaimLost when
        the row is not held by this driver (or is finished and not the best measured again)."""
        values = _fields(experiment, exclude={"id", "created_at", "study_id", "number",
                                              "driver_id"})
        values["driver_id"] = None if release else self.driver_id
        result = self.session.execute(sa.update(_ExperimentRow).where(
            _ExperimentRow.id == experiment.id, _ExperimentRow.driver_id == self.driver_id,
            _ExperimentRow.status.in_([*UNFINISHED, KEEP])).values(**values))
        if not result.rowcount:  # type: ignore[attr-defined]
            raise ClaimLost(f"experiment {experiment.number} is no longer held by this driver")
        if release:
            experiment.driver_id = None

    def move_best(self, old: Experiment | None, new: Experiment) -> None:
        """Compare-and-swap the best pointer from `old` to `new`."""
        self._swap(old.id if old else None, new.id)

    def best_changed(self) -> None:
        """The best's runs changed: verdicts taken against the old ones are stale."""
        best = _best(self.session, self.study_id)
        self._swap(best.id if best else None, best.id if best else None)

    def _swap(self, old_id: int | None, new_id: int | None) -> None:
        pointer = _StudyRow.best_id.is_(None) if old_id is None else _StudyRow.best_id == old_id
        result = self.session.execute(sa.update(_StudyRow).where(
            _StudyRow.id == self.study_id, pointer, _StudyRow.best_version == self.version)
            .values(best_id=new_id, best_version=self.version + 1))
        if not result.rowcount:  # type: ignore[attr-defined]
            raise RatchetError("the best moved while the study was locked (a store that does "
                               "not honour row locks?)")
        self.version += 1

    def request_remeasure(self, best: Experiment) -> None:
        self.session.execute(sa.update(_ExperimentRow).where(_ExperimentRow.id == best.id)
                             .values(remeasure=True))

    def take_waiting(self) -> list[Experiment]:
        """The experiments waiting for the best, now held by this driver to be judged."""
        rows = list(self.session.scalars(sa.select(_ExperimentRow).where(
            _ExperimentRow.study_id == self.study_id, _ExperimentRow.status == WAITING)
            .order_by(_ExperimentRow.number)))
        for row in rows:
            row.driver_id = self.driver_id
        self.session.flush()
        return [_experiment(row) for row in rows]

    def set_sigma(self, sigma: float | None) -> None:
        self.session.execute(sa.update(_StudyRow).where(_StudyRow.id == self.study_id)
                             .values(sigma=sigma))


def _add(session: Session, experiment: Experiment, limit: int | None,
         log_path: Callable[[int], str] | None) -> Experiment | None:
    """Insert under the study's lock: the next number, unless `limit` experiments exist."""
    count, last = session.execute(
        sa.select(sa.func.count(), sa.func.max(_ExperimentRow.number))
        .where(_ExperimentRow.study_id == experiment.study_id)).one()
    if limit is not None and count >= limit:
        return None
    number = 0 if last is None else last + 1
    fields = _fields(experiment, exclude={"id", "created_at", "number"})
    if log_path is not None:
        fields["log_path"] = log_path(number)
    row = _ExperimentRow(**fields, number=number, created_at=_now())
    session.add(row)
    session.flush()
    return _experiment(row)


def _lock_study(session: Session, study_id: int) -> None:
    """Hold the study's row until the transaction ends: PostgreSQL locks the row; SQLite has
    no row locks, so a write takes the database's one write lock (waited on, not failed)."""
    if session.bind.dialect.name == "sqlite":  # type: ignore[union-attr]
        session.execute(sa.update(_StudyRow).where(_StudyRow.id == study_id)
                        .values(best_version=_StudyRow.best_version))
    else:
        session.execute(sa.select(_StudyRow.id).where(_StudyRow.id == study_id)
                        .with_for_update())


def _best(session: Session, study_id: int) -> Experiment | None:
    row = session.scalars(sa.select(_ExperimentRow).join(
        _StudyRow, _StudyRow.best_id == _ExperimentRow.id).where(_StudyRow.id == study_id)).first()
    return _experiment(row) if row else None


def _release_claims(session: Session, driver_ids: list[int]) -> list[Experiment]:
    """Running experiments of these drivers go back to pending; a best they were measuring
    again, and challengers they held, are let go as they are. The returned records still
    name the driver that held them."""
    held = list(session.scalars(sa.select(_ExperimentRow).where(
        _ExperimentRow.driver_id.in_(driver_ids))))
    released = []
    for row in held:
        holder = row.driver_id
        row.driver_id = None
        if row.status == RUNNING:
            row.status = PENDING
        released.append(dataclasses.replace(_experiment(row), driver_id=holder))
    session.flush()
    return released


def _now() -> datetime:
    return datetime.now(UTC)


def _fields(record: Any, exclude: set[str]) -> dict[str, Any]:
    return {f.name: getattr(record, f.name) for f in dataclasses.fields(record)
            if f.name not in exclude}


def _study(row: _StudyRow) -> StudyRecord:
    return StudyRecord(**{f.name: getattr(row, f.name) for f in dataclasses.fields(StudyRecord)})


def _driver(row: _DriverRow) -> Driver:
    return Driver(**{f.name: getattr(row, f.name) for f in dataclasses.fields(Driver)})


def _experiment(row: _ExperimentRow) -> Experiment:
    return Experiment(**{f.name: getattr(row, f.name) for f in dataclasses.fields(Experiment)})
