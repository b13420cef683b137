"""The admin dashboard: queue counts from Redis and the ledger, workers, throughput, oldest waiting job."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from jobs.admin import figures as dashboard
from jobs.models import FailedAttempt, Job, Status
from jobs.transport.queues import push
from tests import jobs
from tests.helpers import WorkerProcess, staff_user, wait_for

PAGE = "/admin/jobs/dashboard/"
DATA = "/admin/jobs/dashboard/data/"


def make(status, queue="default", function="tests.jobs.add", **fields):
    return Job.objects.create(function=function, queue=queue, status=status, **fields)


@pytest.fixture
def viewer(client, db):
    client.force_login(staff_user("view_job"))
    return client


def test_admin_index_links_to_the_dashboard_for_those_who_may_see_jobs(client, db):
    client.force_login(staff_user("view_job"))
    assert reverse("admin:jobs_dashboard_changelist") == PAGE
    assert PAGE in client.get("/admin/").content.decode()
    client.force_login(staff_user(username="nobody"))
    assert PAGE not in client.get("/admin/").content.decode()
    assert client.get(PAGE).status_code == 403
    assert client.get(DATA).status_code == 403


def test_anonymous_users_are_sent_to_the_login_page(client, db):
    response = client.get(PAGE)
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
    assert client.get(DATA).status_code == 302


def test_queue_counts_come_from_redis_and_from_the_ledger(viewer):
    pushed = [make(Status.QUEUED), make(Status.QUEUED), make(Status.QUEUED, queue="high")]
    push(pushed)
    make(Status.FAILED)
    make(Status.FINISHED, queue="high")
    make(Status.RETRYING, queue="low")
    data = viewer.get(DATA).json()
    queues = {q["name"]: q for q in data["queues"]}
    assert set(queues) == {"default", "high", "low"}
    assert queues["default"]["redis"]["queued"] == 2
    assert queues["high"]["redis"]["queued"] == 1
    assert queues["default"]["redis"]["failed"] == 0
    assert queues["default"]["ledger"]["queued"] == 2
    assert queues["default"]["ledger"]["failed"] == 1
    assert queues["high"]["ledger"]["finished"] == 1
    assert queues["low"]["ledger"]["retrying"] == 1
    assert queues["low"]["error"] is None
    page = viewer.get(PAGE).content.decode()
    assert 'data-queue="default"' in page
    assert 'data-figure="redis-queued">2<' in page


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_a_real_worker_and_a_real_failure_show_up(client):
    client.force_login(staff_user("view_job"))
    failed = jobs.boom.enqueue("dashboard")
    with WorkerProcess("--worker-class", "jobs.worker.SimpleWorker", queues=("default", "high")):
        wait_for(lambda: Job.objects.get(pk=failed.pk).status == Status.FAILED, message="the failure")

        def listed():
            workers = client.get(DATA).json()["workers"]["workers"]
            return workers if workers else None

        [worker] = wait_for(listed, message="the worker in the dashboard")
        assert worker["queues"] == ["default", "high"]
        assert worker["last_heartbeat"]
        page = client.get(PAGE).content.decode()
        assert worker["name"] in page
    queues = {q["name"]: q for q in client.get(DATA).json()["queues"]}
    assert queues["default"]["redis"]["failed"] == 1
    assert queues["default"]["ledger"]["failed"] == 1
    assert client.get(DATA).json()["throughput"]["failed"] == 1


def test_throughput_per_minute_over_the_last_hour(viewer):
    now = timezone.now()
    for minutes_ago in (0, 0, 5, 59, 61):
        make(Status.FINISHED, finished_at=now - timedelta(minutes=minutes_ago))
    make(Status.FAILED, finished_at=now)  # a failure counts as a failed attempt, not as throughput
    job = make(Status.FAILED)
    FailedAttempt.objects.create(job=job, number=1, failed_at=now - timedelta(minutes=5))
    FailedAttempt.objects.create(job=job, number=2, failed_at=now - timedelta(minutes=90))
    figures = dashboard.throughput(now=now)
    assert len(figures["minutes"]) == 60
    assert figures["finished"] == 4
    assert figures["failed"] == 1
    assert figures["minutes"][-1]["finished"] == 2
    assert figures["minutes"][-6] == {**figures["minutes"][-6], "finished": 1, "failed": 1}
    assert figures["minutes"][0]["finished"] == 1
    assert figures["peak"] == 2
    # The page counts from the clock's own minute: read within one minute, it shows that minute's figures.
    for _ in range(3):
        minute = timezone.now().replace(second=0, microsecond=0)
        page = viewer.get(PAGE).content.decode()
        if timezone.now().replace(second=0, microsecond=0) == minute:
            break
    shown = dashboard.throughput(now=minute)
    assert "<svg" in page
    assert f"{shown['finished']} jobs finished and {shown['failed']} attempts failed" in page
    assert shown["finished"] in (3, 4)  # the one of 59 minutes ago, if the clock moved to a new minute


def test_oldest_waiting_job_is_the_one_due_longest(viewer):
    now = timezone.now()
    make(Status.QUEUED, enqueued_at=now - timedelta(seconds=30))
    oldest = make(Status.QUEUED, function="tests.jobs.noop", enqueued_at=now - timedelta(seconds=300))
    make(Status.SCHEDULED, enqueued_at=now - timedelta(hours=2), scheduled_for=now + timedelta(hours=1))
    make(Status.FAILED, enqueued_at=now - timedelta(hours=3))
    waiting = dashboard.oldest_waiting(now=now)
    assert waiting["pk"] == oldest.pk
    assert 299 <= waiting["age_seconds"] <= 301
    # A retried job waits from its retry, not from its first enqueue.
    Job.objects.filter(pk=oldest.pk).update(retried_at=now - timedelta(seconds=10))
    assert dashboard.oldest_waiting(now=now)["age_seconds"] == pytest.approx(30, abs=1)
    # A scheduled job that is due waits from its scheduled time.
    due = make(
        Status.SCHEDULED, enqueued_at=now - timedelta(hours=1), scheduled_for=now - timedelta(seconds=60)
    )
    assert dashboard.oldest_waiting(now=now)["pk"] == due.pk
    assert "tests.jobs.add" in viewer.get(PAGE).content.decode()


def test_no_waiting_job(viewer):
    assert dashboard.oldest_waiting() is None
    assert "no job is waiting" in viewer.get(PAGE).content.decode()


def _queries(client, url):
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    return len(captured)


def test_the_number_of_queries_does_not_grow_with_the_jobs(viewer):
    few = _queries(viewer, DATA)
    now = timezone.now()
    for index in range(40):
        job = make(
            [Status.QUEUED, Status.FAILED, Status.FINISHED][index % 3],
            queue=["default", "high", "low"][index % 3],
            function=f"tests.jobs.f{index}",
            finished_at=now - timedelta(minutes=index),
        )
        FailedAttempt.objects.create(job=job, number=1, failed_at=now - timedelta(minutes=index))
    many = _queries(viewer, DATA)
    assert many == few
    # Session, user, the user's and groups' permissions; then ledger counts, throughput (2), oldest
    # waiting job, undispatched count.
    assert many <= 9
    assert _queries(viewer, PAGE) == many


def test_the_page_refreshes_its_sections_from_a_partial_view(viewer):
    page = viewer.get(PAGE).content.decode()
    assert 'id="jobs-dashboard-sections"' in page
    assert "?partial=1" in page
    partial = viewer.get(PAGE, {"partial": "1"}).content.decode()
    assert 'id="jobs-section-queues"' in partial
    assert "<html" not in partial


def test_the_page_still_answers_when_redis_is_down(viewer, redis_server):
    make(Status.FAILED)
    redis_server.stop()
    response = viewer.get(PAGE)
    assert response.status_code == 200
    assert "Redis did not answer" in response.content.decode()
    data = viewer.get(DATA).json()
    assert data["queues"][0]["error"]
    assert data["queues"][0]["ledger"]["failed"] == 1
    assert data["workers"]["error"]
