"""The lean worker (``manage.py rqworker --worker-class jobs.worker.LeanWorker``): the ledger's story is
the same as with RQ's workers, and RQ and django-rq still read its queues right."""

import datetime
import os
import time

import pytest
from django.contrib.auth.models import User
from rq import Worker as RQWorker
from rq.job import Job as RQJob
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer
from rq.suspension import resume, suspend

from jobs import job
from jobs.models import Job, Status
from jobs.transport import connection as jobs_connection
from jobs.transport.queues import push
from jobs.worker import LeanWorker
from tests import jobs
from tests.helpers import WorkerProcess, drain, run_worker, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

LEAN_WORKER = "jobs.worker.LeanWorker"
LEAN = ("--worker-class", LEAN_WORKER)


@job
def wait_for_file(path):
    """Runs until the test creates ``path``, so that the test can look at a running job."""
    deadline = time.monotonic() + 60
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(path)
        time.sleep(0.02)
    return "released"


def _queue():
    return jobs_connection.get_queue("default")


def _rq_keys_of(redis, record):
    return sorted(key.decode() for key in redis.scan_iter(f"*{record.pk}*"))


def test_jobs_finish_and_rq_keeps_nothing_of_them(redis):
    records = [jobs.add.enqueue(n, n) for n in range(5)]
    drain(LEAN_WORKER, queues=("default",), name="lean-1")
    for n, record in enumerate(records):
        record.refresh_from_db()
        assert (record.status, record.result, record.attempts) == (Status.FINISHED, 2 * n, 1)
        assert record.worker_name == "lean-1"
        assert record.enqueued_at <= record.started_at <= record.finished_at
        assert _rq_keys_of(redis, record) == []  # job hash, execution, registries: all gone
    assert StartedJobRegistry("default", connection=redis).get_job_ids() == []
    assert redis.llen("rq:queue:default") == 0
    assert redis.llen("rq:queue:default:intermediate") == 0
    worker = redis.hgetall("rq:worker:lean-1")
    assert worker[b"successful_job_count"] == b"5"
    assert worker[b"death"]  # registered its death on leaving, as RQ's workers do


def test_a_running_job_shows_in_rq_and_in_django_rq(redis, client, tmp_path):
    admin = User.objects.create_superuser("admin", "admin@example.com", "pw")
    client.force_login(admin)
    release = tmp_path / "release"
    record = wait_for_file.enqueue(str(release))
    with WorkerProcess(*LEAN, "--name", "lean-busy", queues=("default",)):
        registry = StartedJobRegistry("default", connection=redis)
        wait_for(lambda: str(record.pk) in registry.get_job_ids(), message="the job in the started registry")
        # RQ's start is written just before the job's function claims its record.
        wait_for(lambda: Job.objects.filter(pk=record.pk, status=Status.STARTED).exists())
        rq_job = RQJob.fetch(str(record.pk), connection=redis, serializer=JSONSerializer)
        assert (rq_job.get_status(), rq_job.worker_name) == ("started", "lean-busy")
        [worker] = RQWorker.all(connection=redis)
        assert (worker.name, worker.get_state(), worker.get_current_job_id()) == (
            "lean-busy",
            "busy",
            str(record.pk),
        )
        started_page = client.get("/django-rq/queues/0/started/")
        assert started_page.status_code == 200
        assert str(record.pk) in started_page.content.decode()
        workers_page = client.get("/django-rq/workers/0/")
        assert "lean-busy" in workers_page.content.decode()

        release.touch()
        wait_for(lambda: Job.objects.filter(pk=record.pk, status=Status.FINISHED).exists())
        wait_for(lambda: RQWorker.find_by_key("rq:worker:lean-busy", connection=redis).get_state() == "idle")
        worker = RQWorker.find_by_key("rq:worker:lean-busy", connection=redis)
        assert worker.get_current_job_id() is None
        assert registry.get_job_ids() == []
    assert Job.objects.get(pk=record.pk).result == "released"


def test_failure_is_recorded_in_the_ledger_and_in_rqs_failed_registry(redis, client):
    record = jobs.boom.enqueue("kaput")
    drain(LEAN_WORKER, queues=("default",), name="lean-2")
    record.refresh_from_db()
    assert (record.status, record.error_class, record.error_message) == (
        Status.FAILED,
        "builtins.ValueError",
        "kaput",
    )
    assert "raise ValueError(message)" in record.traceback
    assert str(record.pk) in _queue().failed_job_registry.get_job_ids()
    rq_job = RQJob.fetch(str(record.pk), connection=redis, serializer=JSONSerializer)
    assert rq_job.get_status() == "failed"
    assert "ValueError: kaput" in rq_job.latest_result().exc_string
    assert StartedJobRegistry("default", connection=redis).get_job_ids() == []
    assert redis.hget("rq:worker:lean-2", "failed_job_count") == b"1"

    admin = User.objects.create_superuser("admin", "admin@example.com", "pw")
    client.force_login(admin)
    assert str(record.pk) in client.get("/django-rq/queues/0/failed/").content.decode()


def test_retries_run_until_success():
    record = jobs.fails_then_succeeds.enqueue(2)
    drain(LEAN_WORKER, queues=("default",))
    record.refresh_from_db()
    assert (record.status, record.result, record.attempts) == (Status.FINISHED, 3, 3)
    assert [a.error_message for a in record.failed_attempts.all()] == ["failure 1", "failure 2"]


def test_retries_spent_leave_the_job_failed_in_both_places():
    record = jobs.fails_then_succeeds.enqueue(5)
    drain(LEAN_WORKER, queues=("default",))
    record.refresh_from_db()
    assert (record.status, record.attempts) == (Status.FAILED, 3)
    assert str(record.pk) in _queue().failed_job_registry.get_job_ids()


def test_scheduled_job_runs_at_its_time_with_the_scheduler():
    record = jobs.add.using(delay=datetime.timedelta(seconds=2)).enqueue(4, 4)
    assert record.status == Status.SCHEDULED
    assert str(record.pk) in _queue().scheduled_job_registry.get_job_ids()
    with WorkerProcess(*LEAN, "--with-scheduler", queues=("default",)):
        finished = wait_for(
            lambda: Job.objects.filter(pk=record.pk, status=Status.FINISHED).first(), timeout=60
        )
    assert finished.started_at >= record.scheduled_for
    assert finished.result == 8


def test_unregistered_function_fails_for_good():
    record = Job.objects.create(function="tests.jobs.not_a_job", queue="default", max_attempts=3)
    push([record])
    drain(LEAN_WORKER, queues=("default",))
    record.refresh_from_db()
    assert (record.status, record.attempts, record.error_class) == (
        Status.FAILED,
        1,
        "jobs.exceptions.JobNotRegistered",
    )
    assert str(record.pk) in _queue().failed_job_registry.get_job_ids()


def test_cancelled_record_is_skipped_and_cleared_from_redis(redis):
    record = jobs.add.enqueue(1, 1)
    Job.objects.filter(pk=record.pk).update(status=Status.CANCELLED)
    drain(LEAN_WORKER, queues=("default",))
    record.refresh_from_db()
    assert (record.status, record.attempts, record.started_at) == (Status.CANCELLED, 0, None)
    assert _rq_keys_of(redis, record) == []


def test_other_rq_jobs_on_the_queue_keep_rqs_own_path(redis):
    # Not pushed by `jobs`: RQ keeps its result for its result_ttl, as RQ's own workers do.
    rq_job = _queue().enqueue("tests.jobs.not_a_job", result_ttl=600)
    record = jobs.add.enqueue(2, 2)
    drain(LEAN_WORKER, queues=("default",))
    rq_job = RQJob.fetch(rq_job.id, connection=redis, serializer=JSONSerializer)
    assert rq_job.get_status() == "finished"
    assert rq_job.return_value() == "should never run"
    assert rq_job.id in _queue().finished_job_registry.get_job_ids()
    record.refresh_from_db()
    assert (record.status, record.result) == (Status.FINISHED, 4)


def test_a_suspended_burst_worker_runs_nothing(redis):
    record = jobs.add.enqueue(1, 2)
    suspend(redis)
    try:
        output = run_worker(*LEAN, queues=("default",))
    finally:
        resume(redis)
    assert "suspended" in output
    record.refresh_from_db()
    assert record.status == Status.QUEUED
    assert redis.llen("rq:queue:default") == 1


def test_takes_the_fast_path_only_for_jobs_that_rq_keeps_nothing_of(redis):
    worker = LeanWorker(["default"], connection=redis)
    record = jobs.add.enqueue(1, 2)
    ours = RQJob.fetch(str(record.pk), connection=redis, serializer=worker.serializer)
    assert worker.takes_fast_path(ours)
    ours.result_ttl = 60
    assert not worker.takes_fast_path(ours)
    foreign = _queue().enqueue("tests.jobs.not_a_job", result_ttl=0)
    assert not worker.takes_fast_path(foreign)


def test_sends_far_fewer_redis_commands_than_the_ledgers_rq_based_worker(redis):
    def commands_for(worker_class):
        for n in range(20):
            jobs.add.enqueue(n, 1)
        redis.config_resetstat()
        drain(worker_class, queues=("default",))
        stats = redis.info("commandstats")
        return sum(v["calls"] for k, v in stats.items() if k not in {"cmdstat_config|resetstat"})

    simple = commands_for("jobs.worker.SimpleWorker")
    lean = commands_for("jobs.worker.LeanWorker")
    assert lean < 0.6 * simple, (lean, simple)
    assert Job.objects.finished().count() == 40
