"""No job can stop a worker: a rate key that raises, a model argument deleted before the run, a module
that fails on import in the forking worker's preload, Redis hung past the socket timeout. Each time the
job's record says why, and the next job runs."""

import json
import os
import signal
import uuid
import zlib

import pytest
from django.contrib.auth.models import User
from django.db import DatabaseError, connection, connections
from django.db.models import QuerySet
from rq.registry import StartedJobRegistry

from jobs import intervals, keys, transitions
from jobs.conf import jobs_settings
from jobs.models import Job, Status
from jobs.transport import connection as jobs_connection
from jobs.transport.runner import RUNNER
from jobs.worker import LeanWorker, SimpleWorker, ThreadedWorker, reconnect
from jobs.worker.pause import PausedQueues
from tests import broken_import_jobs, due_jobs, fault_jobs
from tests.helpers import WorkerProcess, run_worker, wait_for, within

pytestmark = pytest.mark.django_db(transaction=True)


def burst(worker_class, redis):
    """The real worker class's loop, in this process, until the queue is empty."""
    worker_class(["default"], connection=redis).work(burst=True)


def assert_failed_with(record, error_class, message_part):
    record.refresh_from_db()
    assert record.status == Status.FAILED
    assert record.error_class == error_class
    assert message_part in record.error_message
    assert record.failed_attempts.count() == 1


@pytest.mark.usefixtures("restore_signal_handlers")
@pytest.mark.parametrize(
    "worker_class", [SimpleWorker, LeanWorker, ThreadedWorker], ids=["simple", "lean", "threaded"]
)
def test_a_rate_key_that_raises_fails_its_job_and_the_next_job_runs(redis, worker_class):
    tag = uuid.uuid4().hex[:8]
    due_jobs.BUCKETS[tag] = "bucket"
    record = due_jobs.keyed_by_lookup.enqueue(tag)
    following = fault_jobs.count_run.enqueue(f"{tag}-next")
    del due_jobs.BUCKETS[tag]  # the rate key now raises KeyError in the worker
    burst(worker_class, redis)
    assert_failed_with(record, "builtins.KeyError", tag)
    assert Job.objects.get(pk=following.pk).status == Status.FINISHED
    queue = jobs_connection.get_queue("default")
    assert queue.failed_job_registry.get_job_ids() == [str(record.pk)]
    assert queue.intermediate_queue.get_job_ids() == []
    assert fault_jobs.runs_of(tag) == 0


@pytest.mark.usefixtures("restore_signal_handlers")
def test_a_model_argument_deleted_before_the_run_fails_its_job_and_the_next_job_runs(redis):
    tag = uuid.uuid4().hex[:8]
    user = User.objects.create_user(f"u{tag}")
    record = due_jobs.per_user.enqueue(user, tag)
    following = fault_jobs.count_run.enqueue(f"{tag}-next")
    user.delete()
    burst(LeanWorker, redis)
    assert_failed_with(record, "jobs.exceptions.ArgumentUnavailable", "no longer exists")
    assert Job.objects.get(pk=following.pk).status == Status.FINISHED
    assert fault_jobs.runs_of(tag) == 0


@pytest.mark.slow
def test_a_module_that_fails_on_import_in_preload_fails_its_job_and_the_next_job_runs():
    tag = uuid.uuid4().hex[:8]
    record = broken_import_jobs.never_imported.enqueue()
    following = fault_jobs.count_run.enqueue(f"{tag}-next")
    output = run_worker(
        "--worker-class", "jobs.worker.Worker", queues=("default",), JOBS_TEST_BREAK_IMPORT="1"
    )
    assert "unhandled exception" not in output, output
    assert_failed_with(record, "builtins.RuntimeError", "cannot be imported here")
    assert Job.objects.get(pk=following.pk).status == Status.FINISHED


def test_a_job_module_that_fails_on_import_holds_back_no_other_job(redis_server):
    """The relay and a release push records without their function's module (a worker imports it to
    read the options): one that fails on import used to fail every pass of the relay, and every push of
    a release, holding back every other job of the batch."""
    tag = uuid.uuid4().hex[:8]
    redis_server.stop()
    relayed = [broken_import_jobs.never_imported.enqueue(), fault_jobs.count_run.enqueue(f"{tag}-relayed")]
    redis_server.start()
    root = fault_jobs.count_run.enqueue(f"{tag}-root")
    released = [
        broken_import_jobs.never_imported.using(depends_on=root).enqueue(),
        fault_jobs.count_run.using(depends_on=root).enqueue(f"{tag}-released"),
    ]
    records = Job.objects.filter(pk__in=[record.pk for record in (*relayed, root, *released)])
    worker = WorkerProcess(
        "--worker-class",
        "jobs.worker.LeanWorker",
        queues=("default",),
        JOBS_TEST_BREAK_IMPORT="1",
        JOBS_TEST_JOBS=json.dumps({"RELAY_INTERVAL": 1}),
    )
    try:
        wait_for(
            lambda: all(record.status in (Status.FINISHED, Status.FAILED) for record in records.all()),
            timeout=30,
            message=lambda: (
                f"every job to end: {list(records.values_list('function', 'status'))}\n"
                + "".join(worker.lines[-30:])
            ),
        )
    finally:
        worker.stop()
    for broken in (relayed[0], released[0]):
        assert_failed_with(broken, "builtins.RuntimeError", "cannot be imported here")
    for fine in (relayed[1], root, released[1]):
        assert Job.objects.get(pk=fine.pk).status == Status.FINISHED


#: Each worker class on a queue of its own, so that one Redis hang is outlived by all three at once.
HUNG_WORKERS = {
    "default": "jobs.worker.Worker",
    "high": "jobs.worker.LeanWorker",
    "low": "jobs.worker.ThreadedWorker",
}


def _one_job_per_queue(name: str) -> QuerySet[Job]:
    """A job on each queue of ``HUNG_WORKERS``; the records of those that finished."""
    pks = [fault_jobs.count_run.using(queue=queue).enqueue(f"{name}-{queue}").pk for queue in HUNG_WORKERS]
    return Job.objects.filter(pk__in=pks, status=Status.FINISHED)


@pytest.mark.slow
def test_each_worker_class_outlives_redis_hung_past_its_socket_timeout(redis_server):
    tag = uuid.uuid4().hex[:8]
    finished = _one_job_per_queue(f"{tag}-before")
    workers = {
        queue: WorkerProcess("--worker-class", worker_class, queues=(queue,))
        for queue, worker_class in HUNG_WORKERS.items()
    }
    try:
        wait_for(lambda: finished.count() == len(workers), timeout=60, message="each worker's first job")
        os.kill(redis_server.process.pid, signal.SIGSTOP)
        try:
            # Longer than the socket timeout of the workers' blocking dequeue (RQ's: dequeue timeout + 10 s,
            # a worker's dequeue timeout being its shortest upkeep interval, in whole seconds).
            wake = min(jobs_settings.DUE_INTERVAL, jobs_settings.RELAY_INTERVAL, intervals.reap_interval())
            with pytest.raises(AssertionError):
                wait_for(
                    lambda: any(worker.process.poll() is not None for worker in workers.values()),
                    timeout=max(1, int(wake)) + 10 + 2,
                )
        finally:
            os.kill(redis_server.process.pid, signal.SIGCONT)
        finished = _one_job_per_queue(f"{tag}-after")
        wait_for(
            lambda: finished.count() == len(workers),
            timeout=60,
            message=lambda: (
                f"each queue's next job once Redis resumed; done: {list(finished.values('queue'))}"
            ),
        )
        exited = [
            HUNG_WORKERS[queue] for queue, worker in workers.items() if worker.process.poll() is not None
        ]
        assert not exited, f"exited: {exited}"
    finally:
        outputs = {queue: worker.stop() for queue, worker in workers.items()}
    for queue, output in outputs.items():
        assert "quitting" not in output, (HUNG_WORKERS[queue], output)


def test_paused_queues_read_while_redis_is_down_keep_what_redis_said_last(redis, redis_server):
    jobs_connection.get_connection("default").set(keys.paused_queue("high"), "1")
    paused = PausedQueues(["default", "high"])
    assert paused.current() == {"high"}
    redis_server.stop()
    paused._read_at = float("-inf")  # due for a read now
    assert paused.current() == {"high"}


def _kill_own_backend():
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    finally:
        other.close()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="terminates a PostgreSQL backend")
def test_a_record_sent_on_a_connection_that_died_is_sent_again_on_a_new_one():
    record = fault_jobs.count_run.enqueue(uuid.uuid4().hex)
    attempt = transitions.claim(record, worker_name="w")
    _kill_own_backend()
    # Ending an attempt is a transaction: Django replaces the dead connection on its way out of it.
    failed = reconnect.once_more_if_the_connection_died(
        "default",
        lambda: transitions.fail_attempt(
            record, attempt, error_class="E", error_message="m", traceback="t", retrying=False
        ),
    )
    assert failed
    record.refresh_from_db()
    assert (record.status, record.error_class, record.failed_attempts.count()) == (Status.FAILED, "E", 1)


def test_a_statement_that_fails_on_a_live_connection_is_not_sent_again():
    fault_jobs.count_run.enqueue(uuid.uuid4().hex)  # the connection is open
    sent = []

    def statement():
        sent.append(1)
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM no_such_table")

    with pytest.raises(DatabaseError):
        reconnect.once_more_if_the_connection_died("default", statement)
    assert len(sent) == 1


@pytest.mark.usefixtures("restore_signal_handlers")
@pytest.mark.parametrize(
    "worker_class", [SimpleWorker, LeanWorker, ThreadedWorker], ids=["simple", "lean", "threaded"]
)
@pytest.mark.parametrize(
    "data",
    [b"not json", json.dumps([RUNNER, None, [1], {}]).encode(), json.dumps([RUNNER, None, "x", {}]).encode()],
    ids=["not-json", "too-few-arguments", "arguments-not-a-list"],
)
def test_an_rq_job_whose_payload_does_not_load_is_failed_in_rq_and_the_next_job_runs(
    redis, worker_class, data
):
    queue = jobs_connection.get_queue("default")
    redis.hset(
        "rq:job:unreadable",
        mapping={
            "data": zlib.compress(data),
            "origin": "default",
            "status": "queued",
            "description": "unreadable",
            "created_at": "2026-12-05T00:00:00.000000Z",
            "timeout": 180,
            "result_ttl": 0,
        },
    )
    queue.push_job_id("unreadable")
    record = fault_jobs.count_run.enqueue(f"after-unreadable-{uuid.uuid4()}")
    with within(60, "the burst"):
        burst(worker_class, redis)
    record.refresh_from_db()
    assert record.status == Status.FINISHED
    assert "unreadable" in queue.failed_job_registry.get_job_ids()
    assert StartedJobRegistry("default", connection=redis).get_job_ids() == []
    assert queue.intermediate_queue.get_job_ids() == []
