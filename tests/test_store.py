"""The store on SQLite and on PostgreSQL: the same calls, migrations, a whole study."""

import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa

from ratchet.errors import RatchetError, UsageError
from ratchet.records import Driver, Experiment, StudyRecord
from ratchet.store.database import ClaimLost, Store
from ratchet.store.glance import newest_revision
from ratchet.study import open_study


def _study(store: Store, name: str = "s") -> StudyRecord:
    return store.create_study(StudyRecord(name=name, task="t", repo_root="/r",
                                          base_commit="abc", proposer="tpe", seed=3))


def _driver(store: Store, study: StudyRecord, pid: int = 1) -> int:
    driver = store.register_driver(Driver(study_id=study.id, host="h", pid=pid,
                                          executor="local", slots=1))
    assert driver.id is not None
    return driver.id


def test_records_round_trip_and_survive_reopening(storage_url: str) -> None:
    store = Store(storage_url)
    study = _study(store)
    assert study.id is not None and study.created_at is not None
    driver = _driver(store, study)
    store.add_experiment(Experiment(study_id=study.id, number=0, kind="baseline"))
    e = store.claim(study.id, driver)
    assert e is not None and e.status == "running" and e.driver_id == driver
    e.values, e.value, e.status = [1.0, 1.5], 1.25, "keep"
    e.params, e.decision, e.secondary = {"DEPTH": 8}, {"rule": "greedy"}, {"memory_gb": 2.0}
    with store.judging(study.id, driver) as tx:
        tx.save(e, release=True)
        tx.move_best(None, e)
        tx.set_sigma(0.25)
    store.close()

    reopened = Store(storage_url)  # migrations run again and find nothing to do
    assert reopened.get_study("s").sigma == 0.25
    (got,) = reopened.experiments(study.id)
    assert (got.values, got.value, got.status, got.params) == ([1.0, 1.5], 1.25, "keep",
                                                               {"DEPTH": 8})
    assert got.secondary == {"memory_gb": 2.0} and got.driver_id is None
    assert reopened.best(study.id) == got
    assert reopened.experiment(study.id, 0).id == got.id
    assert reopened.experiments(study.id, statuses=["discard"]) == []
    with pytest.raises(UsageError, match="already exists"):
        reopened.create_study(StudyRecord(name="s", task="t", repo_root="/r",
                                          base_commit="abc", proposer="tpe"))
    with reopened.engine.connect() as conn:
        version = conn.execute(sa.text("SELECT version_num FROM ratchet_alembic_version"))
        assert version.scalar() == newest_revision()


def test_experiment_numbers_come_from_the_database_gap_free(storage_url: str) -> None:
    store = Store(storage_url)
    study, other = _study(store, "u"), _study(store, "v")
    numbers = [store.add_experiment(Experiment(study_id=study.id, number=7, kind="proposal"),
                                    log_path=lambda n: f"log-{n}").number for _ in range(3)]
    assert numbers == [0, 1, 2]
    assert store.experiment(study.id, 2).log_path == "log-2"
    assert store.add_experiment(Experiment(study_id=other.id, number=5, kind="try")).number == 0
    assert store.add_experiment(Experiment(study_id=study.id, number=0, kind="proposal"),
                                limit=3) is None  # the experiment budget is the study's
    assert [e.number for e in store.experiments(study.id)] == [0, 1, 2]


def test_a_claim_is_one_drivers_and_a_finished_record_is_never_written_again(
        storage_url: str) -> None:
    store = Store(storage_url)
    study = _study(store)
    a, b = _driver(store, study, 1), _driver(store, study, 2)
    for _ in range(2):
        store.add_experiment(Experiment(study_id=study.id, number=0, kind="proposal"))
    first, second = store.claim(study.id, a), store.claim(study.id, b)
    assert {first.number, second.number} == {0, 1} and store.claim(study.id, a) is None
    second.values = [9.0]
    with pytest.raises(ClaimLost), store.judging(study.id, a) as tx:
        tx.save(second)  # b's experiment: a may not write it
    first.status, first.value, first.values = "discard", 2.0, [2.0]
    with store.judging(study.id, a) as tx:
        tx.save(first, release=True)
    first.value = -100.0  # a forged second verdict on a finished row
    with pytest.raises(ClaimLost), store.judging(study.id, a) as tx:
        tx.save(first)
    assert store.experiment(study.id, first.number).value == 2.0
    assert store.experiment(study.id, second.number).values == []

    store.stop_driver(b, "test")  # b's running experiment goes back to the queue, once
    again = store.claim(study.id, a)
    assert again.number == second.number and again.status == "running"
    with pytest.raises(ClaimLost), store.judging(study.id, b) as tx:
        tx.save(second)  # the stopped driver's late result is refused


def test_the_best_pointer_moves_only_from_the_value_judged_against(storage_url: str) -> None:
    store = Store(storage_url)
    study = _study(store)
    a = _driver(store, study)
    rows = [store.add_experiment(Experiment(study_id=study.id, number=0, kind="proposal"))
            for _ in range(3)]
    with store.judging(study.id, a) as tx:
        tx.move_best(None, rows[0])
    with store.judging(study.id, a) as tx:
        tx.move_best(rows[0], rows[1])
    with pytest.raises(RatchetError, match="best moved"), store.judging(study.id, a) as tx:
        tx.move_best(rows[0], rows[2])  # judged against a best that is no longer the best
    assert store.best(study.id).number == rows[1].number


def test_a_silent_driver_is_declared_stopped_and_its_work_released(storage_url: str) -> None:
    store = Store(storage_url)
    study = _study(store)
    quiet, live = _driver(store, study, 1), _driver(store, study, 2)
    store.add_experiment(Experiment(study_id=study.id, number=0, kind="proposal"))
    held = store.claim(study.id, quiet)
    assert store.reclaim_stale(study.id, stale_after_s=60) == []
    time.sleep(0.3)
    assert store.heartbeat(live)
    released = store.reclaim_stale(study.id, stale_after_s=0.2)
    assert [e.number for e in released] == [held.number]
    assert not store.heartbeat(quiet)  # it learns it was declared stopped
    assert [d.id for d in store.drivers(study.id, live=True)] == [live]
    assert store.claim(study.id, live).number == held.number


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

    from ratchet.store.database import normalize_url

    engine = sa.create_engine(normalize_url(storage_url))
    config = Config()
    config.set_main_option("script_location", str(Path(__import__("ratchet").__file__).parent
                                                  / "store" / "migrations"))
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
              "from ratchet.store.database import Store\n"
              "Store(sys.argv[1]).studies()\n")
    drivers = [subprocess.Popen([sys.executable, "-c", script, storage_url],
                                stderr=subprocess.PIPE, text=True) for _ in range(6)]
    time.sleep(1.5)  # every driver has imported ratchet and waits for the flag
    go.touch()
    errors = [d.communicate(timeout=120)[1] for d in drivers]
    assert [d.returncode for d in drivers] == [0] * 6, "\n".join(errors)
    assert Store(storage_url).studies() == []


def test_a_sqlite_store_on_a_network_filesystem_is_refused(tmp_path: Path) -> None:
    from ratchet.study import check_concurrency

    store = Store(f"sqlite:///{tmp_path / 'shared' / 'store.db'}")
    local = f"/dev/sda1 / ext4 rw 0 0\ntmpfs {tmp_path.parent} tmpfs rw 0 0\n"
    check_concurrency(store, local)  # a local disk: drivers share it through SQLite's locks
    nfs = local + f"server:/export {tmp_path / 'shared'} nfs4 rw 0 0\n"
    with pytest.raises(UsageError, match="network filesystem.*postgresql") as info:
        check_concurrency(store, nfs)
    assert "\n" not in str(info.value)


def test_drivers_that_start_together_add_one_baseline(storage_url: str) -> None:
    store = Store(storage_url)
    study = _study(store)
    baseline = Experiment(study_id=study.id, number=0, kind="baseline")
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda _: store.ensure_baseline(baseline).number, range(8)))
    assert got == [0] * 8 and len(store.experiments(study.id)) == 1
