"""The Redis deployments people run: a password, an ACL user, TLS, and Sentinel in front of a primary
(also through django-rq's ``USE_REDIS_CACHE``, the queues on the cache's django-redis client).

Every Redis connection the app opens comes from the configuration the user already wrote: django-rq's
``RQ_QUEUES`` for the queues, the locks of the relay, reaper, reconciler and due jobs, the rate limiter,
paused queues and heartbeats; django-redis's ``CACHES`` for the cache, its locks and its counts. Each
deployment here is written as its README section shows, and the same contract runs through each. The
servers start once for the module. In the Sentinel deployment, no setting names the primary's port: what
works went through the Sentinel.
"""

from __future__ import annotations

import datetime
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from django.core.cache import caches
from django.core.checks import run_checks
from django.test import override_settings
from django.urls import reverse

from jobs import pause
from jobs.models import Job, Status
from jobs.transport import connection
from tests import cache_functions, due_jobs
from tests import jobs as test_jobs
from tests.helpers import drain, run_worker, wait_for
from tests.redis_server import Certificates, RedisServer, SentinelServer

PASSWORD = "s3cret/pass"  # a "/" that a URL must escape
ACL_USER, ACL_PASSWORD = "jobsapp", "app-pass"
QUEUES = ("default", "high", "low")
QUEUE_OPTIONS = {"DEFAULT_TIMEOUT": 300, "SERIALIZER": "rq.serializers.JSONSerializer"}
CACHE_OPTIONS = {"SOCKET_CONNECT_TIMEOUT": 2, "SOCKET_TIMEOUT": 2}


@dataclass
class Deployment:
    name: str
    server: RedisServer  # the Redis that holds the data, for the test's own look at it
    queue: dict[str, Any]  # one RQ_QUEUES entry, as the README shows it
    cache: dict[str, Any]  # CACHES["default"]
    db: int = 0  # the queues' database

    def redis(self) -> Any:
        """A client of the test's own on the queues' database, to look at what the app wrote there."""
        return self.server.client(db=self.db)

    def settings(self) -> dict[str, Any]:
        return {
            "RQ_QUEUES": {name: {**self.queue, **QUEUE_OPTIONS} for name in QUEUES},
            "CACHES": {
                "default": {"BACKEND": "django_redis.cache.RedisCache", "KEY_PREFIX": "t", **self.cache}
            },
        }


@pytest.fixture(scope="module")
def servers():
    """A Redis with a password and an ACL user, a Redis that speaks TLS only, and a Sentinel in front of a
    primary (which has a password too, as production ones do)."""
    directory = Path(tempfile.mkdtemp(prefix="jobs-tls-"))
    certificates = Certificates.make(directory)
    acl_user = ["--user", ACL_USER, "on", f">{ACL_PASSWORD}", "~*", "&*", "+@all"]
    secured = RedisServer(
        options=["--requirepass", PASSWORD, *acl_user], client_options={"password": PASSWORD}
    )
    tls = RedisServer(tls=certificates)
    primary = RedisServer(options=["--requirepass", PASSWORD], client_options={"password": PASSWORD})
    started: list[Any] = []
    try:
        for server in (secured, tls, primary):
            started.append(server)  # cleaned up even if it fails to start
            server.start()
        sentinel = SentinelServer(primary, password=PASSWORD)
        started.append(sentinel)
        sentinel.start()
        yield {
            "secured": secured,
            "tls": tls,
            "primary": primary,
            "sentinel": sentinel,
            "ca": certificates.ca,
        }
    finally:
        for server in reversed(started):
            server.cleanup()
        for path in directory.iterdir():
            path.unlink()
        directory.rmdir()


def _deployments(servers: dict[str, Any]) -> dict[str, Deployment]:
    secured, tls, sentinel = servers["secured"], servers["tls"], servers["sentinel"]
    ca = str(servers["ca"])
    password = quote(PASSWORD, safe="")
    sentinel_cache = {
        "LOCATION": f"redis://:{password}@{sentinel.service}/1",
        "OPTIONS": {
            # Two round trips (the sentinel, then the primary) per new connection: as the queues' 5 s,
            # so that a loaded machine does not turn a slow answer into an outage.
            **CACHE_OPTIONS,
            "SOCKET_CONNECT_TIMEOUT": 5,
            "SOCKET_TIMEOUT": 5,
            "CLIENT_CLASS": "django_redis.client.SentinelClient",
            "CONNECTION_FACTORY": "django_redis.pool.SentinelConnectionFactory",
            "SENTINELS": [("127.0.0.1", sentinel.port)],
        },
    }
    return {
        "password": Deployment(
            "password",
            secured,
            {"URL": f"redis://:{password}@127.0.0.1:{secured.port}/0"},
            {"LOCATION": f"redis://:{password}@127.0.0.1:{secured.port}/1", "OPTIONS": CACHE_OPTIONS},
        ),
        "acl": Deployment(
            "acl",
            secured,
            {
                "HOST": "127.0.0.1",
                "PORT": secured.port,
                "DB": 2,
                "USERNAME": ACL_USER,
                "PASSWORD": ACL_PASSWORD,
            },
            {
                "LOCATION": f"redis://{ACL_USER}:{ACL_PASSWORD}@127.0.0.1:{secured.port}/3",
                "OPTIONS": CACHE_OPTIONS,
            },
            db=2,
        ),
        "tls": Deployment(
            "tls",
            tls,
            {"URL": f"rediss://127.0.0.1:{tls.port}/0?ssl_ca_certs={ca}", "SSL_CERT_REQS": "required"},
            {
                "LOCATION": f"rediss://127.0.0.1:{tls.port}/1",
                "OPTIONS": {
                    **CACHE_OPTIONS,
                    "CONNECTION_POOL_KWARGS": {"ssl_ca_certs": ca, "ssl_cert_reqs": "required"},
                },
            },
        ),
        "sentinel": Deployment(
            "sentinel",
            servers["primary"],
            {
                "SENTINELS": [["127.0.0.1", sentinel.port]],
                "MASTER_NAME": sentinel.service,
                "DB": 0,
                "PASSWORD": PASSWORD,
                "SOCKET_TIMEOUT": 5,
            },
            sentinel_cache,
        ),
        # django-rq's USE_REDIS_CACHE: the queues use the django-redis client of a cache alias.
        "use-redis-cache": Deployment(
            "use-redis-cache", servers["primary"], {"USE_REDIS_CACHE": "default"}, sentinel_cache, db=1
        ),
    }


def _using(servers: dict[str, Any], name: str):
    chosen = _deployments(servers)[name]
    if name in ("sentinel", "use-redis-cache"):
        # A sentinel on a loaded machine may judge its primary down for a moment: start from its view.
        wait_for(servers["sentinel"].knows_primary, timeout=30, message="the sentinel to report its primary")
    chosen.server.client().flushall()
    with override_settings(**chosen.settings()):
        yield chosen
    connection.reset()


@pytest.fixture(params=["password", "acl", "tls", "sentinel", "use-redis-cache"])
def deployment(request, servers):
    yield from _using(servers, request.param)


@pytest.fixture(params=["password", "tls", "sentinel"])
def process_deployment(request, servers):
    """The deployments whose clients differ in kind (a URL with a password, TLS, Sentinel), for the
    tests that start a worker process: it takes seconds."""
    yield from _using(servers, request.param)


def _record(pk: Any) -> Job:
    return Job.objects.get(pk=pk)


@pytest.mark.django_db(transaction=True, databases=["default", "other"])
def test_settings_reach_the_redis_they_name(deployment):
    """Not a connection left on the tests' own Redis: each client the app uses answers as the deployment."""
    queue_client = connection.get_connection("default")
    cache_client = caches["default"].client.get_client(write=True)
    for client in (queue_client, cache_client):
        assert client.ping()
        assert client.config_get("port")["port"] == str(deployment.server.port) or deployment.name == "tls"
    if deployment.name == "acl":
        assert queue_client.acl_whoami() == ACL_USER
        assert cache_client.acl_whoami() == ACL_USER
    if deployment.name == "tls":
        assert queue_client.config_get("tls-port")["tls-port"] == str(deployment.server.port)
    assert [message for message in run_checks() if message.id.startswith("jobs.")] == []


def test_queues_behind_two_sentinel_services_are_told_apart():
    """Due jobs are moved, and workers listed, once per Redis database: two services of one Sentinel
    are two databases, though their configurations hold no address (nothing connects here)."""
    sentinels = [["127.0.0.1", 26379]]
    queues = {
        name: {"SENTINELS": sentinels, "MASTER_NAME": service, "DB": 0}
        for name, service in (("one", "primary-a"), ("two", "primary-b"), ("also-one", "primary-a"))
    }
    with override_settings(RQ_QUEUES=queues):
        assert connection.server_of("one") != connection.server_of("two")
        assert connection.server_of("one") == connection.server_of("also-one")


@pytest.mark.django_db(transaction=True)
def test_jobs_run_through_the_deployment(deployment, restore_signal_handlers):
    """Enqueue, a run, a delayed job moved by the due-jobs pass, a rate-limited job; a real worker."""
    now = test_jobs.add.enqueue(2, 3)
    # Not due before its push on a loaded machine, or it would go to the queue at once.
    later = test_jobs.add.using(delay=datetime.timedelta(seconds=2)).enqueue(4, 5)
    limited = due_jobs.limited_count.enqueue("deployment")
    raw = deployment.redis()
    assert raw.llen("rq:queue:default") == 2  # the pushes reached the deployment's Redis
    assert raw.zcard("rq:scheduled:default") == 1  # and the delayed one waits there
    drain(queues=QUEUES)
    assert _record(now.pk).status == Status.FINISHED
    assert _record(now.pk).result == 5
    assert _record(limited.pk).status == Status.FINISHED  # the rate limiter's script ran in the deployment

    from jobs.upkeep.due import enqueue_due

    def moved_and_ran() -> bool:
        # The worker's own due-jobs pass may have moved it already, if it came due during the drain.
        enqueue_due(QUEUES)
        drain(queues=QUEUES)
        return _record(later.pk).status == Status.FINISHED

    wait_for(moved_and_ran, timeout=15)
    assert _record(later.pk).result == 9


@pytest.mark.django_db(transaction=True)
def test_upkeep_pause_and_the_dashboard_use_the_deployment(deployment, admin_client):
    from jobs.upkeep.reaper import reap
    from jobs.upkeep.reconcile import reconcile
    from jobs.upkeep.relay import relay

    assert relay() == 0
    assert reap() == 0
    assert reconcile() == 0
    assert pause.pause("high")
    assert pause.paused(QUEUES) == {"high"}
    assert deployment.redis().exists("jobs:paused:high")
    assert pause.resume("high")
    assert pause.paused(QUEUES) == set()

    test_jobs.add.enqueue(1, 1)
    figures = admin_client.get(reverse("admin:jobs_dashboard_data")).json()
    default = next(row for row in figures["queues"] if row["name"] == "default")
    assert (default["error"], default["redis"]["queued"]) == (None, 1)
    assert figures["workers"] == {"error": None, "workers": []}


@pytest.mark.django_db(transaction=True)
def test_heartbeat_refreshes_the_running_entry_in_the_deployment(deployment):
    """The heartbeat thread's client has a pool of its own: made from the queue's, it must keep its
    password, its TLS and its Sentinel."""
    from jobs.transport.worker import Running
    from jobs.worker.liveness import Heartbeat

    heartbeat = Heartbeat(connection.get_connection("default"))
    running = Running(
        registry_key="rq:wip:default",
        entry="job:exec",
        execution_key="rq:execution:x",
        worker_key="rq:worker:w",
    )
    heartbeat.begin(running)
    try:
        heartbeat.beat()
    finally:
        heartbeat.stop()
    assert deployment.redis().zscore("rq:wip:default", "job:exec") is not None


@pytest.mark.django_db(transaction=True)
def test_cached_functions_and_views_through_the_deployment(deployment, client):
    from jobs.cache import invalidate_tags, stats

    assert cache_functions.square(7) == 49
    assert cache_functions.square(7) == 49
    assert cache_functions.runs("square") == 1
    with override_settings(ROOT_URLCONF="tests.cache_urls"):
        first = client.get("/article/intro")
        second = client.get("/article/intro")
        assert first.status_code == second.status_code == 200
        assert second.content == first.content == b"intro #1"
        assert invalidate_tags("article:intro") == 1
        assert client.get("/article/intro").content == b"intro #2"
    assert stats.flush()
    assert stats.read()["tests.cache_functions.square"]["hits"] >= 1


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_worker_process_runs_jobs_through_the_deployment(process_deployment):
    """``manage.py rqworker`` (the forking worker, with its heartbeat thread and its maintenance) built from
    the same settings, given to it as the user wrote them."""
    quick = test_jobs.add.enqueue(1, 2)
    slow = test_jobs.sleep_for.enqueue(0.5)  # two heartbeats at least, with ABANDONED_AFTER 2
    output = run_worker(
        "--worker-class",
        "jobs.worker.Worker",
        queues=("default",),
        JOBS_TEST_REDIS_SETTINGS=json.dumps(process_deployment.settings()),
        JOBS_TEST_JOBS=json.dumps({"ABANDONED_AFTER": 2}),
    )
    assert _record(quick.pk).status == Status.FINISHED, output
    assert _record(slow.pk).status == Status.FINISHED, output
    assert "Heartbeat" not in output, output
    assert "Traceback" not in output, output
