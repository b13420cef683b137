"""What differs between rq 2.12 and rq 3 (``jobs.transport.compat``), shown with real workers and Redis.

The suite runs on both (``make test`` and ``make test-oldest``); the tests here pin the spots where the
two versions write different keys, so that a worker that forgets one of them fails on that version.
"""

import json
import threading
import time
import zlib

import pytest
from django_rq.workers import get_worker
from rq import Worker as RQWorker
from rq.job import Job as RQJob
from rq.serializers import JSONSerializer
from rq.utils import utcparse

from jobs import job
from jobs.models import Job, Status
from jobs.transport import compat
from jobs.transport.queues import unaccounted
from tests import jobs
from tests.helpers import WorkerProcess, drain, run_worker, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

WORKER_CLASSES = ["jobs.worker.Worker", "jobs.worker.SimpleWorker", "jobs.worker.LeanWorker"]


@pytest.fixture(params=WORKER_CLASSES, ids=["forking", "simple", "lean"])
def worker_class(request):
    return request.param


@job
def wait_for_key(key):
    """Runs until the test sets ``key`` in the worker's Redis, so that the test can look at a running job."""
    from jobs.transport.connection import get_connection

    redis = get_connection("default")
    deadline = time.monotonic() + 60
    while not redis.exists(key):
        if time.monotonic() > deadline:
            raise TimeoutError(key)
        time.sleep(0.02)
    return "released"


@job
def takes_rq_reserved_names(rate_limit, timeout, job_id, result_ttl):
    return [rate_limit, timeout, job_id, result_ttl]


def _running(record):
    return Job.objects.filter(pk=record.pk, status=Status.STARTED).exists()


def _finished(record):
    return Job.objects.filter(pk=record.pk, status=Status.FINISHED).exists()


def test_a_running_jobs_rq_hash_has_no_ttl(redis, worker_class):
    # A record retried after it failed is pushed again over an RQ hash that RQ gave its failure TTL;
    # rq 2.12's Job.perform() removed the TTL, rq 3's worker does it when the job starts.
    record = wait_for_key.enqueue("release")
    job_key = RQJob.key_for(str(record.pk))
    redis.expire(job_key, 3600)
    with WorkerProcess("--worker-class", worker_class, queues=("default",)):
        wait_for(lambda: _running(record), message="the job running")
        assert redis.ttl(job_key) == -1
        redis.set("release", 1)
        wait_for(lambda: _finished(record), message="the job finished")


def test_the_worker_shows_its_current_job_however_long_it_runs(redis, worker_class):
    # The worker's liveness thread keeps what says which job it runs: on rq 3 the set of its executions,
    # which would otherwise expire a minute after the job started; on rq 2.12 its own hash.
    record = wait_for_key.enqueue("release")
    with WorkerProcess(
        "--worker-class",
        worker_class,
        "--name",
        "busy",
        queues=("default",),
        JOBS_TEST_JOBS=json.dumps({"ABANDONED_AFTER": 2}),
    ):
        wait_for(lambda: _running(record), message="the job running")
        key = "rq:worker:busy:executions" if compat.RQ_3 else "rq:worker:busy"
        redis.expire(key, 2)  # as if the job had run for a minute
        wait_for(lambda: redis.ttl(key) > 2, message="the worker's key refreshed")
        time.sleep(2.5)  # past the TTL it was given above: still there
        worker = RQWorker.find_by_key("rq:worker:busy", connection=redis)
        assert worker.get_current_job_id() == str(record.pk)
        redis.set("release", 1)
        wait_for(lambda: _finished(record), message="the job finished")
        wait_for(lambda: _idle(redis, "busy"), message="the worker idle")


def _idle(redis, name):
    worker = RQWorker.find_by_key(f"rq:worker:{name}", connection=redis)
    return worker.get_state() == "idle" and worker.get_current_job_id() is None


def test_job_arguments_named_like_rqs_options_reach_the_function(redis):
    # rq 3 reserves ``rate_limit`` in Queue.enqueue, as it did ``timeout``, ``job_id`` and ``result_ttl``:
    # a job's own arguments travel inside the runner's arguments, never as RQ's keywords.
    record = takes_rq_reserved_names.enqueue(rate_limit="10/s", timeout=5, job_id="x", result_ttl=1)
    run_worker("--worker-class", "jobs.worker.LeanWorker", queues=("default",))
    record.refresh_from_db()
    assert (record.status, record.result) == (Status.FINISHED, ["10/s", 5, "x", 1])


@pytest.mark.parametrize("status", ["queued", "scheduled", "deferred", "started"])
def test_rq_jobs_that_will_still_run_are_not_lost(redis, status):
    record = Job.objects.create(function="tests.jobs.add", queue="default")
    redis.hset(RQJob.key_for(str(record.pk)), "status", status)
    assert unaccounted([(record.pk, "default")])[0] == []


@pytest.mark.skipif(not compat.RQ_3, reason="rq 3 added these states")
@pytest.mark.parametrize("status", ["rate_limited", "ready_to_enqueue"])
def test_rq_3_states_of_jobs_that_will_still_run_are_not_lost(redis, status):
    record = Job.objects.create(function="tests.jobs.add", queue="default")
    redis.hset(RQJob.key_for(str(record.pk)), "status", status)
    assert unaccounted([(record.pk, "default")])[0] == []


@pytest.mark.parametrize("status", ["finished", "failed", "stopped", "canceled"])
def test_rq_jobs_that_will_not_run_are_lost(redis, status):
    record = Job.objects.create(function="tests.jobs.add", queue="default")
    redis.hset(RQJob.key_for(str(record.pk)), "status", status)
    assert unaccounted([(record.pk, "default")])[0] == [record.pk]


@pytest.mark.parametrize(
    "worker_class", ["jobs.worker.SimpleWorker", "jobs.worker.LeanWorker", "jobs.worker.ThreadedWorker"]
)
def test_a_worker_leaves_its_command_channel_at_once(redis, worker_class):
    """RQ's pubsub thread waits up to 60 s for a message; with redis-py 8.2, whose ``stop()`` waits for
    the thread, a worker that stopped it before sending the unsubscribe that wakes it held every exit
    that long."""

    worker = get_worker("default", worker_class=worker_class)
    worker.subscribe()
    wait_for(lambda: redis.pubsub_numsub(worker.pubsub_channel_name)[0][1] == 1, timeout=10)
    leaving = threading.Thread(target=worker.unsubscribe, daemon=True)
    leaving.start()
    leaving.join(timeout=10)
    assert not leaving.is_alive(), "unsubscribe() waited for the pubsub thread's 60-second read"
    assert not worker.pubsub_thread.is_alive()
    assert redis.pubsub_numsub(worker.pubsub_channel_name)[0][1] == 0


def _rq_hash(redis, record):
    return {key.decode(): value for key, value in redis.hgetall(f"rq:job:{record.pk}").items()}


@pytest.mark.parametrize(
    "options",
    [{}, {"priority": 7, "timeout": 30}, {"max_attempts": 4, "backoff": [1, 5]}, {"queue": "high"}],
    ids=["plain", "priority-and-timeout", "retries", "other-queue"],
)
def test_a_pushed_job_s_rq_hash_is_the_one_rqs_enqueue_job_writes(redis, options):
    from jobs.transport import connection, queues

    record = jobs.add.using(**options).enqueue(1, 2)
    pushed = _rq_hash(redis, record)
    # What RQ itself writes for the same job: made by create_job, written by enqueue_job.
    queue = connection.get_queue(record.queue)
    redis.delete(f"rq:job:{record.pk}", queue.key)
    queue.enqueue_job(queues._rq_job(queue, record, jobs.add.using(**options).options))
    written = _rq_hash(redis, record)
    for moment in ("created_at", "enqueued_at"):
        apart = utcparse(pushed.pop(moment).decode()) - utcparse(written.pop(moment).decode())
        assert abs(apart.total_seconds()) < 5
    # The payload, short, is not compressed (RQ compresses every one, and reads both).
    assert pushed.pop("data") == zlib.decompress(written.pop("data"))
    assert pushed == written
    run_job = RQJob.fetch(str(record.pk), connection=redis, serializer=JSONSerializer)
    assert run_job.args[:2] == [str(record.pk), "tests.jobs.add"]


@pytest.mark.parametrize("worker_class", ["jobs.worker.SimpleWorker", "jobs.worker.ThreadedWorker"])
def test_a_payload_is_compressed_from_a_kilobyte_on_and_runs_either_way(redis, worker_class):
    from jobs.transport.queues import COMPRESSED_FROM

    short, long = jobs.add.enqueue("x", "y"), jobs.add.enqueue("x" * COMPRESSED_FROM, "y")
    short_data, long_data = (_rq_hash(redis, record)["data"] for record in (short, long))
    assert json.loads(short_data)[2][:2] == [str(short.pk), "tests.jobs.add"]
    assert json.loads(zlib.decompress(long_data))[2][:2] == [str(long.pk), "tests.jobs.add"]
    drain(worker_class, queues=("default",))
    short.refresh_from_db()
    long.refresh_from_db()
    assert (short.status, short.result) == (Status.FINISHED, "xy")
    assert (long.status, long.result) == (Status.FINISHED, "x" * COMPRESSED_FROM + "y")


def test_a_record_pushed_again_gets_rq_retries_only_for_the_attempts_it_has_left(redis):
    from jobs.transport import queues

    record = jobs.fails_then_succeeds.enqueue(5)  # max_attempts=3, backoff=[0]
    Job.objects.filter(pk=record.pk).update(attempts=1)
    record.refresh_from_db()
    queues.push([record])
    rq_hash = _rq_hash(redis, record)
    assert (rq_hash["retries_left"], json.loads(rq_hash["retry_intervals"])) == (b"1", [0])
