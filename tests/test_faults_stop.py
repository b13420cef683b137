"""Case 5 (graceful and cold stop) and case 6 (the database briefly unreachable from a worker)."""

import json
import os
import signal
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.db import OperationalError, connection
from rq.worker import Worker as RQWorker

from jobs import pause
from jobs.models import Status
from jobs.transport import connection as jobs_connection
from jobs.worker.base import LedgerWorkerMixin
from tests import fault_jobs, jobs
from tests.helpers import WorkerProcess, drain, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

WORKER_CLASSES = [
    "jobs.worker.Worker",
    "jobs.worker.SimpleWorker",
    "jobs.worker.LeanWorker",
    "jobs.worker.ThreadedWorker",
]
FAST = {"ABANDONED_AFTER": 4, "RELAY_GRACE": 1, "RECONCILE_INTERVAL": 1}


@pytest.fixture(params=WORKER_CLASSES, ids=["forking", "simple", "lean", "threaded"])
def worker_class(request):
    return request.param


def status_of(record):
    record.refresh_from_db()
    return record.status


def test_sigterm_finishes_the_current_job_and_takes_no_new_one(worker_class):
    current = fault_jobs.work_for.enqueue(3)
    # One job at a time, so that the threaded worker has no free thread for the next job either.
    one_at_a_time = json.dumps({"WORKER_CONCURRENCY": 1})
    worker = WorkerProcess("--worker-class", worker_class, queues=("default",), JOBS_TEST_JOBS=one_at_a_time)
    wait_for(lambda: status_of(current) == Status.STARTED, timeout=60, message="the job to start")
    later = jobs.add.enqueue(1, 2)
    worker.signal(signal.SIGTERM)
    assert worker.process.wait(timeout=60) == 0
    output = worker.stop()
    assert (status_of(current), current.attempts, current.result) == (Status.FINISHED, 1, 3), output
    assert status_of(later) == Status.QUEUED
    assert jobs_connection.get_queue("default").get_job_ids() == [str(later.pk)]


@pytest.mark.usefixtures("restore_signal_handlers")
@pytest.mark.parametrize("worker_class", ["jobs.worker.SimpleWorker", "jobs.worker.LeanWorker"])
def test_a_sigterm_once_a_job_is_dequeued_puts_the_job_back(monkeypatch, worker_class):
    """A worker of several queues pops its job with RQ's ``BLPOP``, which leaves it in no list until it
    starts. A SIGTERM that came between the dequeue and the start (RQ raises ``StopRequested`` wherever an
    idle worker is) dropped the job there: its record waited, in no queue, until the reconciler pushed it
    again, ``RELAY_GRACE`` later (seen in the rolling-restart test's probes: 2 and 4 stops in 30 of a lean
    and a simple worker draining short jobs). Now the job goes back to the front of its queue, and the
    worker stops."""
    records = [jobs.add.enqueue(n, n) for n in range(3)]
    held_back = LedgerWorkerMixin._held_back
    asked = []

    def stopped_once_dequeued(worker, job, queue):
        if not asked:  # the signal comes as the worker checks the job it dequeued
            asked.append(job.id)
            worker.request_stop(signal.SIGTERM, None)
        return held_back(worker, job, queue)

    monkeypatch.setattr(LedgerWorkerMixin, "_held_back", stopped_once_dequeued)
    drain(worker_class, queues=("high", "default"))
    assert asked
    assert [status_of(record) for record in records] == [Status.QUEUED] * 3
    assert jobs_connection.get_queue("default").get_job_ids() == [str(record.pk) for record in records]


def shutdown_requested_at():
    """When the worker took a SIGTERM, as it tells RQ (its hash's ``shutdown_requested_date``); None
    before."""
    for rq_worker in RQWorker.all(connection=jobs_connection.get_connection("default")):
        moment = rq_worker.shutdown_requested_date
        if moment is not None:
            return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return None


def test_a_second_signal_stops_at_once_and_the_job_is_handled_as_abandoned(worker_class, settings):
    settings.JOBS = {**settings.JOBS, **FAST}
    record = fault_jobs.hang_first_attempt.enqueue(120)
    worker = WorkerProcess(
        "--worker-class", worker_class, queues=("default",), JOBS_TEST_JOBS=json.dumps(FAST)
    )
    wait_for(lambda: status_of(record) == Status.STARTED, timeout=60, message="the job to start")
    worker.signal(signal.SIGTERM)
    first = wait_for(shutdown_requested_at, timeout=30, message="the worker to take the first signal")
    # RQ takes a second signal within one second of the first for a duplicate of it: the second is sent
    # once a second has passed since the worker took the first (which a loaded machine may take late).
    wait_for(lambda: datetime.now(UTC) - first > timedelta(seconds=1.1), timeout=10)
    worker.signal(signal.SIGTERM)
    worker.process.wait(timeout=60)
    worker.stop()
    # A non-forking worker records it on its way out; a forking one leaves it to the reaper.
    wait_for(
        lambda: call_command("jobs_reap") or status_of(record) in (Status.RETRYING, Status.QUEUED),
        timeout=60,
        message="the job to be reaped",
    )
    attempt = record.failed_attempts.get()
    assert attempt.error_class == "jobs.exceptions.JobAbandoned"
    drain(worker_class, queues=("default",))
    record.refresh_from_db()
    assert (record.status, record.attempts) == (Status.FINISHED, 2)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="terminates PostgreSQL backends")
@pytest.mark.parametrize("worker_class", ["jobs.worker.SimpleWorker", "jobs.worker.ThreadedWorker"])
def test_worker_whose_database_connections_are_killed_reconnects_and_loses_no_job(worker_class):
    tag = uuid.uuid4().hex
    # One job thread: the one whose connection is killed with the probe's records the next failure.
    env = {"CONN_MAX_AGE": "600", "JOBS_TEST_JOBS": json.dumps({**FAST, "WORKER_CONCURRENCY": 1})}
    with WorkerProcess("--worker-class", worker_class, queues=("default",), **env) as worker:
        # A maintenance tick closes the connections it used: the probe's may be gone by the time it is
        # looked for (seen under load), and then a new probe keeps one again.
        for _ in range(5):
            probe = jobs.database_backend_pid.enqueue()
            wait_for(lambda: status_of(probe) == Status.FINISHED, timeout=60)  # noqa: B023
            with connection.cursor() as cursor:
                # Every connection of the worker (the threaded worker's main, job and recorder threads
                # hold one each), the job's among them.
                cursor.execute(
                    "SELECT pg_terminate_backend(pid), pid FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
                if probe.result in [pid for _, pid in cursor.fetchall()]:
                    break
        else:
            pytest.fail("the job's kept connection was never there to kill")
        failing = jobs.boom.enqueue("after the kill")
        wait_for(lambda: status_of(failing) == Status.FAILED, timeout=90, message="the failure's record")
        record = fault_jobs.count_run.enqueue(tag)
        wait_for(lambda: status_of(record) == Status.FINISHED, timeout=90, message="the job to run")
        assert worker.process.poll() is None
    assert fault_jobs.runs_of(tag) == 1
    # Claimed and recorded once each, on new connections: not failed, held back or given up meanwhile.
    record.refresh_from_db()
    assert (record.attempts, record.failed_attempts.count()) == (1, 0)
    failing.refresh_from_db()
    assert (failing.attempts, failing.error_class, failing.error_message) == (
        1,
        "builtins.ValueError",
        "after the kill",
    )


@pytest.mark.skipif(connection.vendor != "sqlite", reason="moves the SQLite file away")
@pytest.mark.parametrize("worker_class", ["jobs.worker.SimpleWorker", "jobs.worker.ThreadedWorker"])
def test_worker_whose_sqlite_file_is_gone_for_a_while_loses_no_job(worker_class):
    tag = uuid.uuid4().hex
    path = connection.settings_dict["NAME"]
    with WorkerProcess(
        "--worker-class", worker_class, queues=("default",), JOBS_TEST_JOBS=json.dumps(FAST)
    ) as worker:
        pause.pause("default")
        record = fault_jobs.count_run.enqueue(tag)
        connection.close()
        os.replace(path, path + ".away")
        try:
            pause.resume("default")
            queue = jobs_connection.get_queue("default")
            # RQ's own path runs the claim inside the job: the run fails (the reconciler pushes it
            # again). The threaded worker claims before the run: the job is held back a few seconds.
            tried = (
                queue.failed_job_registry
                if worker_class.endswith("SimpleWorker")
                else queue.scheduled_job_registry
            )
            wait_for(lambda: str(record.pk) in tried.get_job_ids(), timeout=60, message="the claim to fail")
        finally:
            os.replace(path + ".away", path)
        wait_for(lambda: status_of(record) == Status.FINISHED, timeout=90, message="the job to run again")
        assert worker.process.poll() is None
    assert fault_jobs.runs_of(tag) == 1


@pytest.mark.usefixtures("restore_signal_handlers")
@pytest.mark.parametrize("worker_class", ["jobs.worker.SimpleWorker", "jobs.worker.LeanWorker"])
def test_a_claim_the_database_refused_costs_its_job_no_attempt(monkeypatch, settings, worker_class):
    """The claim fails on the database (both sends: it stays unreachable; seen in the database chaos
    test): the run fails in RQ and the record still waits, for the reconciler. RQ retried the run instead
    while the job had retries, and the retry counted as one of the record's attempts, which never ran:
    a job of three attempts failed for good after two."""
    from jobs import transitions

    record = jobs.key_error_until_attempt.enqueue(3)  # succeeds on its third attempt
    claim = transitions.claim
    refused = []

    def unreachable_once(*args, **kwargs):
        if not refused:
            refused.append(True)
            raise OperationalError("the database is unreachable")
        return claim(*args, **kwargs)

    monkeypatch.setattr(transitions, "claim", unreachable_once)
    drain(worker_class, queues=("default",))
    assert refused
    settings.JOBS = {**settings.JOBS, "RELAY_GRACE": 0}
    call_command("jobs_reconcile")
    drain(worker_class, queues=("default",))
    record.refresh_from_db()
    assert (record.status, record.attempts, record.failed_attempts.count()) == (Status.FINISHED, 3, 2)


@pytest.mark.usefixtures("restore_signal_handlers")
@pytest.mark.parametrize("worker_class", ["jobs.worker.LeanWorker", "jobs.worker.ThreadedWorker"])
def test_a_failure_the_database_refused_is_logged_with_the_jobs_error(monkeypatch, caplog, worker_class):
    """The record of a job's failure fails on the database: the record stays started, for the reaper,
    which later gives the attempt up as abandoned ("the worker ... died"), so the job's own error is on
    no record. The threaded worker said nothing of it (seen in the database chaos test, where the reaper
    then blamed a live worker); now every worker logs the job's error and why it was not recorded."""
    from jobs import transitions

    record = jobs.boom.enqueue("the job's own error")

    def unreachable(*args, **kwargs):
        raise OperationalError("the database is unreachable")

    monkeypatch.setattr(transitions, "fail_attempt", unreachable)
    drain(worker_class, queues=("default",))
    assert status_of(record) == Status.STARTED
    logged = [entry.getMessage() for entry in caplog.records if entry.name == "jobs"]
    assert any("the job's own error" in line and "the database is unreachable" in line for line in logged), (
        logged
    )
