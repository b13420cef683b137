"""The Job admin through the test client: columns, filters, search, the read-only page, and every action
with its permission, its refusal, its audit entry and its redirect back to the filtered list."""

import threading
from datetime import timedelta
from urllib.parse import urlencode

import pytest
from django.contrib.admin.models import CHANGE, DELETION, LogEntry
from django.contrib.auth.models import User
from django.db import connection
from django.db import connections as db_connections
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rq.job import Job as RQJob
from rq.registry import CanceledJobRegistry
from rq.serializers import JSONSerializer

from jobs.models import FailedAttempt, Job, Status
from jobs.transport import connection as jobs_connection
from jobs.transport.queues import push
from jobs.upkeep.relay import relay
from tests import jobs
from tests.helpers import drain, staff_user

LIST = "/admin/jobs/job/"


def make(status=Status.FAILED, queue="default", function="tests.jobs.add", **fields):
    fields.setdefault("args", [1, 2])
    if status == Status.FAILED:
        fields.setdefault("error_class", "builtins.ValueError")
        fields.setdefault("error_message", "it broke")
        fields.setdefault("attempts", 1)
    return Job.objects.create(function=function, queue=queue, status=status, **fields)


def change_url(job):
    return f"{LIST}{job.pk}/change/"


def messages_of(response):
    """The messages shown on the page an action redirected to."""
    shown = response.client.get(response["Location"])
    return [str(m) for m in shown.context["messages"]]


def queued_ids(queue="default"):
    return jobs_connection.get_queue(queue).get_job_ids()


@pytest.fixture
def operator(client, db):
    """A staff user who may see, retry, cancel and delete jobs."""
    client.force_login(staff_user("view_job", "retry_job", "cancel_job", "delete_job"))
    return client


@pytest.fixture
def viewer(client, db):
    """A staff user who may only see jobs."""
    client.force_login(staff_user("view_job", username="viewer"))
    return client


# The change list ---------------------------------------------------------------------------------


def test_change_list_shows_the_columns(viewer):
    make(Status.FAILED, function="tests.jobs.boom")
    make(Status.STARTED, progress=40, started_at=timezone.now())
    now = timezone.now()
    make(Status.FINISHED, started_at=now - timedelta(seconds=3), finished_at=now, progress=100)
    page = viewer.get(LIST).content.decode()
    assert "tests.jobs.boom" in page
    assert "jobs-status-failed" in page
    assert "jobs-status-finished" in page
    assert 'class="jobs-progress" title="40%"' in page
    assert "3.0 s" in page
    assert "1/1" in page


def test_filters_by_status_queue_function_and_date(viewer):
    make(Status.FAILED, queue="high", function="tests.jobs.boom")
    make(Status.FINISHED, queue="default", function="tests.jobs.add")
    old = make(Status.FAILED, queue="default", function="tests.jobs.add")
    Job.objects.filter(pk=old.pk).update(enqueued_at=timezone.now() - timedelta(days=30))

    def count(**params):
        return viewer.get(LIST, params).context["cl"].result_count

    assert count() == 3
    assert count(status__exact="failed") == 2
    assert count(queue__exact="high") == 1
    assert count(function="tests.jobs.add") == 2
    assert count(status__exact="failed", function="tests.jobs.add") == 1
    today = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    assert count(enqueued_at__gte=today.isoformat()) == 2
    page = viewer.get(LIST).content.decode()
    assert "?function=tests.jobs.boom" in page  # the function filter lists the functions that have jobs


def test_search_by_id_function_arguments_and_error_text(viewer):
    target = make(Status.FAILED, function="tests.jobs.boom", args=["invoice-4711"], error_message="Disk full")
    make(Status.FAILED, function="tests.jobs.add", kwargs={"customer": "acme"}, error_class="app.QuotaError")

    def found(term):
        return [str(job.pk) for job in viewer.get(LIST, {"q": term}).context["cl"].result_list]

    assert found(str(target.pk)) == [str(target.pk)]
    assert found("boom") == [str(target.pk)]
    assert found("invoice-4711") == [str(target.pk)]
    assert found("disk full") == [str(target.pk)]
    assert len(found("acme")) == 1
    assert len(found("QuotaError")) == 1
    assert found("not-a-uuid-and-nothing-else") == []


def _list_queries(client):
    with CaptureQueriesContext(connection) as captured:
        response = client.get(LIST, {"status__exact": "failed"})
        assert response.status_code == 200
    return len(captured)


def test_change_list_queries_do_not_grow_with_the_rows(viewer):
    make(Status.FAILED)
    few = _list_queries(viewer)
    for index in range(60):
        make(Status.FAILED, function=f"tests.jobs.f{index % 7}", queue=["default", "high"][index % 2])
    assert _list_queries(viewer) == few
    # Session, user, permissions (2), the queue and function filters' choices, COUNT, the page of rows.
    assert few <= 8


# The change page ---------------------------------------------------------------------------------


def test_change_page_is_read_only_and_escapes_what_the_job_wrote(viewer):
    job = make(Status.FAILED, traceback="Traceback\n  <script>alert(1)</script>", error_message="<b>bad</b>")
    FailedAttempt.objects.create(job=job, number=1, error_class="X", traceback="first <img src=x>")
    FailedAttempt.objects.create(job=job, number=2, error_class="Y", traceback="second <img src=x>")
    page = viewer.get(change_url(job)).content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>alert(1)" not in page
    assert "first &lt;img src=x&gt;" in page and "second &lt;img src=x&gt;" in page
    assert "<img src=x>" not in page
    assert 'name="_save"' not in page
    assert viewer.post(change_url(job), {"status": "finished"}).status_code == 403
    job.refresh_from_db()
    assert job.status == Status.FAILED


def test_nobody_adds_or_edits_jobs_even_a_superuser(admin_client):
    job = make(Status.FAILED)
    assert admin_client.get(f"{LIST}add/").status_code == 403
    page = admin_client.get(change_url(job)).content.decode()
    assert 'name="_save"' not in page
    assert "jobs-retry-button" in page


def test_retry_button_only_for_a_failed_job_and_with_the_permission(client, db):
    failed, finished = make(Status.FAILED), make(Status.FINISHED)
    client.force_login(staff_user("view_job", "retry_job"))
    assert "jobs-retry-button" in client.get(change_url(failed)).content.decode()
    assert "jobs-retry-button" not in client.get(change_url(finished)).content.decode()
    client.force_login(staff_user("view_job", username="viewer"))
    page = client.get(change_url(failed)).content.decode()
    assert "jobs-retry-button" not in page
    assert "retry_selected" not in client.get(LIST).content.decode()
    assert "jobs-retry-matching" not in client.get(LIST).content.decode()


# Retry -------------------------------------------------------------------------------------------


def test_retry_button_requeues_the_job_logs_it_and_returns_to_the_filtered_list(operator):
    job = make(Status.FAILED, traceback="tb")
    filters = urlencode({"status__exact": "failed", "queue__exact": "default"})
    response = operator.post(
        f"{LIST}{job.pk}/retry/?{urlencode({'_changelist_filters': filters})}", follow=False
    )
    assert response.status_code == 302
    assert response["Location"] == f"{LIST}?{filters}"
    assert messages_of(response) == ["Retried 1 job."]
    job.refresh_from_db()
    assert job.status == Status.QUEUED
    assert job.retried_by.username == "staff"
    assert job.retried_at is not None
    assert (job.error_class, job.traceback) == ("", "")
    assert queued_ids() == [str(job.pk)]
    [entry] = LogEntry.objects.filter(object_id=str(job.pk))
    assert (entry.action_flag, entry.user.username, entry.change_message) == (CHANGE, "staff", "Retried.")
    page = operator.get(change_url(job)).content.decode()
    assert "Retried." in page and "jobs-admin-history" in page


def test_retry_is_post_only_and_checks_csrf(db):
    job = make(Status.FAILED)
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff_user("view_job", "retry_job"))
    assert client.get(f"{LIST}{job.pk}/retry/").status_code == 405
    assert client.post(f"{LIST}{job.pk}/retry/").status_code == 403  # no CSRF token
    job.refresh_from_db()
    assert job.status == Status.FAILED
    assert queued_ids() == []


def test_retry_without_the_permission_is_forbidden(viewer):
    job = make(Status.FAILED)
    assert viewer.post(f"{LIST}{job.pk}/retry/").status_code == 403
    response = viewer.post(LIST, {"action": "retry_selected", "_selected_action": [job.pk]})
    assert response.status_code in (200, 302)
    job.refresh_from_db()
    assert job.status == Status.FAILED
    assert queued_ids() == []
    assert not LogEntry.objects.exists()


def test_retrying_a_job_that_is_not_failed_is_refused(operator):
    for status in (Status.QUEUED, Status.STARTED, Status.FINISHED, Status.CANCELLED):
        job = make(status)
        response = operator.post(f"{LIST}{job.pk}/retry/")
        assert response.status_code == 302
        assert messages_of(response) == ["1 job was not retried: only failed jobs can be."]
        job.refresh_from_db()
        assert job.status == status
    assert queued_ids() == []
    assert not LogEntry.objects.exists()


def test_retry_or_cancel_of_a_job_deleted_meanwhile_says_so_as_django_does(operator):
    """The job's page was shown, then the job was deleted (by another person, say): Django's own buttons
    answer with a message rather than a bare 404 page."""
    for key in ["00000000-0000-0000-0000-000000000000", "not-a-uuid"]:
        for action in ["retry", "cancel"]:
            response = operator.post(f"{LIST}{key}/{action}/?_changelist_filters=status%3Dfailed")
            assert response.status_code == 302
            assert response["Location"] == f"{LIST}?status=failed"
            said = f"job with ID “{key}” doesn’t exist. Perhaps it was deleted?"  # noqa: RUF001
            assert messages_of(response) == [said]
    assert queued_ids() == []


def test_a_double_submit_retries_once(operator):
    job = make(Status.FAILED)
    operator.post(f"{LIST}{job.pk}/retry/")
    second = operator.post(f"{LIST}{job.pk}/retry/")
    assert messages_of(second) == ["Retried 1 job.", "1 job was not retried: only failed jobs can be."]
    assert queued_ids() == [str(job.pk)]
    assert LogEntry.objects.filter(object_id=str(job.pk)).count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_retries_of_the_same_jobs_change_each_row_once():
    from jobs.admin import operations

    records = [make(Status.FAILED) for _ in range(20)]
    barrier = threading.Barrier(4)
    outcomes = []

    def retry_all():
        try:
            barrier.wait(timeout=30)
            outcomes.append(operations.retry(Job.objects.filter(pk__in=[r.pk for r in records])))
        finally:
            db_connections.close_all()

    threads = [threading.Thread(target=retry_all) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(outcomes) == 4
    assert sum(len(outcome.changed) for outcome in outcomes) == 20
    assert sum(outcome.refused for outcome in outcomes) == 60
    assert sorted(queued_ids()) == sorted(str(r.pk) for r in records)


def test_bulk_retry_retries_the_failed_ones_and_refuses_the_others(operator):
    failed = [make(Status.FAILED, queue=q) for q in ("default", "default", "high")]
    finished = make(Status.FINISHED)
    selected = [job.pk for job in [*failed, finished]]
    response = operator.post(
        f"{LIST}?q=tests.jobs&o=1",
        {"action": "retry_selected", "_selected_action": selected, "index": 0},
    )
    assert response.status_code == 302
    assert response["Location"] == f"{LIST}?q=tests.jobs&o=1"
    assert messages_of(response) == ["Retried 3 jobs.", "1 job was not retried: only failed jobs can be."]
    assert sorted(queued_ids()) == sorted(str(job.pk) for job in failed[:2])
    assert queued_ids("high") == [str(failed[2].pk)]
    assert Job.objects.filter(status=Status.QUEUED).count() == 3
    assert LogEntry.objects.filter(action_flag=CHANGE).count() == 3
    finished.refresh_from_db()
    assert finished.status == Status.FINISHED


def test_retry_all_matching_the_filter_asks_first_with_the_count(operator):
    targets = [make(Status.FAILED, queue="high", function="tests.jobs.boom") for _ in range(3)]
    other_queue = make(Status.FAILED, queue="default", function="tests.jobs.boom")
    make(Status.FINISHED, queue="high", function="tests.jobs.boom")
    listing = operator.get(LIST, {"queue__exact": "high", "p": "0"}).content.decode()
    assert "retry-failed/?queue__exact=high" in listing

    url = f"{LIST}retry-failed/?queue__exact=high&q=boom"
    confirmation = operator.get(url)
    assert confirmation.status_code == 200
    assert "3 failed jobs match the current filter" in confirmation.content.decode()
    assert Job.objects.filter(status=Status.QUEUED).count() == 0  # nothing happens on GET

    response = operator.post(url)
    assert response.status_code == 302
    assert response["Location"] == f"{LIST}?queue__exact=high&q=boom"
    assert messages_of(response) == ["Retried 3 jobs."]
    assert sorted(queued_ids("high")) == sorted(str(job.pk) for job in targets)
    other_queue.refresh_from_db()
    assert other_queue.status == Status.FAILED
    again = operator.get(url).content.decode()
    assert "No failed job matches the current filter." in again


def test_retry_all_matching_needs_the_permission_and_valid_filters(viewer, operator, client):
    make(Status.FAILED)
    client.force_login(User.objects.get(username="viewer"))
    assert client.get(f"{LIST}retry-failed/").status_code == 403
    assert client.post(f"{LIST}retry-failed/").status_code == 403
    client.force_login(User.objects.get(username="staff"))
    response = client.get(f"{LIST}retry-failed/?no_such_field__exact=1")
    assert response.status_code == 302
    assert Job.objects.get().status == Status.FAILED


@pytest.mark.parametrize("param", ["status__exact", "queue__exact", "function", "q", "enqueued_at__gte"])
def test_a_nul_character_in_a_filter_or_the_search_is_refused_not_a_500(operator, param):
    # PostgreSQL refuses NUL in text: Django's own filters would send it and fail with a DataError.
    make(Status.FAILED)
    assert operator.get(LIST, {param: "a\x00b"}).status_code == 302  # Django's "invalid lookup" answer
    assert operator.get(f"{LIST}retry-failed/", {param: "a\x00b"}).status_code == 302
    response = operator.post(f"{LIST}retry-failed/?{param}=a%00b")
    assert response.status_code == 302
    assert Job.objects.get().status == Status.FAILED


def test_a_search_of_many_words_searches_the_first_ones_and_says_so(operator):
    make(Status.FAILED, function="tests.jobs.boom")
    words = " ".join(["tests.jobs.boom", *(f"w{n}" for n in range(3000))])
    response = operator.get(LIST, {"q": words})
    assert response.status_code == 200
    assert "only its first 20 were searched" in response.content.decode()
    assert response.context["cl"].result_count == 0  # every word must match, as in Django's search
    assert operator.get(LIST, {"q": "tests.jobs.boom"}).context["cl"].result_count == 1
    assert operator.get(f"{LIST}retry-failed/", {"q": words}).status_code == 200


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_a_retried_job_runs_again_through_a_real_worker_and_keeps_its_history(client):
    client.force_login(staff_user("view_job", "retry_job"))
    job = jobs.fails_on_first_attempt.enqueue("report")
    drain()
    job.refresh_from_db()
    assert job.status == Status.FAILED
    failed_registry = jobs_connection.get_queue("default").failed_job_registry
    assert str(job.pk) in failed_registry.get_job_ids()

    client.post(f"{LIST}{job.pk}/retry/")
    client.post(f"{LIST}{job.pk}/retry/")  # a double submit
    assert queued_ids() == [str(job.pk)]
    assert str(job.pk) not in failed_registry.get_job_ids()  # RQ's old failed job does not linger
    drain()
    job.refresh_from_db()
    assert job.status == Status.FINISHED
    assert job.result == "report"
    assert job.attempts == 2  # ran once more, not twice
    assert [a.number for a in job.failed_attempts.all()] == [1]
    assert job.failed_attempts.get().error_message == "first attempt of report fails"
    assert str(job.pk) not in failed_registry.get_job_ids()
    page = client.get(change_url(job)).content.decode()
    assert "first attempt of report fails" in page


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_a_job_that_fails_again_after_a_retry_is_failed_with_both_attempts():
    job = jobs.boom.enqueue("again")
    drain()
    from jobs.admin import operations

    operations.retry(Job.objects.filter(pk=job.pk))
    drain()
    job.refresh_from_db()
    assert job.status == Status.FAILED
    assert [a.number for a in job.failed_attempts.all()] == [1, 2]
    failed_registry = jobs_connection.get_queue("default").failed_job_registry
    assert failed_registry.get_job_ids() == [str(job.pk)]


def test_retry_while_redis_is_down_leaves_the_job_for_the_relay(operator, redis_server):
    job = make(Status.FAILED)
    redis_server.stop()
    response = operator.post(f"{LIST}{job.pk}/retry/")
    assert messages_of(response) == [
        "Retried 1 job.",
        "Redis did not answer: 1 job will be pushed when it does.",
    ]
    job.refresh_from_db()
    assert job.status == Status.QUEUED
    assert job.undispatched_since is not None


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_a_retry_that_redis_missed_is_relayed_without_leaving_rqs_old_failed_job():
    job = jobs.fails_on_first_attempt.enqueue("late")
    drain()
    failed_registry = jobs_connection.get_queue("default").failed_job_registry
    assert str(job.pk) in failed_registry.get_job_ids()
    # What a retry leaves when Redis does not answer (a network blip, its data kept): the record queued
    # for the relay, and RQ's old failed job still in place.
    Job.objects.filter(pk=job.pk).update(status=Status.QUEUED, undispatched_since=timezone.now())

    assert relay() == 1
    assert queued_ids() == [str(job.pk)]
    assert str(job.pk) not in failed_registry.get_job_ids()
    drain()
    job.refresh_from_db()
    assert (job.status, job.result, job.attempts) == (Status.FINISHED, "late", 2)
    assert str(job.pk) not in failed_registry.get_job_ids()


# Cancel ------------------------------------------------------------------------------------------


def test_cancel_waiting_jobs_and_refuse_the_others(operator):
    waiting = [make(Status.QUEUED), make(Status.SCHEDULED), make(Status.RETRYING)]
    push(waiting[:1])
    started = make(Status.STARTED)
    response = operator.post(
        f"{LIST}?queue__exact=default",
        {"action": "cancel_selected", "_selected_action": [j.pk for j in [*waiting, started]]},
    )
    assert response["Location"] == f"{LIST}?queue__exact=default"
    assert messages_of(response) == [
        "Cancelled 3 jobs.",
        "1 job was not cancelled: only queued, scheduled, retrying or deferred jobs can be.",
    ]
    assert Job.objects.filter(status=Status.CANCELLED).count() == 3
    started.refresh_from_db()
    assert started.status == Status.STARTED
    assert queued_ids() == []
    canceled = CanceledJobRegistry("default", connection=jobs_connection.get_connection("default"))
    assert canceled.get_job_ids() == [str(waiting[0].pk)]
    assert LogEntry.objects.filter(change_message="Cancelled.").count() == 3


def test_cancel_button_and_its_permission(client, db):
    job = make(Status.QUEUED)
    client.force_login(staff_user("view_job", "retry_job"))
    assert "jobs-cancel-button" not in client.get(change_url(job)).content.decode()
    assert client.post(f"{LIST}{job.pk}/cancel/").status_code == 403
    job.refresh_from_db()
    assert job.status == Status.QUEUED
    client.force_login(staff_user("view_job", "cancel_job", username="canceller"))
    assert "jobs-cancel-button" in client.get(change_url(job)).content.decode()
    response = client.post(f"{LIST}{job.pk}/cancel/")
    assert messages_of(response) == ["Cancelled 1 job."]
    job.refresh_from_db()
    assert job.status == Status.CANCELLED


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_a_cancelled_job_never_runs(tmp_path):
    marker = tmp_path / "ran"
    job = jobs.touch.enqueue(str(marker))
    from jobs.admin import operations

    operations.cancel(Job.objects.filter(pk=job.pk))
    drain()
    job.refresh_from_db()
    assert job.status == Status.CANCELLED
    assert not marker.exists()


# Delete ------------------------------------------------------------------------------------------


def test_delete_needs_the_permission_is_logged_and_removes_the_rq_job(client, db):
    job = make(Status.QUEUED)
    push([job])
    client.force_login(staff_user("view_job", "retry_job", username="viewer"))
    assert "delete_selected" not in client.get(LIST).content.decode()
    client.post(LIST, {"action": "delete_selected", "_selected_action": [job.pk], "post": "yes"})
    assert Job.objects.filter(pk=job.pk).exists()

    client.force_login(staff_user("view_job", "delete_job"))
    response = client.post(
        f"{LIST}?status__exact=queued",
        {"action": "delete_selected", "_selected_action": [job.pk], "post": "yes"},
    )
    assert response.status_code == 302
    assert response["Location"] == f"{LIST}?status__exact=queued"
    assert not Job.objects.filter(pk=job.pk).exists()
    assert LogEntry.objects.get(object_id=str(job.pk)).action_flag == DELETION
    assert queued_ids() == []
    connection_ = jobs_connection.get_connection("default")
    assert RQJob.fetch_many([str(job.pk)], connection=connection_, serializer=JSONSerializer) == [None]
