"""Jobs run through the worker classes, forking and not, and their records tell the story; the forking
worker, the scheduler and a job watched while it runs use real `manage.py rqworker` processes."""

import datetime
import decimal
import uuid

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.utils import timezone

from jobs.models import Job, Status
from jobs.transport import connection as jobs_connection
from jobs.transport.queues import push
from tests import jobs
from tests.helpers import WorkerProcess, drain, run_worker, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

WORKER_CLASSES = ["jobs.worker.Worker", "jobs.worker.SimpleWorker"]


@pytest.fixture(params=WORKER_CLASSES, ids=["forking", "simple"])
def worker_class(request):
    return request.param


def test_job_goes_queued_started_finished(worker_class):
    record = jobs.add.enqueue(2, 3)
    assert record.status == Status.QUEUED
    drain(worker_class)
    record.refresh_from_db()
    assert record.status == Status.FINISHED
    assert record.result == 5
    assert record.attempts == 1
    assert record.progress == 100
    assert record.worker_name
    assert record.enqueued_at <= record.started_at <= record.finished_at
    assert record.error_class == ""


def test_failure_is_recorded_with_class_message_and_traceback(worker_class):
    record = jobs.boom.enqueue("kaput")
    drain(worker_class)
    record.refresh_from_db()
    assert record.status == Status.FAILED
    assert record.error_class == "builtins.ValueError"
    assert record.error_message == "kaput"
    assert "raise ValueError(message)" in record.traceback
    assert record.finished_at is not None
    [attempt] = record.failed_attempts.all()
    assert (attempt.number, attempt.error_message) == (1, "kaput")
    failed_registry = jobs_connection.get_queue("default").failed_job_registry
    assert str(record.pk) in failed_registry.get_job_ids()


def test_automatic_retries_until_success(worker_class):
    record = jobs.fails_then_succeeds.enqueue(2)
    drain(worker_class)
    record.refresh_from_db()
    assert record.status == Status.FINISHED
    assert record.result == 3
    assert record.attempts == 3
    assert [a.error_message for a in record.failed_attempts.all()] == ["failure 1", "failure 2"]


def test_retries_spent_leave_the_job_failed():
    record = jobs.fails_then_succeeds.enqueue(5)
    drain()
    record.refresh_from_db()
    assert record.status == Status.FAILED
    assert record.attempts == 3
    assert record.failed_attempts.count() == 3


def test_rich_arguments_reach_the_function_intact():
    user = User.objects.create(username="grace")
    record = jobs.echo_types.enqueue(
        timezone.now(), datetime.date(2026, 1, 2), decimal.Decimal("1.5"), uuid.uuid4(), user=user
    )
    greeting = jobs.greet_user.enqueue(user)
    drain()
    record.refresh_from_db()
    assert record.status == Status.FINISHED, record.traceback
    assert record.result == {"args": ["datetime", "date", "Decimal", "UUID"], "kwargs": {"user": "User"}}
    greeting.refresh_from_db()
    assert greeting.result == "hello grace"


def _push_record_for(function):
    record = Job.objects.create(function=function, queue="default")
    push([record])
    return record


@pytest.mark.parametrize(
    "function", ["tests.jobs.not_a_job", "tests.nowhere.fn", "os.system", "builtins.eval", "tests.jobs"]
)
def test_only_registered_functions_run(function):
    record = _push_record_for(function)
    drain()
    record.refresh_from_db()
    assert record.status == Status.FAILED
    assert record.error_class == "jobs.exceptions.JobNotRegistered"
    assert "is not a registered job" in record.error_message


def test_unregistered_function_fails_without_retrying():
    record = Job.objects.create(function="tests.jobs.not_a_job", queue="default", max_attempts=3)
    push([record])
    drain()
    record.refresh_from_db()
    assert (record.status, record.attempts) == (Status.FAILED, 1)


def test_deleted_model_argument_fails_clearly():
    user = User.objects.create(username="gone")
    record = jobs.greet_user.enqueue(user)
    user.delete()
    drain()
    record.refresh_from_db()
    assert record.status == Status.FAILED
    assert record.error_class == "jobs.exceptions.ArgumentUnavailable"


def test_timeout_is_recorded(worker_class):
    record = jobs.too_slow.enqueue()
    drain(worker_class)
    record.refresh_from_db()
    assert record.status == Status.FAILED
    assert "JobTimeoutException" in record.error_class


def test_record_pushed_twice_runs_once():
    record = jobs.add.enqueue(1, 1)
    push([record])  # a second copy of the same job in Redis
    drain("jobs.worker.SimpleWorker")
    record.refresh_from_db()
    assert (record.status, record.attempts) == (Status.FINISHED, 1)


def test_cancelled_record_is_skipped_by_the_worker():
    record = jobs.add.enqueue(1, 1)
    Job.objects.filter(pk=record.pk).update(status=Status.CANCELLED)
    drain()
    record.refresh_from_db()
    assert (record.status, record.attempts, record.started_at) == (Status.CANCELLED, 0, None)


def test_progress_is_readable_while_the_job_runs():
    record = jobs.progress_steps.enqueue(5, 0.4)
    seen = set()
    with WorkerProcess("--worker-class", "jobs.worker.SimpleWorker", queues=("default",)):

        def observe():
            current = Job.objects.get(pk=record.pk)
            if current.status == Status.STARTED:
                seen.add(current.progress)
            return current.status == Status.FINISHED

        wait_for(observe, timeout=60, interval=0.02, message="the job to finish")
    assert any(0 < p < 100 for p in seen), seen
    record.refresh_from_db()
    assert (record.progress, record.progress_message) == (100, "step 5")


def test_scheduled_job_waits_for_its_time():
    record = jobs.add.using(delay=datetime.timedelta(seconds=2)).enqueue(4, 4)
    assert record.status == Status.SCHEDULED
    with WorkerProcess("--with-scheduler", queues=("default",)):
        finished = wait_for(
            lambda: Job.objects.filter(pk=record.pk, status=Status.FINISHED).first(), timeout=60
        )
    assert finished.started_at >= record.scheduled_for
    assert finished.result == 8


def test_worker_runs_the_relay_for_records_redis_missed(redis_server):
    redis_server.stop()
    record = jobs.add.enqueue(3, 4)
    assert Job.objects.get(pk=record.pk).undispatched_since is not None
    redis_server.start()
    drain()
    record.refresh_from_db()
    assert (record.status, record.result, record.undispatched_since) == (Status.FINISHED, 7, None)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="counts PostgreSQL backends")
def test_forking_worker_shares_no_database_connection_with_its_horse():
    # With persistent connections the worker's parent keeps the one its relay opened; a horse that
    # inherited it would talk over the parent's socket. Each horse must open a connection of its own.
    records = [jobs.database_backend_pid.enqueue() for _ in range(3)]
    run_worker("--worker-class", "jobs.worker.Worker", CONN_MAX_AGE="600")
    pids = []
    for record in records:
        record.refresh_from_db()
        assert record.status == Status.FINISHED, record.traceback
        pids.append(record.result)
    assert len(set(pids)) == 3, pids


@pytest.mark.skipif(connection.vendor != "postgresql", reason="reads PostgreSQL backend ids")
def test_simple_worker_closes_connections_between_jobs_as_django_does_between_requests():
    records = [jobs.database_backend_pid.enqueue() for _ in range(3)]
    run_worker("--worker-class", "jobs.worker.SimpleWorker", CONN_MAX_AGE="0")
    pids = [Job.objects.get(pk=record.pk).result for record in records]
    assert None not in pids
    assert len(set(pids)) == 3, pids


@pytest.mark.parametrize("step", ["claim", "finish"])
def test_a_timeout_that_strikes_in_the_claim_or_the_finish_is_recorded(step, monkeypatch):
    """RQ's alarm for a job's timeout raises wherever the run is: in the claim after the database wrote it,
    or in the finish before it did, the record still ends failed with the timeout, not left started."""
    from rq.timeouts import JobTimeoutException

    from jobs import statements

    written = getattr(statements, step)

    def interrupted(*args, **kwargs):
        if step == "claim":
            written(*args, **kwargs)  # the database has it, then the alarm strikes
        raise JobTimeoutException("Task exceeded maximum timeout value (1 seconds)")

    monkeypatch.setattr(statements, step, interrupted)
    record = jobs.add.enqueue(1, 2)
    drain()
    record.refresh_from_db()
    assert (record.status, record.attempts) == (Status.FAILED, 1)
    assert record.error_class == "rq.timeouts.JobTimeoutException"
