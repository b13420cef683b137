"""Case 1: a worker killed mid-job (SIGKILL of the worker, of its work horse, of both).

Real `manage.py rqworker` processes and real signals. The victim listens on "default"; a second
worker, the rescuer, listens on "low" only, so it never takes the job itself: it only runs the
reaper in its maintenance, as any other live worker would.
"""

import json
import os
import signal
import time

import pytest
from django.test import override_settings
from redis.lock import Lock

from jobs.exceptions import JobAbandoned
from jobs.models import Status
from jobs.transport import connection as jobs_connection
from jobs.upkeep import reaper
from tests import fault_jobs
from tests.helpers import WorkerProcess, drain, hearing, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

WORKER_CLASSES = [
    "jobs.worker.Worker",
    "jobs.worker.SimpleWorker",
    "jobs.worker.LeanWorker",
    "jobs.worker.ThreadedWorker",
]
FAST = {"ABANDONED_AFTER": 4}
ABANDONED = f"{JobAbandoned.__module__}.{JobAbandoned.__qualname__}"


@pytest.fixture(params=WORKER_CLASSES, ids=["forking", "simple", "lean", "threaded"])
def worker_class(request):
    return request.param


@pytest.fixture(autouse=True)
def fast_detection():
    with override_settings(JOBS={"DEFAULT_QUEUE": "default", **FAST}):
        yield


def start_worker(worker_class, *queues, **jobs_settings):
    return WorkerProcess(
        "--worker-class",
        worker_class,
        queues=queues,
        JOBS_TEST_JOBS=json.dumps({**FAST, **jobs_settings}),
    )


def status_of(record):
    record.refresh_from_db()
    return record.status


def running_pid(record):
    """The pid of the process running the job (the job announces it), once it runs."""
    record.refresh_from_db()
    return (
        record.status == Status.STARTED and record.progress_message.isdigit() and int(record.progress_message)
    )


def kill_mid_job(worker_class, record, *, horse_only=False):
    """Start a victim worker, wait until it runs ``record``, SIGKILL it; returns when it was killed."""
    victim = start_worker(worker_class, "default")
    job_pid = wait_for(lambda: running_pid(record), timeout=60, message="the job to start")
    if not horse_only:
        os.kill(victim.pid, signal.SIGKILL)
    if job_pid != victim.pid:
        os.kill(job_pid, signal.SIGKILL)
    killed_at = time.monotonic()
    if not horse_only:
        victim.process.wait(timeout=10)
    return victim, killed_at


def test_killed_worker_job_is_retried_by_another_worker(worker_class):
    record = fault_jobs.hang_first_attempt.enqueue(120)
    with start_worker(worker_class, "low"):
        victim, killed_at = kill_mid_job(worker_class, record)
        wait_for(lambda: status_of(record) != Status.STARTED, timeout=60, message="the reaper")
        detected_after = time.monotonic() - killed_at
        queue = jobs_connection.get_queue("default")
        wait_for(lambda: str(record.pk) in queue.get_job_ids(), message="the retry to be pushed")
        victim.stop()
    print(f"{worker_class}: abandoned job detected {detected_after:.1f}s after SIGKILL")
    assert record.status == Status.RETRYING
    [attempt] = record.failed_attempts.all()
    assert attempt.number == 1
    assert attempt.error_class == ABANDONED
    assert "stopped sending heartbeats" in attempt.error_message
    assert record.worker_name in attempt.error_message
    # The retry is in Redis again, and runs to the end on a healthy worker.
    drain(worker_class, queues=("default",))
    record.refresh_from_db()
    assert (record.status, record.attempts, record.result) == (Status.FINISHED, 2, 2)


def _pass_taking_the_lock(patch):
    """A reaper pass of this process that keeps the reaper's lock, as one whose worker was killed during
    it; whether it got the lock (another worker's pass may hold it)."""
    taken = []
    acquire = Lock.acquire

    def acquire_and_note(lock, *args, **kwargs):
        taken.append(acquire(lock, *args, **kwargs))
        return taken[-1]

    patch.setattr(Lock, "acquire", acquire_and_note)
    patch.setattr(Lock, "release", lambda lock: None)
    try:
        reaper.reap()
    finally:
        patch.undo()
    return taken == [True]


def test_a_worker_killed_during_a_reaper_pass_holds_the_other_reapers_back_briefly():
    record = fault_jobs.hang_first_attempt.enqueue(120)
    with start_worker("jobs.worker.ThreadedWorker", "low"):
        victim, killed_at = kill_mid_job("jobs.worker.ThreadedWorker", record)
        # It died during a reaper pass of its maintenance, which never released the reaper's lock.
        with pytest.MonkeyPatch.context() as patch:
            wait_for(lambda: _pass_taking_the_lock(patch), message="a pass that takes the reaper's lock")
        wait_for(lambda: status_of(record) != Status.STARTED, timeout=90, message="the reaper")
        detected_after = time.monotonic() - killed_at
        victim.stop()
    print(f"abandoned job detected {detected_after:.1f}s after SIGKILL, the reaper's lock left behind")
    assert record.status == Status.RETRYING
    # Within ABANDONED_AFTER, give or take the machine's load; not the minute a lock used to last.
    assert detected_after < 2 * FAST["ABANDONED_AFTER"], detected_after


def test_killed_worker_job_without_attempts_left_fails_with_the_reason(worker_class):
    record = fault_jobs.hang_once.enqueue(120)
    queue = jobs_connection.get_queue("default")
    with start_worker(worker_class, "low"):
        victim, _ = kill_mid_job(worker_class, record)
        wait_for(lambda: status_of(record) == Status.FAILED, timeout=60, message="the reaper")
        # RQ's side agrees: the reaper files the job in RQ's FailedJobRegistry right after the record.
        wait_for(lambda: str(record.pk) in queue.failed_job_registry.get_job_ids(), message="RQ's registry")
        victim.stop()
    assert record.error_class == ABANDONED
    assert record.finished_at is not None
    assert record.failed_attempts.get().error_class == ABANDONED
    assert str(record.pk) not in queue.started_job_registry.get_job_ids(cleanup=False)
    drain(worker_class, queues=("default",))
    record.refresh_from_db()
    assert (record.status, record.attempts) == (Status.FAILED, 1)


def test_killed_work_horse_is_recorded_at_once_and_retried():
    record = fault_jobs.hang_first_attempt.enqueue(120)
    victim, _ = kill_mid_job("jobs.worker.Worker", record, horse_only=True)
    with victim:
        # The forking worker outlives its horse: it records the attempt and RQ retries the job on it.
        wait_for(lambda: status_of(record) == Status.FINISHED, timeout=60, message="the retry")
    assert record.attempts == 2
    attempt = record.failed_attempts.get()
    assert attempt.error_class == ABANDONED
    assert "signal 9" in attempt.error_message


def test_job_longer_than_the_heartbeat_ttl_is_never_marked_abandoned(worker_class):
    # An entry lives 2 s without a refresh (refreshed every 0.5 s), the reaper runs every 0.67 s in the
    # rescuer: the job runs twice as long as its entry lives.
    record = fault_jobs.work_for.enqueue(4)
    with (
        start_worker(worker_class, "low"),
        override_settings(JOBS={"DEFAULT_QUEUE": "default", **FAST}),
    ):
        drain(worker_class, queues=("default",))
    record.refresh_from_db()
    assert (record.status, record.attempts, record.result) == (Status.FINISHED, 1, 4)
    assert not record.failed_attempts.exists()


def test_reaper_command_handles_a_dead_worker_when_no_worker_is_left():
    from django.core.management import call_command

    record = fault_jobs.hang_first_attempt.enqueue(120)
    victim, _ = kill_mid_job("jobs.worker.SimpleWorker", record)
    victim.stop()
    # Nothing reaped while the execution's entry is live; then the command finds it.
    call_command("jobs_reap")
    assert status_of(record) == Status.STARTED
    wait_for(lambda: call_command("jobs_reap") or status_of(record) == Status.RETRYING, timeout=30)
    assert record.failed_attempts.get().error_class == ABANDONED


def test_a_job_given_up_as_abandoned_is_announced_with_job_failed(caplog):
    """The reaper (here in this process, through ``jobs_reap``) sends ``job_failed`` for a job whose
    worker died on its last attempt, as for one whose function raised; a receiver that raises is
    logged and stops nothing."""
    from django.core.management import call_command

    from jobs import signals

    with hearing(signals.job_failed, broken_first=True) as heard:
        record = fault_jobs.hang_once.enqueue(120)
        victim, _ = kill_mid_job("jobs.worker.SimpleWorker", record)
        victim.stop()
        wait_for(lambda: call_command("jobs_reap") or status_of(record) == Status.FAILED, timeout=30)
    [(_, _, job, exception)] = heard
    assert (job.pk, job.status) == (record.pk, Status.FAILED)
    assert isinstance(exception, JobAbandoned)
    assert "stopped sending heartbeats" in str(exception)
    assert "a receiver broke" in caplog.text


def test_a_job_taken_by_a_worker_that_died_before_claiming_it_is_pushed_again(redis):
    """What a worker killed between RQ's dequeue and the claim leaves: RQ's job marked started, with an
    execution entry nobody refreshes, out of every list; the record still queued."""
    from django.core.management import call_command
    from rq.job import JobStatus

    from tests import jobs

    record = jobs.add.enqueue(2, 3)
    queue = jobs_connection.get_queue("default")
    assert queue.pop_job_id() == str(record.pk)
    rq_job = queue.fetch_job(str(record.pk))
    rq_job.set_status(JobStatus.STARTED)
    registry = queue.started_job_registry
    redis.zadd(registry.key, {f"{record.pk}:dead-execution": time.time() - 1})

    call_command("jobs_reap")  # first found so: a live worker would write its entry again
    assert queue.get_job_ids() == []
    wait_for(lambda: call_command("jobs_reap") or queue.get_job_ids() == [str(record.pk)], timeout=30)
    assert redis.zcard(registry.key) == 0
    drain()
    record.refresh_from_db()
    assert (record.status, record.attempts, record.result) == (Status.FINISHED, 1, 5)


def test_a_dead_run_reaped_is_pushed_again_once(redis):
    """One reaper pass both reaps dead runs and rescues taken-not-claimed jobs from the same snapshot of
    RQ's started registries: the job it has just moved to retrying is not also taken for a rescue."""
    from datetime import timedelta

    from django.core.management import call_command
    from django.utils import timezone

    from jobs import transitions
    from jobs.models import Job
    from tests import jobs

    record = jobs.add.enqueue(2, 3)
    queue = jobs_connection.get_queue("default")
    assert queue.pop_job_id() == str(record.pk)
    assert transitions.claim(record, "dead-worker") == 1
    Job.objects.filter(pk=record.pk).update(started_at=timezone.now() - timedelta(minutes=5), max_attempts=2)
    registry = queue.started_job_registry
    redis.zadd(registry.key, {f"{record.pk}:dead-execution": time.time() - 1})

    call_command("jobs_reap")  # first found so: a live worker would write its entry again
    assert status_of(record) == Status.STARTED
    wait_for(lambda: call_command("jobs_reap") or status_of(record) == Status.RETRYING, timeout=30)
    assert queue.get_job_ids() + queue.scheduled_job_registry.get_job_ids() == [str(record.pk)]
    assert redis.zcard(registry.key) == 0
