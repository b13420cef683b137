"""The threaded worker's own threads under what a job or a fault throws at them: a job that raises a
``BaseException`` ends, not its thread; a SIGTERM or a Redis error that comes while the main thread
decides which of the jobs taken ahead may start loses none of them, and the worker stops, or goes on."""

import json
import signal
import traceback

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from rq.registry import ScheduledJobRegistry, StartedJobRegistry

from jobs.models import Job, Status
from jobs.transport import connection
from jobs.worker import ThreadedWorker
from jobs.worker import threaded as threaded_module
from tests import fault_jobs, jobs
from tests.helpers import WorkerProcess, drain, wait_for, within

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize(
    ("enqueue", "error_class"),
    [
        (lambda: fault_jobs.exits.enqueue(3), "builtins.SystemExit"),
        (fault_jobs.interrupts.enqueue, "builtins.KeyboardInterrupt"),
        (fault_jobs.awaits_a_cancelled_task.enqueue, "asyncio.exceptions.CancelledError"),
    ],
    ids=["sys.exit()", "KeyboardInterrupt", "CancelledError"],
)
def test_a_job_that_raises_a_base_exception_fails_and_its_thread_takes_the_next_job(enqueue, error_class):
    """Two threads, two such jobs first: before, each killed its thread, and the jobs after them were
    claimed by no thread (started for ever, their entries kept live) or never taken."""
    bad = [enqueue() for _ in range(2)]
    good = [jobs.add.enqueue(n, n) for n in range(4)]
    records = Job.objects.filter(pk__in=[record.pk for record in bad + good])
    worker = WorkerProcess(
        "--worker-class",
        "jobs.worker.ThreadedWorker",
        queues=("default",),
        JOBS_TEST_JOBS=json.dumps({"WORKER_CONCURRENCY": 2}),
    )
    try:
        wait_for(
            lambda: all(record.status in (Status.FINISHED, Status.FAILED) for record in records.all()),
            timeout=30,
            message=lambda: (
                f"every record to end: {list(records.values_list('status', 'attempts'))}\n"
                + "".join(worker.lines)[-3000:]
            ),
        )
    finally:
        output = worker.stop()
    assert [Job.objects.get(pk=record.pk).status for record in good] == [Status.FINISHED] * 4
    for record in bad:
        record.refresh_from_db()
        assert (record.status, record.error_class) == (Status.FAILED, error_class)
    assert "Exception in thread" not in output


def test_a_stop_asked_while_the_jobs_taken_ahead_are_checked_stops_the_worker(redis, monkeypatch):
    """The SIGTERM comes as the main thread, waiting for a free thread, checks a job taken ahead: the
    worker stops (it waited for the jobs taken out of those ahead for ever), and the jobs it did not run
    are back in their queue."""
    records = [jobs.add.enqueue(n, n) for n in range(12)]
    held = ThreadedWorker._held
    asked = []

    def stopped_while_checked(worker, taken, call):
        waiting_for_a_thread = "_wait_for_room" in {frame.name for frame in traceback.extract_stack()}
        if waiting_for_a_thread and not asked:  # the signal comes now
            asked.append(taken.job_id)
            worker.request_stop(signal.SIGTERM, None)
        return held(worker, taken, call)

    monkeypatch.setattr(ThreadedWorker, "_held", stopped_while_checked)
    with within(30, "the burst stopped by a SIGTERM"):
        drain("tests.fault_jobs.TakingAheadWorker", queues=("default",))
    assert asked
    statuses = {record.pk: Job.objects.get(pk=record.pk).status for record in records}
    assert set(statuses.values()) <= {Status.FINISHED, Status.QUEUED}
    queued = {str(pk) for pk, status in statuses.items() if status == Status.QUEUED}
    assert queued
    assert set(connection.get_queue("default").get_job_ids()) == queued
    assert not StartedJobRegistry("default", connection=redis).get_job_ids()


def test_a_redis_error_as_a_job_taken_ahead_is_held_back_does_not_end_the_worker(redis, monkeypatch, caplog):
    """Rate-limited jobs taken ahead are held back as threads free up, and Redis fails as one of them
    leaves the started registry: the worker goes on with the others (it ended on that error, then hung
    on its stop, waiting for the job it had taken out of those ahead)."""
    records = [fault_jobs.limited.enqueue(n) for n in range(6)]
    leave = threaded_module.batch.leave
    failed = []

    def redis_fails_once(taken):
        if not failed:
            failed.append(taken.job_id)
            raise RedisConnectionError("Redis went away")
        return leave(taken)

    monkeypatch.setattr(threaded_module.batch, "leave", redis_fails_once)
    with within(30, "the burst"):
        drain("tests.fault_jobs.TakingAheadWorker", queues=("default",))
    assert failed
    assert "Redis could not take its entry out" in caplog.text
    statuses = {str(record.pk): Job.objects.get(pk=record.pk).status for record in records}
    assert list(statuses.values()).count(Status.FINISHED) >= 2  # within the limit, 2 a second
    held_back = {pk for pk, status in statuses.items() if status == Status.QUEUED}
    scheduled = set(ScheduledJobRegistry("default", connection=redis).get_job_ids())
    assert held_back <= scheduled | set(connection.get_queue("default").get_job_ids())
    assert failed[0] in StartedJobRegistry("default", connection=redis).get_job_ids()  # left to the reaper
