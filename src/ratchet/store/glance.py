"""A quick look at a SQLite store through Python's own `sqlite3`: what `ratchet status` reads,
without importing SQLAlchemy, Alembic or the engine (which take longer to load than the look).

Only for a SQLite file already at the newest schema; `Glance.open` answers None otherwise and
the caller goes through `Store`, which migrates and names every problem. Rows become the same
records `Store` returns: columns are the records' fields, converted by the types the schema
declares, so a new column needs nothing here.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Callable
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from ratchet.records import Driver, Experiment, StudyRecord

STATE_DIR = ".ratchet"
VERSION_TABLE = "ratchet_alembic_version"  # ratchet's own: Optuna keeps `alembic_version`
Record = TypeVar("Record", StudyRecord, Experiment, Driver)
_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "JSON": lambda v: json.loads(v) if isinstance(v, str) else v,
    "DATETIME": lambda v: datetime.fromisoformat(v) if isinstance(v, str) else v,
    "BOOLEAN": lambda v: bool(v) if v is not None else v,
}


def default_url(repo_root: Path) -> str:
    return f"sqlite:///{repo_root / STATE_DIR / 'ratchet.db'}"


def sqlite_file(url: str) -> Path | None:
    """The file behind a plain `sqlite:///path` URL; None for anything else."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or "?" in url or len(url) == len(prefix):
        return None
    return Path(url[len(prefix):])


def newest_revision() -> str:
    """The newest migration's revision: migration files are named by their revision."""
    versions = resources.files("ratchet.store") / "migrations" / "versions"
    return max(p.name[:4] for p in versions.iterdir() if p.name[:4].isdigit())


class Glance:
    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection

    @classmethod
    def open(cls, url: str) -> Glance | None:
        """A look at the store at `url`, or None when only `Store` can open it."""
        path = sqlite_file(url)
        if path is None or not path.is_file():
            return None
        try:
            connection = sqlite3.connect(path, timeout=30)
            (version,) = connection.execute(f"SELECT version_num FROM {VERSION_TABLE}").fetchone()
        except (sqlite3.Error, TypeError):
            return None
        if version != newest_revision():
            connection.close()
            return None
        return cls(connection)

    def close(self) -> None:
        self.connection.close()

    def get_study(self, name: str) -> StudyRecord | None:
        found = self._select(StudyRecord, "ratchet_studies", "name = ?", (name,))
        return found[0] if found else None

    def studies(self, repo_root: str) -> list[StudyRecord]:
        return self._select(StudyRecord, "ratchet_studies", "repo_root = ?", (repo_root,),
                            order="created_at, id")

    def experiments(self, study_id: int) -> list[Experiment]:
        return self._select(Experiment, "ratchet_experiments", "study_id = ?", (study_id,),
                            order="number")

    def best(self, study_id: int) -> Experiment | None:
        found = self._select(Experiment, "ratchet_experiments",
                             "id = (SELECT best_id FROM ratchet_studies WHERE id = ?)",
                             (study_id,))
        return found[0] if found else None

    def drivers(self, study_id: int, live: bool = False) -> list[Driver]:
        where = "study_id = ?" + (" AND stopped_at IS NULL" if live else "")
        return self._select(Driver, "ratchet_drivers", where, (study_id,), order="id")

    def _select(self, kind: type[Record], table: str, where: str, args: tuple[Any, ...],
                order: str = "id") -> list[Record]:
        names = [f.name for f in dataclasses.fields(kind)]
        declared = {row[1]: str(row[2]).upper() for row in
                    self.connection.execute(f"PRAGMA table_info({table})")}
        convert = [_CONVERTERS.get(declared.get(name, ""), _same) for name in names]
        columns = ", ".join(f'"{name}"' for name in names)
        rows = self.connection.execute(
            f"SELECT {columns} FROM {table} WHERE {where} ORDER BY {order}", args)
        return [kind(**{name: c(value) for name, c, value in zip(names, convert, row,
                                                                 strict=True)})
                for row in rows]


def _same(value: Any) -> Any:
    return value
