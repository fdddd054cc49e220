"""`ratchet status`: the studies of a repository at a glance, quickly.

A look at a SQLite store at the newest schema goes through `Glance` (Python's own sqlite3);
anything else opens the study as every other command does.
"""

from __future__ import annotations

import argparse
import sys
from contextlib import closing
from pathlib import Path
from typing import Protocol

from ratchet.execute.gitrepo import GitRepo
from ratchet.records import Driver, Experiment, StudyRecord
from ratchet.reports.safe_text import printable
from ratchet.reports.summary import fmt, overview
from ratchet.store.glance import Glance, default_url
from ratchet.units import format_duration


class Rows:
    """A table: drawn on a terminal, tab-separated and never cut when piped. Cells are shown
    with their control characters escaped (a study's name and a driver's host come from
    outside) and never read as rich markup."""

    def __init__(self, *headers: str, title: str | None = None) -> None:
        self.headers, self.title = headers, title
        self.rows: list[tuple[str, ...]] = []

    def add(self, *cells: str) -> None:
        self.rows.append(tuple(printable(cell) for cell in cells))

    def show(self) -> None:
        if not sys.stdout.isatty():
            if self.title:
                print(f"# {self.title}")
            for row in (self.headers, *self.rows):
                print("\t".join(row))
            return
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        table = Table(*self.headers, title=self.title)
        for row in self.rows:
            table.add_row(*map(Text, row))
        Console().print(table)


class Records(Protocol):
    """What status reads: `Store` and `Glance` both answer it."""

    def experiments(self, study_id: int) -> list[Experiment]: ...
    def best(self, study_id: int) -> Experiment | None: ...
    def drivers(self, study_id: int, live: bool = False) -> list[Driver]: ...


def cmd_status(args: argparse.Namespace) -> int:
    root = GitRepo.find(Path(args.repo)).root
    glance = Glance.open(args.storage or default_url(root))
    if glance is not None:
        with closing(glance):
            studies = _studies(glance, args.study, root)
            if studies:
                show(studies, glance)
                return 0
    from ratchet.study import open_study  # names what is wrong, migrates an older store

    study = open_study(args.repo, args.study, storage=args.storage, create=False)
    show([study.record] if args.study else study.store.studies(str(study.repo.root)),
         study.store)
    return 0


def _studies(glance: Glance, name: str | None, root: Path) -> list[StudyRecord]:
    if name is None:
        return glance.studies(str(root))
    found = glance.get_study(name)
    return [found] if found else []


def show(studies: list[StudyRecord], records: Records) -> None:
    table = Rows("study", "proposer", "experiments", "kept", "failed", "pruned", "baseline",
                 "best", "better by", "holdout", "$ spent", "compute saved", "base")
    drivers = Rows("study", "driver", "host", "pid", "executor", "slots", "running",
                   "heartbeat", title="drivers running now")
    for record in studies:
        study_id = record.id or 0
        row = overview(record, records.experiments(study_id), records.best(study_id),
                       records.drivers(study_id, live=True))
        table.add(record.name, record.proposer, str(row["experiments"]), str(row["kept"]),
                  str(row["failed"]), str(row["pruned"]), fmt(row["baseline"]),
                  fmt(row["best"]), fmt(row["better_by"], signed=True), fmt(row["holdout"]),
                  f"{row['spent_usd']:.4f}", format_duration(row["saved_s"]),
                  record.base_commit[:10])
        for d in row["drivers"]:
            drivers.add(record.name, str(d["id"]), d["host"], str(d["pid"]), d["executor"],
                        str(d["slots"]), " ".join(f"#{n}" for n in d["running"]) or "-",
                        d["heartbeat_at"] or "-")
    table.show()
    if drivers.rows:
        drivers.show()
