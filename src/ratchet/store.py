"""The store: studies and experiments in SQLite (default) or PostgreSQL, through SQLAlchemy.

Every call is its own committed transaction, so a killed driver loses nothing it had recorded.
The schema is versioned with Alembic migrations that run when a store is opened.
"""

from __future__ import annotations

import dataclasses
import fcntl
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command as alembic_command
from alembic.config import Config as AlembicConfig
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from ratchet.errors import UsageError
from ratchet.records import Experiment, GeneralizationRun, StudyRecord

STATE_DIR = ".ratchet"
MIGRATION_LOCK_KEY = 0x72617463  # "ratc": PostgreSQL advisory lock held while migrating
SUPPORTED = ("sqlite", "postgresql")


class _Base(DeclarativeBase):
    pass


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
    value: Mapped[float | None]
    secondary: Mapped[dict[str, float]] = mapped_column(sa.JSON)
    holdout: Mapped[float | None]
    delta: Mapped[float | None]
    decision: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    reason: Mapped[str | None] = mapped_column(sa.Text)
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
    log_path: Mapped[str | None] = mapped_column(sa.Text)
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
    reason: Mapped[str | None] = mapped_column(sa.Text)
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


def default_url(repo_root: Path) -> str:
    return f"sqlite:///{repo_root / STATE_DIR / 'ratchet.db'}"


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
    if backend == "sqlite" and parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    return parsed.render_as_string(hide_password=False)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
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
        except SQLAlchemyError as exc:
            reason = str(exc.orig if getattr(exc, "orig", None) else exc).strip().splitlines()
            raise UsageError(f"cannot open storage {make_url(self.url)!r}: "
                             f"{reason[0] if reason else type(exc).__name__}") from None

    def _migrate(self) -> None:
        """Create or upgrade the schema; drivers that start together take turns."""
        config = AlembicConfig()
        config.set_main_option("script_location",
                               str(resources.files("ratchet") / "migrations"))
        with _sqlite_file_lock(self.url), self.engine.begin() as connection:
            if connection.dialect.name == "postgresql":  # held until this transaction ends
                connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"),
                                   {"key": MIGRATION_LOCK_KEY})
            config.attributes["connection"] = connection
            alembic_command.upgrade(config, "head")

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
            for experiment in experiments:
                fields = _fields(experiment, exclude={"id", "created_at", "study_id",
                                                      "finished_at"})
                session.add(_ExperimentRow(**fields, study_id=row.id, created_at=_now(),
                                           finished_at=_now()))
            return _study(row)

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

    def set_sigma(self, study_id: int, sigma: float) -> None:
        with self._session() as session:
            session.execute(sa.update(_StudyRow).where(_StudyRow.id == study_id)
                            .values(sigma=sigma))

    # experiments

    def add_experiment(self, experiment: Experiment) -> Experiment:
        row = _ExperimentRow(**_fields(experiment, exclude={"id", "created_at"}),
                             created_at=_now())
        with self._session() as session:
            session.add(row)
            session.flush()
            return _experiment(row)

    def save_experiment(self, experiment: Experiment) -> None:
        if experiment.id is None:
            raise ValueError("save_experiment needs an experiment read from the store")
        values = _fields(experiment, exclude={"id", "created_at", "study_id", "number"})
        with self._session() as session:
            session.execute(sa.update(_ExperimentRow)
                            .where(_ExperimentRow.id == experiment.id).values(**values))

    def set_pgid(self, experiment_id: int, pgid: int | None) -> None:
        with self._session() as session:
            session.execute(sa.update(_ExperimentRow)
                            .where(_ExperimentRow.id == experiment_id).values(pgid=pgid))

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


def _now() -> datetime:
    return datetime.now(UTC)


def _fields(record: Any, exclude: set[str]) -> dict[str, Any]:
    return {f.name: getattr(record, f.name) for f in dataclasses.fields(record)
            if f.name not in exclude}


def _study(row: _StudyRow) -> StudyRecord:
    return StudyRecord(**{f.name: getattr(row, f.name) for f in dataclasses.fields(StudyRecord)})


def _experiment(row: _ExperimentRow) -> Experiment:
    return Experiment(**{f.name: getattr(row, f.name) for f in dataclasses.fields(Experiment)})
