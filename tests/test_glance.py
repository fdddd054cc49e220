"""`ratchet status` at a glance: Python's own sqlite3 reads the same records as the store, the
quick path imports no SQLAlchemy, and an older store still opens through the full path."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from alembic import command as alembic_command
from alembic.config import Config as AlembicConfig
from alembic.script import ScriptDirectory

from ratchet.cli import main
from ratchet.store import glance as glance_module
from ratchet.store.database import Store, default_url
from ratchet.store.glance import VERSION_TABLE, Glance, newest_revision
from ratchet.study import open_study


@pytest.fixture
def repo(make_repo: Callable[..., Path]) -> Path:
    repo = make_repo("quadratic", replace={"ratchet.toml": ("baseline_runs = 3",
                                                            "baseline_runs = 2")})
    open_study(repo, "g", proposer="tpe", seed=0).run(max_experiments=6)
    return repo


def test_the_glance_reads_what_the_store_reads(repo: Path) -> None:
    store, glance = Store(default_url(repo)), Glance.open(default_url(repo))
    assert glance is not None
    try:
        (record,) = store.studies(str(repo))
        assert glance.studies(str(repo)) == [record] and glance.get_study("g") == record
        assert record.id is not None and record.config  # a frozen task file, read as text
        experiments = store.experiments(record.id)
        assert len(experiments) == 6 and any(e.params for e in experiments)
        assert any(e.decision for e in experiments)  # JSON columns, decoded
        assert glance.experiments(record.id) == experiments  # dates, flags, JSON: all equal
        assert glance.best(record.id) == store.best(record.id) is not None
        assert glance.drivers(record.id) == store.drivers(record.id) != []
        assert glance.drivers(record.id, live=True) == []  # the run has stopped
        assert glance.get_study("absent") is None
    finally:
        store.close()
        glance.close()


def migrations_config() -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", str(Path(glance_module.__file__).parent /
                                                   "migrations"))
    return config


def test_the_newest_revision_is_alembics_head() -> None:
    head = ScriptDirectory.from_config(migrations_config()).get_current_head()
    assert newest_revision() == head


def test_status_takes_the_quick_path_without_sqlalchemy(repo: Path) -> None:
    code = ("import sys; from ratchet.cli import main; code = main(['status']); "
            "assert code == 0; heavy = {'sqlalchemy', 'optuna', 'libcst', 'ratchet.engine'}; "
            "print('loaded:', sorted(heavy & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True,
                         text=True, check=True).stdout
    assert "g\ttpe\t6\t" in out and "loaded: []" in out, out


def test_quick_and_full_paths_print_the_same(repo: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(["status", "--repo", str(repo)]) == 0
    quick = capsys.readouterr().out
    monkeypatch.setattr(Glance, "open", classmethod(lambda cls, url: None))
    assert main(["status", "--repo", str(repo)]) == 0
    assert capsys.readouterr().out == quick and "g\ttpe" in quick


def test_an_older_store_is_opened_and_migrated_by_the_full_path(
        repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = Store(default_url(repo))
    with store.engine.begin() as connection:  # one migration back
        config = migrations_config()
        config.attributes["connection"] = connection
        alembic_command.downgrade(config, "-1")
    store.close()
    with sqlite3.connect(repo / ".ratchet" / "ratchet.db") as connection:
        (version,) = connection.execute(f"SELECT version_num FROM {VERSION_TABLE}").fetchone()
    assert version < newest_revision() and Glance.open(default_url(repo)) is None
    assert main(["status", "--repo", str(repo)]) == 0
    assert "g\ttpe\t6\t" in capsys.readouterr().out
    glance = Glance.open(default_url(repo))  # the store was brought to the newest schema
    assert glance is not None
    glance.close()


def test_not_a_plain_sqlite_file_is_left_to_the_store(tmp_path: Path) -> None:
    assert Glance.open(f"sqlite:///{tmp_path / 'missing.db'}") is None
    assert not (tmp_path / "missing.db").exists()  # a look never creates a database
    (tmp_path / "junk.db").write_bytes(b"not a database at all" * 100)
    assert Glance.open(f"sqlite:///{tmp_path / 'junk.db'}") is None
    assert Glance.open("postgresql://127.0.0.1:5432/test") is None
    assert Glance.open("sqlite://") is None
