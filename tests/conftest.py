from __future__ import annotations

import os
import signal

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connections, transaction
from django.test import TransactionTestCase
from django.test.utils import override_settings

from tests.redis_server import RedisServer

#: Tables that migrate fills and no test changes: kept by the flush after a transactional test.
KEPT_TABLES = ("django_content_type", "auth_permission")
#: By database: the other tables, and what the kept ones held once the test database was made.
_flushed: dict[str, tuple[list[str], list[tuple]]] = {}


def _kept_rows(alias: str) -> list[tuple]:
    with connections[alias].cursor() as cursor:
        counts = []
        for table in KEPT_TABLES:
            cursor.execute(f"SELECT COUNT(*), MAX(id) FROM {connections[alias].ops.quote_name(table)}")
            counts.append(cursor.fetchone())
        return counts


def _delete_rows(alias: str) -> bool:
    """Delete every row the test wrote, in one transaction; False if the kept tables changed (a test
    that migrated) or a table is gone, for Django's own flush to do it."""
    tables, kept = _flushed[alias]
    connection = connections[alias]
    try:
        if _kept_rows(alias) != kept:
            return False
        with transaction.atomic(using=alias), connection.cursor() as cursor:
            for table in tables:
                cursor.execute(f"DELETE FROM {connection.ops.quote_name(table)}")
    except DatabaseError:
        return False
    return True


def _fixture_teardown(self: TransactionTestCase) -> None:
    """Django's flush after a transactional test truncates every table, then makes the content types and
    permissions again (``post_migrate``): a tenth of a second on PostgreSQL, for each of hundreds of
    tests. The same end state, cheaper: the rows tests write deleted, the kept tables left as they were."""
    for alias in self._databases_names(include_mirrors=False):
        if alias not in _flushed or not _delete_rows(alias):
            call_command("flush", verbosity=0, interactive=False, database=alias, reset_sequences=False)
            _remember(alias)


def _remember(alias: str) -> None:
    """The tables of a database just made (or flushed by Django), and what its kept tables hold."""
    tables = connections[alias].introspection.django_table_names(only_existing=True, include_views=False)
    _flushed[alias] = (sorted(set(tables) - set(KEPT_TABLES)), _kept_rows(alias))


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """The test databases, as pytest-django makes them, flushed after each transactional test by
    ``_fixture_teardown``."""
    with django_db_blocker.unblock():
        for connection in connections.all():
            if connection.settings_dict["NAME"]:  # else not made: no test of this run needs it
                _remember(connection.alias)
    TransactionTestCase._fixture_teardown = _fixture_teardown
    yield


def _redis_settings(url: str) -> dict:
    from django.conf import settings

    queues = {name: {**config, "URL": url} for name, config in settings.RQ_QUEUES.items()}
    caches = {alias: {**config, "LOCATION": url} for alias, config in settings.CACHES.items()}
    return {"RQ_QUEUES": queues, "CACHES": caches, "REDIS_URL": url}


@pytest.fixture(scope="session")
def redis_server():
    """One redis-server for the whole run, on a free port; Django and worker processes are pointed at it."""
    server = RedisServer()
    server.start()
    previous = os.environ.get("REDIS_URL")
    os.environ["REDIS_URL"] = server.url
    override = override_settings(**_redis_settings(server.url))
    override.enable()
    yield server
    override.disable()
    if previous is None:
        os.environ.pop("REDIS_URL", None)
    else:
        os.environ["REDIS_URL"] = previous
    server.cleanup()


@pytest.fixture(autouse=True)
def redis(redis_server):
    """A clean Redis for every test (restarted if a test stopped it), and the enqueue breaker and the
    cache's failures forgotten: one test's hung Redis must not leave the next test's pushes to the relay
    or its cached calls uncached."""
    from jobs.cache.store import forget_stores
    from jobs.dispatch import breaker

    breaker.close()
    forget_stores()
    if redis_server.process is None:
        redis_server.start()
    client = redis_server.client()
    client.flushall()
    yield client
    if redis_server.process is None:
        redis_server.start()
    client.close()


@pytest.fixture
def aof_redis():
    """A Redis of the test's own with AOF on (as the README recommends), so that a restart keeps its jobs."""
    server = RedisServer(appendonly=True)
    server.start()
    with override_settings(**_redis_settings(server.url)):
        yield server
    server.cleanup()


@pytest.fixture
def restore_signal_handlers():
    """A worker run in this process installs its signal handlers; the test run gets its own back."""
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    yield
    for signum, handler in handlers.items():
        signal.signal(signum, handler)
