"""The store on SQLite and on PostgreSQL: the same calls, migrations, a whole study."""

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from ratchet.errors import UsageError
from ratchet.records import Experiment, StudyRecord
from ratchet.store import Store
from ratchet.study import open_study


def test_records_round_trip_and_survive_reopening(storage_url: str) -> None:
    store = Store(storage_url)
    study = store.create_study(StudyRecord(name="s", task="t", repo_root="/r",
                                           base_commit="abc", proposer="tpe", seed=3))
    assert study.id is not None and study.created_at is not None
    e = store.add_experiment(Experiment(study_id=study.id, number=0, kind="baseline"))
    e.values, e.value, e.status = [1.0, 1.5], 1.25, "keep"
    e.params, e.decision, e.secondary = {"DEPTH": 8}, {"rule": "greedy"}, {"memory_gb": 2.0}
    store.save_experiment(e)
    store.set_sigma(study.id, 0.25)
    store.close()

    reopened = Store(storage_url)  # migrations run again and find nothing to do
    assert reopened.get_study("s").sigma == 0.25
    (got,) = reopened.experiments(study.id)
    assert (got.values, got.value, got.status, got.params) == ([1.0, 1.5], 1.25, "keep",
                                                               {"DEPTH": 8})
    assert got.secondary == {"memory_gb": 2.0}
    assert reopened.experiment(study.id, 0).id == got.id
    assert reopened.experiments(study.id, statuses=["discard"]) == []
    with pytest.raises(UsageError, match="already exists"):
        reopened.create_study(StudyRecord(name="s", task="t", repo_root="/r",
                                          base_commit="abc", proposer="tpe"))
    with reopened.engine.connect() as conn:
        version = conn.execute(sa.text("SELECT version_num FROM ratchet_alembic_version"))
        assert version.scalar() == "0004"


def test_experiment_numbers_are_unique_per_study(storage_url: str) -> None:
    store = Store(storage_url)
    study = store.create_study(StudyRecord(name="u", task="t", repo_root="/r",
                                           base_commit="abc", proposer="tpe"))
    store.add_experiment(Experiment(study_id=study.id, number=1, kind="proposal"))
    with pytest.raises(sa.exc.IntegrityError):
        store.add_experiment(Experiment(study_id=study.id, number=1, kind="proposal"))


def test_a_whole_study_with_its_optuna_sampler_in_the_same_database(
        storage_url: str, make_repo: Callable[..., Path]) -> None:
    repo = make_repo("quadratic")
    study = open_study(repo, "db", storage=storage_url, proposer="tpe", seed=0)
    study.run(max_experiments=6)
    assert len(study.experiments()) == 6
    with study.store.engine.connect() as conn:
        tables = set(sa.inspect(conn).get_table_names())
    assert {"ratchet_studies", "ratchet_experiments", "studies", "trials"} <= tables
    assert not (repo / ".ratchet" / "ratchet.db").exists()  # nothing went to the default store


@pytest.mark.parametrize(("url", "problem"), [
    ("not a url", "not a database URL"),
    ("mysql://localhost/x", "unsupported database 'mysql'"),
    ("postgresql://127.0.0.1:1/none", "cannot open storage"),
])
def test_bad_storage_urls_are_usage_errors(url: str, problem: str) -> None:
    with pytest.raises(UsageError, match=problem) as info:
        Store(url)
    assert "\n" not in str(info.value)


def test_a_store_at_an_older_schema_is_migrated_with_its_data(storage_url: str) -> None:
    from alembic import command
    from alembic.config import Config

    from ratchet.store import normalize_url

    engine = sa.create_engine(normalize_url(storage_url))
    config = Config()
    config.set_main_option("script_location", str(Path(__import__("ratchet").__file__).parent
                                                  / "migrations"))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
        connection.execute(sa.text(
            "INSERT INTO ratchet_studies (name, task, repo_root, base_commit, proposer, rule, "
            "settings, created_at) VALUES ('old', 't', '/r', 'abc', 'tpe', 'greedy', '{}', "
            "CURRENT_TIMESTAMP)"))
        connection.execute(sa.text(
            "INSERT INTO ratchet_experiments (study_id, number, kind, status, description, "
            "diff, \"values\", secondary, wall_s, cpu_s, peak_mem_mb, cost_usd, created_at) "
            "SELECT id, 0, 'baseline', 'keep', 'baseline', '', '[1.5]', '{}', 1, 1, 10, 0.25, "
            "CURRENT_TIMESTAMP FROM ratchet_studies"))
        columns = {c["name"] for c in sa.inspect(connection).get_columns("ratchet_experiments")}
        assert "scope" not in columns and "tokens_in" not in columns
    engine.dispose()
    store = Store(storage_url)
    assert store.get_study("old").rule == "greedy"
    study = store.get_study("old")
    (old,) = store.experiments(study.id)  # the old row, with the new columns at their defaults
    assert (old.values, old.cost_usd, old.llm_usd, old.tokens_in, old.rationale) == (
        [1.5], 0.25, 0.0, 0, None)
    store.add_experiment(Experiment(study_id=study.id, number=1, kind="try", scope="in",
                                    tokens_in=12, rationale={"hypothesis": "h"}))
    new = store.experiments(study.id)[1]
    assert (new.scope, new.tokens_in, new.rationale) == ("in", 12, {"hypothesis": "h"})


def test_drivers_that_start_together_on_a_fresh_store_take_turns(storage_url: str,
                                                                 tmp_path: Path) -> None:
    """Several first starts at once: the schema is made once, and nobody fails."""
    go = tmp_path / "go"
    script = ("import os, sys, time\n"
              f"while not os.path.exists({str(go)!r}): time.sleep(0.005)\n"
              "from ratchet.store import Store\n"
              "Store(sys.argv[1]).studies()\n")
    drivers = [subprocess.Popen([sys.executable, "-c", script, storage_url],
                                stderr=subprocess.PIPE, text=True) for _ in range(6)]
    time.sleep(1.5)  # every driver has imported ratchet and waits for the flag
    go.touch()
    errors = [d.communicate(timeout=120)[1] for d in drivers]
    assert [d.returncode for d in drivers] == [0] * 6, "\n".join(errors)
    assert Store(storage_url).studies() == []
