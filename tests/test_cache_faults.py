"""Redis stopped or hung mid-test: decorated code runs uncached, nothing raises, one warning."""

import logging
import signal
import subprocess
import sys
import time

import pytest
from django.conf import settings
from django.test import override_settings
from redis.exceptions import RedisError

from jobs.cache import cached, invalidate_tags, stats
from jobs.cache.store import forget_stores
from tests import cache_urls
from tests.helpers import wait_for, worker_env

pytestmark = [pytest.mark.urls("tests.cache_urls"), pytest.mark.slow]

RUNS: list[int] = []


@cached(ttl=60, namespace="faults", tags=["faulty"])
def triple(x):
    RUNS.append(x)
    return 3 * x


@pytest.fixture(autouse=True)
def _reset():
    RUNS.clear()
    cache_urls.PLAIN_RUNS.clear()


def warnings_about_the_cache(caplog):
    return [r for r in caplog.records if r.levelno == logging.WARNING and "unreachable" in r.getMessage()]


@override_settings(DEBUG=True, JOBS={"CACHE_RETRY_AFTER": 0.5})
def test_redis_stopped_mid_test_runs_uncached_then_recovers(redis_server, client, caplog, db):
    assert triple(1) == 3
    assert triple(1) == 3
    assert client.get("/plain")["X-Cache"] == "MISS"
    assert client.get("/plain")["X-Cache"] == "HIT"
    assert RUNS == [1]
    stats.flush()

    redis_server.stop()
    caplog.set_level(logging.WARNING, logger="jobs")
    for _ in range(10):
        assert triple(1) == 3
        response = client.get("/plain")
        assert response.status_code == 200
        assert response["X-Cache"] == "ERROR"
    assert RUNS == [1] + [1] * 10, "every call ran, uncached"
    assert len(cache_urls.PLAIN_RUNS) == 11
    assert triple.invalidate(1) is False
    assert invalidate_tags("faulty") == 0
    assert len(warnings_about_the_cache(caplog)) == 1, "one warning, not one per request"

    redis_server.start()
    # After CACHE_RETRY_AFTER the cache is used again; the entries written before the stop were lost.
    wait_for(lambda: client.get("/plain")["X-Cache"] == "HIT", timeout=30, message="the cache to recover")
    wait_for(lambda: triple(2) == 6 and RUNS.count(2) == 1 and triple(2) == 6, timeout=30)
    assert RUNS.count(2) == 1
    stats.flush()
    assert stats.read()["faults"]["errors"] >= 10, "the calls that ran uncached are counted once back"


def test_hung_redis_costs_one_socket_timeout_then_is_bypassed(redis_server, caplog):
    # SIGSTOP: Redis accepts connections but never answers, as a hung or overloaded server does.
    caplog.set_level(logging.WARNING, logger="jobs")
    triple(5)
    redis_server.process.send_signal(signal.SIGSTOP)
    try:
        with override_settings(JOBS={"CACHE_RETRY_AFTER": 60}):
            results = [triple(7) for _ in range(20)]
    finally:
        redis_server.process.send_signal(signal.SIGCONT)
    assert results == [21] * 20
    assert RUNS == [5] + [7] * 20
    assert len(warnings_about_the_cache(caplog)) == 1
    # redis-py 5.0 names the address ("Timeout reading from 127.0.0.1:…"), later ones "socket".
    assert "Timeout reading from" in warnings_about_the_cache(caplog)[0].getMessage()


@pytest.mark.parametrize("in_a_worker", [False, True], ids=["web", "worker"])
def test_a_redis_that_cannot_persist_is_bypassed_as_one_that_is_down(redis_server, caplog, in_a_worker):
    """``MISCONF`` (a full disk: Redis refuses writes until it can persist again) was taken for a refusal
    of what a key holds: logged as an error, and every miss tried its write again. It is now an outage,
    in a web process (a plain ``ResponseError``) as in a worker (``MisconfError``)."""
    from redis._parsers import BaseParser

    from jobs.transport.connection import recognise_misconf

    before = BaseParser.EXCEPTION_CLASSES.pop("MISCONF", None)  # a worker built earlier in this process
    if in_a_worker:
        recognise_misconf()
    try:
        caplog.set_level(logging.WARNING, logger="jobs")
        with redis_server.failing_snapshots(), override_settings(JOBS={"CACHE_RETRY_AFTER": 60}):
            results = [triple(4) for _ in range(3)]
    finally:
        BaseParser.EXCEPTION_CLASSES.pop("MISCONF", None)
        if before is not None:
            BaseParser.EXCEPTION_CLASSES["MISCONF"] = before
    assert results == [12] * 3
    assert RUNS == [4] * 3
    assert len(warnings_about_the_cache(caplog)) == 1
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def test_while_the_cache_leaves_a_hung_redis_alone_so_do_its_counts(redis_server):
    stats.flush()
    redis_server.process.send_signal(signal.SIGSTOP)
    try:
        with override_settings(JOBS={"CACHE_RETRY_AFTER": 60}):
            assert triple(8) == 24  # pays the socket timeout once; the cache is then left alone
            started = time.monotonic()
            for _ in range(5):
                stats.count("faults", "hits")
                assert stats.flush() is False
            assert time.monotonic() - started < 0.2, "a flush waited for the hung Redis"
            with pytest.raises(RedisError):
                stats.read()
            assert time.monotonic() - started < 0.2, "a read waited for the hung Redis"
    finally:
        redis_server.process.send_signal(signal.SIGCONT)
    wait_for(lambda: redis_server.client().ping(), timeout=10)
    assert stats.flush() is True  # kept meanwhile, added once Redis may be used again
    assert stats.read()["faults"]["hits"] == 5


def test_a_process_that_exits_adds_its_counts_before_it_goes(redis, db):
    script = "import django; django.setup(); from jobs.cache import stats; stats.count('leaving', 'hits')"
    subprocess.run([sys.executable, "-c", script], env=worker_env(), check=True, timeout=60)
    assert stats.read()["leaving"]["hits"] == 1


SERVER = {}


@cached(ttl=60, namespace="hangs-meanwhile")
def hangs_meanwhile(x):
    SERVER["redis"].process.send_signal(signal.SIGSTOP)  # Redis hangs while the value is computed
    return x


@pytest.mark.parametrize("call", ["miss", "refresh"])
def test_a_redis_that_hangs_during_a_computation_costs_one_socket_timeout(redis_server, call):
    SERVER["redis"] = redis_server
    timeout = settings.CACHES["default"]["OPTIONS"]["SOCKET_TIMEOUT"]
    try:
        with override_settings(JOBS={"CACHE_RETRY_AFTER": 60}):
            started = time.monotonic()
            assert (hangs_meanwhile(1) if call == "miss" else hangs_meanwhile.refresh(1)) == 1
            elapsed = time.monotonic() - started
    finally:
        redis_server.process.send_signal(signal.SIGCONT)
    # The store times out; the lock (or the refresh flag) is left to expire, not released into the hang.
    assert elapsed < 1.5 * timeout, f"{elapsed:.2f} s: the cache did not leave the hung Redis alone"


def test_counts_sent_to_a_redis_that_hung_are_added_once(redis_server):
    stats.reset()
    for _ in range(5):
        stats.count("hung-flush", "hits")
    redis_server.process.send_signal(signal.SIGSTOP)
    try:
        assert stats.flush() is False  # timed out; the batch waits in Redis's socket, and is kept here
    finally:
        redis_server.process.send_signal(signal.SIGCONT)
    # The hung Redis runs the batch it was sent, then this one is sent again, with a count made since.
    wait_for(lambda: redis_server.client().keys("*stats*hung-flush"), timeout=10)
    stats.count("hung-flush", "misses")
    forget_stores()  # as CACHE_RETRY_AFTER passing does
    assert stats.flush() is True
    counts = stats.read()["hung-flush"]
    assert (counts["hits"], counts["misses"]) == (5, 1), "the batch was added twice"
