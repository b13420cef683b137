from __future__ import annotations

import os
import signal

import pytest
from django.test.utils import override_settings

from tests.redis_server import RedisServer


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
