"""The Redis server and the databases a benchmark run makes for itself, and throws away afterwards."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent


def child_env(database_url: str, redis_url: str) -> dict[str, str]:
    """The environment of every process of a run: the bench's settings, database and Redis."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "bench.settings",
        "BENCH_DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "PYTHONPATH": str(ROOT),
    }


def migrate(env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--verbosity", "0"], cwd=ROOT, env=env, check=True
    )


@contextlib.contextmanager
def sqlite_database() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="jobs-bench-") as directory:
        yield f"sqlite:///{directory}/bench.sqlite3"


@contextlib.contextmanager
def postgres_database(server_url: str) -> Iterator[str]:
    """A fresh database on the PostgreSQL server at ``server_url``, dropped at the end."""
    import psycopg

    parts = urlsplit(server_url)
    name = f"jobs_bench_{os.getpid()}"
    admin_url = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def postgres_reachable(server_url: str) -> str | None:
    """None when the server answers, else why not."""
    try:
        import psycopg

        parts = urlsplit(server_url)
        with psycopg.connect(urlunsplit(parts._replace(path="/postgres")), connect_timeout=3):
            return None
    except Exception as exc:  # any reason at all is reported and the PostgreSQL runs are skipped
        return str(exc).strip() or type(exc).__name__


def database_for(name: str, postgres_url: str) -> contextlib.AbstractContextManager[str] | None:
    """A fresh database of kind ``name`` ("sqlite" or "postgres"), or None, said why, when PostgreSQL
    does not answer."""
    if name != "postgres":
        return sqlite_database()
    reason = postgres_reachable(postgres_url)
    if reason is not None:
        print(f"### PostgreSQL\n\nskipped: {postgres_url} does not answer ({reason})\n")
        return None
    return postgres_database(postgres_url)
