"""The Prometheus endpoint: who may scrape it, what a scrape after real jobs exports, and its cost."""

from __future__ import annotations

import importlib
import json
import os
import re
import signal
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.checks import run_checks
from django.db import connection
from django.test.utils import CaptureQueriesContext, override_settings
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from jobs import dispatch, transitions
from jobs.admin import figures
from jobs.cache import stats
from jobs.conf import jobs_settings
from jobs.exceptions import JobsConfigurationError
from jobs.metrics import collector, window
from jobs.models import Job, Status
from tests import cache_functions, jobs
from tests.helpers import WorkerProcess, drain, staff_user, wait_for

URL = "/jobs/metrics/"
TOKEN = "s3cret-token-for-the-scraper"
DASHBOARD = Path(collector.__file__).with_name("grafana-dashboard.json")

pytestmark = pytest.mark.django_db


@pytest.fixture
def token_settings(settings):
    settings.JOBS = {**settings.JOBS, "METRICS_TOKEN": TOKEN}


def scrape(client, **headers):
    response = client.get(URL, headers={"authorization": f"Bearer {TOKEN}", **headers})
    assert response.status_code == 200, response.content
    return response


def samples(client) -> dict[tuple[str, frozenset], float]:
    """Every sample of a scrape, by name and labels."""
    text = scrape(client).content.decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(found, name, **labels):
    return found.get((name, frozenset(labels.items())))


def total(found, name, **labels):
    """The sum of the samples of ``name`` that have these labels (and any others)."""
    wanted = set(labels.items())
    matching = [v for (sample, its), v in found.items() if sample == name and wanted <= its]
    assert matching, (name, labels)
    return sum(matching)


# Who may scrape.


def test_anonymous_requests_are_refused_with_a_bearer_challenge(client, token_settings):
    response = client.get(URL)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert "METRICS_TOKEN" in response.content.decode()
    assert "jobs_records" not in response.content.decode()


def test_a_wrong_token_is_refused_even_for_a_staff_user(client, token_settings):
    client.force_login(staff_user("view_job"))
    for header in ("Bearer nope", f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", "Bearer "):
        response = client.get(URL, headers={"authorization": header})
        assert response.status_code == 401, header


def test_no_token_is_accepted_when_none_is_set(client):
    for header in ("Bearer ", "Bearer None", f"Bearer {TOKEN}"):
        assert client.get(URL, headers={"authorization": header}).status_code == 401


def test_signed_in_users_who_may_not_see_jobs_are_forbidden(client):
    client.force_login(User.objects.create_user("someone", password="pw"))
    assert client.get(URL).status_code == 403
    client.force_login(staff_user(username="staff-without-permission"))
    assert client.get(URL).status_code == 403


def test_staff_who_may_see_the_dashboard_may_scrape(client):
    client.force_login(staff_user("view_job"))
    response = client.get(URL)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    assert "no-cache" in response["Cache-Control"]
    assert "# TYPE jobs_records gauge" in response.content.decode()


def test_the_token_lets_a_scraper_in_and_openmetrics_is_served_on_request(client, token_settings):
    assert "jobs_records" in scrape(client).content.decode()
    response = scrape(client, accept="application/openmetrics-text; version=1.0.0")
    assert response["Content-Type"].startswith("application/openmetrics-text")
    assert response.content.decode().endswith("# EOF\n")


def test_only_get_and_head_are_answered(client, token_settings):
    headers = {"authorization": f"Bearer {TOKEN}"}
    assert client.post(URL, headers=headers).status_code == 405
    assert client.head(URL, headers=headers).status_code == 200


@override_settings(ROOT_URLCONF="tests.cache_urls")
def test_the_endpoint_is_off_unless_its_url_is_included(client, token_settings):
    assert client.get(URL, headers={"authorization": f"Bearer {TOKEN}"}).status_code == 404


def test_without_prometheus_client_the_import_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    monkeypatch.delitem(sys.modules, "jobs.metrics")
    with pytest.raises(JobsConfigurationError, match=r"pip install 'django-jobs-ledger\[metrics\]'"):
        importlib.import_module("jobs.metrics")


@pytest.mark.parametrize(
    ("jobs_settings", "error"),
    [
        ({"METRICS_TOKEN": "short"}, "jobs.E087"),
        ({"METRICS_TOKEN": 1234567890123456789}, "jobs.E087"),
        ({"METRICS_TOKEN": "a-token-read-from-a-file\n"}, "jobs.E087"),  # no scraper sends the newline
        ({"METRICS_TOKEN": " a-token-with-spaces-around "}, "jobs.E087"),
        ({"METRICS_TOKEN": "ein-schlüssel-mit-umlaut"}, "jobs.E087"),  # WSGI gives headers as latin-1
        ({"METRICS_TOKEN": "two words-of-a-long-token"}, "jobs.E087"),
        ({"METRICS_WINDOW": 0}, "jobs.E088"),
        ({"METRICS_WINDOW": "60"}, "jobs.E088"),
    ],
)
def test_checks_refuse_a_weak_token_and_a_window_that_is_no_length(settings, jobs_settings, error):
    settings.JOBS = {**settings.JOBS, **jobs_settings}
    assert error in {message.id for message in run_checks(databases=[])}


def test_checks_accept_the_defaults_and_a_long_token(settings, token_settings):
    assert not {m.id for m in run_checks(databases=[]) if m.id in ("jobs.E087", "jobs.E088")}


# What a scrape exports.


@pytest.mark.django_db(transaction=True)
def test_a_scrape_after_real_jobs_shows_their_outcomes_times_and_retries(client, token_settings):
    for n in range(3):
        jobs.add.enqueue(n, 1)
    jobs.boom.using(queue="high").enqueue("for the metrics")
    jobs.fails_then_succeeds.enqueue(1)
    jobs.noop.using(queue="low").enqueue()
    drain()
    found = samples(client)

    assert total(found, "jobs_records", queue="default", status="finished") == 4
    assert value(found, "jobs_records", queue="default", function="tests.jobs.add", status="finished") == 3
    assert value(found, "jobs_records", queue="default", function="tests.jobs.add", status="failed") == 0
    assert value(found, "jobs_records", queue="high", function="tests.jobs.boom", status="failed") == 1
    assert total(found, "jobs_records", queue="low", status="finished") == 1
    assert total(found, "jobs_records", queue="low", status="queued") == 0
    assert (
        value(found, "jobs_window_ended", queue="default", function="tests.jobs.add", status="finished") == 3
    )
    assert value(found, "jobs_window_ended", queue="high", function="tests.jobs.boom", status="failed") == 1
    assert value(found, "jobs_window_seconds") == 60

    add = {"queue": "default", "function": "tests.jobs.add"}
    assert value(found, "jobs_window_run_seconds_bucket", **add, outcome="finished", le="+Inf") == 3
    assert value(found, "jobs_window_run_seconds_bucket", **add, outcome="finished", le="60") == 3
    assert value(found, "jobs_window_run_seconds_gcount", **add, outcome="finished") == 3
    assert 0 < value(found, "jobs_window_run_seconds_gsum", **add, outcome="finished") < 3
    assert value(found, "jobs_window_start_latency_seconds_gcount", **add) == 3
    assert value(found, "jobs_window_start_latency_seconds_bucket", **add, le="+Inf") == 3
    # A retried job's start latency counts its first attempt only: its retry waits by design.
    retried = {"queue": "default", "function": "tests.jobs.fails_then_succeeds"}
    assert value(found, "jobs_window_start_latency_seconds_gcount", **retried) is None

    boom = {"queue": "high", "function": "tests.jobs.boom"}
    assert value(found, "jobs_window_failed_attempts", **boom) == 1
    assert value(found, "jobs_window_retries", **boom) == 0
    assert value(found, "jobs_window_run_seconds_gcount", **boom, outcome="failed") == 1
    assert value(found, "jobs_window_failed_attempts", **retried) == 1
    assert value(found, "jobs_window_retries", **retried) == 1
    assert value(found, "jobs_window_abandoned", **retried) == 0

    # RQ's side, from django-rq's collector: the queues are empty and the burst worker has left.
    assert value(found, "rq_jobs", queue="default", status="queued") == 0
    assert value(found, "rq_jobs", queue="high", status="failed") == 1
    assert value(found, "jobs_queue_paused", queue="default") == 0
    assert value(found, "jobs_undispatched") == 0
    for part in ("rq", "paused", "cache"):
        assert value(found, "jobs_metrics_part_up", part=part) == 1


def test_run_time_and_start_latency_fall_in_the_right_buckets(db):
    now = timezone.now()

    def record(run_ms, wait_ms, **fields):
        started = now - timedelta(milliseconds=run_ms)
        return Job.objects.create(
            function="tests.jobs.add",
            queue="default",
            status=Status.FINISHED,
            attempts=1,
            enqueued_at=started - timedelta(milliseconds=wait_ms),
            started_at=started,
            finished_at=now,
            **fields,
        )

    record(run_ms=3, wait_ms=20)
    record(run_ms=70, wait_ms=400)
    record(run_ms=2000, wait_ms=7000)
    # Delayed: its latency runs from its due time, not from its enqueue.
    record(run_ms=30, wait_ms=0, scheduled_for=now - timedelta(milliseconds=30 + 800))
    figures = window.collect(60, now=now)
    key = ("default", "tests.jobs.add")
    run = figures.run_time[(*key, "finished")]
    bounds = dict(zip(window.BUCKETS, run.counts, strict=True))
    assert (bounds[0.005], bounds[0.05], bounds[0.1], bounds[2.5], run.count) == (1, 2, 3, 4, 4)
    assert run.total == pytest.approx(2.103, abs=0.001)
    wait = figures.latency[key]
    bounds = dict(zip(window.BUCKETS, wait.counts, strict=True))
    assert (bounds[0.025], bounds[0.5], bounds[1], bounds[5], bounds[10], wait.count) == (1, 2, 3, 3, 4, 4)
    assert wait.total == pytest.approx(8.22, abs=0.001)
    assert figures.ended == {(*key, "finished"): 4}


def test_the_window_leaves_out_what_ended_before_it(db):
    now = timezone.now()
    old = now - timedelta(minutes=5)
    Job.objects.create(
        function="tests.jobs.add",
        queue="default",
        status=Status.FINISHED,
        attempts=1,
        enqueued_at=old,
        started_at=old,
        finished_at=old,
    )
    running = Job.objects.create(
        function="tests.jobs.add",
        queue="default",
        status=Status.STARTED,
        attempts=1,
        enqueued_at=now - timedelta(seconds=2),
        started_at=now - timedelta(seconds=1),
    )
    figures = window.collect(60, now=now)
    assert figures.ended == {}
    assert figures.run_time == {}
    # A running job's first start is in the window: its latency counts now, not when it ends.
    assert figures.latency[("default", "tests.jobs.add")].count == 1
    assert running.pk


def test_abandoned_attempts_are_counted(client, token_settings):
    record = Job.objects.create(function="tests.jobs.noop", queue="default", max_attempts=2)
    attempt = transitions.claim(record, worker_name="gone")
    record.refresh_from_db()
    assert transitions.abandon(
        record, "the worker died", error_class=collector.recent.ABANDONED, retrying=True
    )
    record.refresh_from_db()
    transitions.claim(record, worker_name="gone too")
    record.refresh_from_db()
    transitions.abandon(
        record, "the worker died again", error_class=collector.recent.ABANDONED, retrying=False
    )
    found = samples(client)
    noop = {"queue": "default", "function": "tests.jobs.noop"}
    assert attempt == 1
    assert value(found, "jobs_window_abandoned", **noop) == 2
    assert value(found, "jobs_window_failed_attempts", **noop) == 2
    assert value(found, "jobs_window_retries", **noop) == 1
    assert value(found, "jobs_window_ended", **noop, status="failed") == 1


def test_waiting_jobs_their_oldest_age_and_the_undispatched(client, token_settings):
    now = timezone.now()
    Job.objects.create(function="tests.jobs.add", queue="default", enqueued_at=now - timedelta(seconds=90))
    Job.objects.create(function="tests.jobs.add", queue="high", enqueued_at=now - timedelta(seconds=5))
    Job.objects.create(function="tests.jobs.add", queue="high", undispatched_since=now)
    found = samples(client)
    assert total(found, "jobs_records", queue="high", status="queued") == 2
    assert 90 <= value(found, "jobs_oldest_waiting_seconds", queue="default") < 120
    assert 5 <= value(found, "jobs_oldest_waiting_seconds", queue="high") < 30
    assert value(found, "jobs_oldest_waiting_seconds", queue="low") == 0
    assert value(found, "jobs_undispatched") == 1


def test_cache_counts_per_namespace(client, token_settings):
    stats.reset()
    for _ in range(3):
        cache_functions.square(4)
    found = samples(client)
    namespace = {"namespace": "tests.cache_functions.square"}
    assert value(found, "jobs_cache_hits_total", **namespace) == 2
    assert value(found, "jobs_cache_misses_total", **namespace) == 1
    assert value(found, "jobs_cache_stale_total", **namespace) == 0
    assert value(found, "jobs_cache_errors_total", **namespace) == 0


def test_paused_queues(client, token_settings):
    from jobs import pause

    pause.pause("low")
    found = samples(client)
    assert value(found, "jobs_queue_paused", queue="low") == 1
    assert value(found, "jobs_queue_paused", queue="high") == 0


def test_redis_down_leaves_the_ledger_figures_and_says_what_is_missing(client, token_settings, redis_server):
    Job.objects.create(function="tests.jobs.add", queue="default", status=Status.FAILED)
    redis_server.stop()
    found = samples(client)
    assert total(found, "jobs_records", queue="default", status="failed") == 1
    for part in ("rq", "paused", "cache"):
        assert value(found, "jobs_metrics_part_up", part=part) == 0
    assert not any(name.startswith("rq_jobs") for name, _ in found)


def test_a_worker_record_that_does_not_parse_leaves_rqs_figures_out(client, token_settings, redis):
    Job.objects.create(function="tests.jobs.add", queue="default", status=Status.FAILED)
    redis.sadd("rq:workers", "rq:worker:odd")
    redis.hset("rq:worker:odd", mapping={"queues": "default", "last_heartbeat": "not-a-date"})
    found = samples(client)  # a 500 before
    assert total(found, "jobs_records", queue="default", status="failed") == 1
    assert value(found, "jobs_metrics_part_up", part="rq") == 0


@pytest.mark.slow
def test_a_hung_redis_costs_one_scrape_one_socket_timeout_and_the_next_ones_none(
    client, token_settings, redis_server
):
    Job.objects.create(function="tests.jobs.add", queue="default", status=Status.FAILED)
    samples(client)  # every part read once, while Redis answers
    timeout = jobs_settings.REDIS_SOCKET_TIMEOUT
    os.kill(redis_server.process.pid, signal.SIGSTOP)
    try:
        took = []
        for _ in range(3):
            started = time.monotonic()
            found = samples(client)
            took.append(time.monotonic() - started)
            assert total(found, "jobs_records", queue="default", status="failed") == 1
            for part in ("rq", "paused", "cache"):
                assert value(found, "jobs_metrics_part_up", part=part) == 0
    finally:
        os.kill(redis_server.process.pid, signal.SIGCONT)
        dispatch.breaker.close()
    # The first waits out one read of the queues' Redis (and the cache's shorter one), not one per part;
    # the next ones leave Redis alone, well within Prometheus' default scrape timeout (10 s).
    assert timeout * 0.9 <= took[0] < timeout + 2, took
    assert max(took[1:]) < 1, took


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_a_running_worker_is_exported(client, token_settings):
    with WorkerProcess("--worker-class", "jobs.worker.SimpleWorker", queues=("default", "high")):

        def listed():
            workers = [labels for name, labels in samples(client) if name == "rq_workers"]
            return workers or None

        [labels] = wait_for(listed, message="the worker in the metrics")
        assert dict(labels)["queues"] == "default,high"


# The cost of a scrape.


def test_a_scrape_costs_the_same_queries_whatever_the_number_of_jobs(client, token_settings):
    def queries():
        with CaptureQueriesContext(connection) as captured:
            scrape(client)
        return len(captured)

    assert queries() == collector.QUERIES
    now = timezone.now()
    Job.objects.bulk_create(
        Job(
            function=f"tests.jobs.f{n % 7}",
            queue=("default", "high", "low", "elsewhere")[n % 4],
            status=Status.values[n % len(Status.values)],
            attempts=1,
            started_at=now,
            finished_at=now,
        )
        for n in range(500)
    )
    assert queries() == collector.QUERIES


# The Grafana dashboard.


def exported_names(text: str) -> set[str]:
    """The names a scrape's families give their samples, including those of families that have none now
    (django-rq's worker families when no worker runs)."""
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum", "_gcount", "_gsum"]}
    names = set()
    for family in text_string_to_metric_families(text):
        names |= {family.name, *(family.name + suffix for suffix in suffixes.get(family.type, []))}
        names |= {sample.name for sample in family.samples}
    return names


@pytest.mark.django_db(transaction=True)
def test_the_grafana_dashboard_names_only_metrics_the_endpoint_exports(client, token_settings):
    jobs.add.enqueue(1, 2)
    jobs.boom.enqueue()
    drain()
    cache_functions.square(3)
    exported = exported_names(scrape(client).content.decode())
    dashboard = json.loads(DASHBOARD.read_text())
    panels = [panel for panel in dashboard["panels"] if panel["type"] != "row"]
    assert len(panels) >= 10
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = set(re.findall(r"\b(?:jobs|rq)_[a-z_]+\b", target["expr"]))
            assert names, (panel["title"], target["expr"])
            assert names <= exported, (panel["title"], names - exported)


def test_the_grafana_dashboard_has_a_row_for_each_section_of_the_admin_dashboard():
    rows = [panel["title"] for panel in json.loads(DASHBOARD.read_text())["panels"] if panel["type"] == "row"]
    assert rows == [str(section.title) for section in figures.SECTIONS]


def test_a_run_that_ended_before_it_started_by_the_clocks_counts_as_none():
    histogram = window.Histogram()
    histogram.observe(-30.0)  # started on a host whose clock is ahead
    histogram.observe(2.0)
    assert histogram.total == 2.0
    assert histogram.counts[0] == 1
