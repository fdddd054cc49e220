"""Shared fixtures: example tasks as fresh git repositories, and the two stores."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
POSTGRES_URL = "postgresql://127.0.0.1:5432/test"


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout


def commit_all(repo: Path, message: str = "update") -> None:
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message)


@pytest.fixture
def make_repo(tmp_path: Path) -> Callable[..., Path]:
    """A copy of an example task as a git repository with one commit, optionally edited."""

    def make(example: str = "quadratic", edits: dict[str, str] | None = None,
             replace: dict[str, tuple[str, str]] | None = None) -> Path:
        repo = tmp_path / example
        shutil.copytree(EXAMPLES / example, repo)
        for path, text in (edits or {}).items():
            (repo / path).write_text(text)
        for path, (old, new) in (replace or {}).items():
            content = (repo / path).read_text()
            assert old in content, f"{old!r} not in {path}"
            (repo / path).write_text(content.replace(old, new))
        git(repo, "init", "-q")
        commit_all(repo, "initial")
        return repo

    return make


def postgres_available() -> bool:
    try:
        import psycopg

        with psycopg.connect("host=127.0.0.1 port=5432 dbname=test connect_timeout=3"):
            return True
    except Exception:
        return False


def reset_postgres() -> None:
    import psycopg

    with psycopg.connect("host=127.0.0.1 port=5432 dbname=test", autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each store test runs on SQLite and on PostgreSQL. With CI=true PostgreSQL must answer."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    if not postgres_available():
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but no PostgreSQL server answers on 127.0.0.1:5432")
        pytest.skip("no PostgreSQL server answers on 127.0.0.1:5432")
    reset_postgres()
    yield POSTGRES_URL
    reset_postgres()
