"""Cases 2, 3 and 4: Redis down at enqueue, Redis restarted (AOF on), Redis losing its data."""

import contextlib
import json
import logging
import os
import signal
import threading
import time
import uuid

import pytest
from django.core.management import call_command
from django.db import connections, transaction
from django.test import override_settings
from redis.exceptions import RedisError
from rq.job import Job as RQJob
from rq.serializers import JSONSerializer

from jobs import intervals, keys, signals
from jobs.conf import jobs_settings
from jobs.models import Job, Status
from jobs.transport import connection as jobs_connection
from jobs.transport.worker import Running
from jobs.upkeep import reaper
from jobs.upkeep.relay import relay
from jobs.worker.liveness import Heartbeat
from tests import fault_jobs
from tests.helpers import WorkerProcess, drain, wait_for
from tests.redis_server import RedisServer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_redis_down_at_enqueue_requests_answer_and_the_relay_pushes_each_job_once(client, redis_server):
    tag = uuid.uuid4().hex[:8]
    redis_server.stop()
    # A request, and code in a transaction, both get their record back while Redis is down.
    response = client.get("/demo/echo?msg=offline")
    assert response.status_code == 202
    with transaction.atomic():
        records = [fault_jobs.count_run.enqueue(f"{tag}-{n}") for n in range(20)]
    records.append(Job.objects.get(pk=response.json()["id"]))
    assert all(r.undispatched_since is not None for r in Job.objects.filter(pk__in=[r.pk for r in records]))
    redis_server.start()
    # Two relays at once (a worker's and the command) push every record once.
    with WorkerProcess("--worker-class", "jobs.worker.SimpleWorker", queues=("high",)):
        call_command("jobs_relay")
        wait_for(lambda: not Job.objects.undispatched().exists(), message="the relay")
    assert jobs_connection.get_queue("default").count == 21
    drain("jobs.worker.SimpleWorker")
    assert set(Job.objects.filter(pk__in=[r.pk for r in records]).values_list("status", flat=True)) == {
        Status.FINISHED
    }
    assert all(fault_jobs.runs_of(f"{tag}-{n}") == 1 for n in range(20))


@pytest.mark.parametrize(
    "worker_class",
    [f"jobs.worker.{name}" for name in ("Worker", "SimpleWorker", "LeanWorker", "ThreadedWorker")],
)
def test_a_retry_that_redis_could_not_take_is_left_to_the_relay(redis_server, worker_class):
    # The record says retrying before the worker hands the retry to Redis: when Redis has gone away in
    # between, the relay pushes it once Redis answers (within RELAY_INTERVAL), not the reconciler after
    # RELAY_GRACE.
    tag = uuid.uuid4().hex[:8]
    record = fault_jobs.stop_redis_then_fail.enqueue(tag)
    seen = []

    def restart_once_left_to_the_relay():
        try:
            with contextlib.suppress(AssertionError):
                wait_for(
                    lambda: Job.objects.filter(pk=record.pk, undispatched_since__isnull=False).exists(),
                    timeout=20,
                )
                seen.append(Job.objects.get(pk=record.pk).status)
            redis_server.start()
        finally:
            connections.close_all()  # this thread's own

    restarter = threading.Thread(target=restart_once_left_to_the_relay)
    restarter.start()
    try:
        drain(worker_class, queues=("default",))
    finally:
        restarter.join()
    assert seen == [Status.RETRYING], "the retry was not left to the relay"
    relay()
    drain(worker_class, queues=("default",))
    record.refresh_from_db()
    assert (record.status, record.attempts) == (Status.FINISHED, 2)
    assert fault_jobs.runs_of(tag) == 1


#: What the workers log once they give up on a job's end: ours, and RQ's for the simple and lean ones
#: (rq 3, and rq 2.12).
GAVE_UP_ON_THE_END = (
    "Redis failed around job",
    "Redis could not take",
    "failed to persist",
    "exception during pipeline execute",
)


@pytest.mark.parametrize("outcome", ["finished", "failed"])
@pytest.mark.parametrize(
    "worker_class", ["jobs.worker.SimpleWorker", "jobs.worker.LeanWorker", "jobs.worker.ThreadedWorker"]
)
def test_a_job_whose_end_redis_could_not_take_is_announced_and_its_rq_job_ended_by_the_reaper(
    aof_redis, settings, worker_class, outcome
):
    # The record says how the job ended; Redis, gone at the job's end, kept (in its append-only file)
    # the job's entry in the started registry. Once the entry has lapsed the reaper ends the RQ job as
    # the job's end would have: RQ's own cleanup would file a finished job as failed (or retry it).
    settings.JOBS = {**settings.JOBS, "ABANDONED_AFTER": 4}
    tag = uuid.uuid4().hex[:8]
    function = (
        fault_jobs.stop_redis_then_return
        if outcome == "finished"
        else fault_jobs.stop_redis_then_fail_for_good
    )
    record = function.enqueue(tag)
    signal = signals.job_finished if outcome == "finished" else signals.job_failed

    # Redis comes back once the worker has given up on the job's end: it, or RQ, says so in one of these
    # lines. Not at another line of the outage (the heartbeat's, or RQ's on the job's own error, after
    # which RQ still tries to end the job, and redis-py retries).
    gave_up = threading.Event()

    def on_warning(line):
        if any(words in line.getMessage() for words in GAVE_UP_ON_THE_END):
            gave_up.set()

    handler = logging.Handler(logging.WARNING)
    handler.emit = on_warning  # type: ignore[method-assign]
    for name in ("jobs", "rq.worker"):
        logging.getLogger(name).addHandler(handler)

    def restart_once_the_worker_gave_up():
        gave_up.wait(timeout=30)
        aof_redis.start()

    restarter = threading.Thread(target=restart_once_the_worker_gave_up)
    restarter.start()
    announced = []

    def on_end(sender, job, **kwargs):
        announced.append(job.pk)

    signal.connect(on_end)
    try:
        drain(worker_class, queues=("default",))
    finally:
        signal.disconnect(on_end)
        for name in ("jobs", "rq.worker"):
            logging.getLogger(name).removeHandler(handler)
        restarter.join()
    assert gave_up.is_set()
    record.refresh_from_db()
    assert (record.status, record.attempts) == (outcome, 1)
    assert announced == [record.pk]  # announced all the same: the record has ended
    redis = aof_redis.client()
    registry = jobs_connection.get_queue("default").started_job_registry
    assert redis.zcard(registry.key) == 1  # what Redis kept of the run
    # Two passes of the reaper, the second two heartbeats after the first, once the entry has lapsed.
    wait_for(lambda: redis.zrange(registry.key, 0, -1, withscores=True)[0][1] < time.time(), timeout=10)
    reaper.reap()
    time.sleep(2.1 * intervals.beat_interval())  # the reaper's own rule: two heartbeats between passes
    reaper.reap()
    assert redis.zcard(registry.key) == 0
    failed = jobs_connection.get_queue("default").failed_job_registry
    if outcome == "finished":
        assert not redis.exists(f"rq:job:{record.pk}")
    else:  # filed in RQ's failed registry, as the job's end would have
        assert failed.get_job_ids() == [str(record.pk)]
        assert (
            RQJob.fetch(str(record.pk), connection=redis, serializer=JSONSerializer).get_status() == "failed"
        )
    registry.cleanup()  # RQ's own, as a worker runs it every ten minutes
    assert failed.get_job_ids() == ([] if outcome == "finished" else [str(record.pk)])
    record.refresh_from_db()
    assert (record.status, record.attempts) == (outcome, 1)
    assert fault_jobs.runs_of(tag) == 1


@pytest.mark.parametrize("worker_class", ["jobs.worker.LeanWorker", "jobs.worker.ThreadedWorker"])
def test_redis_restart_with_aof_keeps_queued_jobs_and_the_worker_reconnects(client, aof_redis, worker_class):
    tag = uuid.uuid4().hex[:8]
    queued = [fault_jobs.count_run.enqueue(f"{tag}-{n}") for n in range(10)]
    worker = WorkerProcess("--worker-class", worker_class, queues=("high",), REDIS_URL=aof_redis.url)
    with worker:
        probe = fault_jobs.count_run.using(queue="high").enqueue(f"{tag}-before")
        wait_for(lambda: Job.objects.get(pk=probe.pk).status == Status.FINISHED, message="the worker")
        # The record is finished before RQ's end of the job is written: Redis stops once RQ holds no
        # more of it (an end cut short by the outage is a case of its own).
        wait_for(lambda: not aof_redis.client().exists(RQJob.key_for(str(probe.pk))), message="RQ's end")
        aof_redis.stop()
        outage_started = time.monotonic()
        # The demo keeps serving while Redis is down (the job waits for the relay).
        assert client.get("/demo/echo?msg=during").status_code == 202
        time.sleep(max(0.0, 3 - (time.monotonic() - outage_started)))  # the outage lasts 3 s
        aof_redis.start()
        assert jobs_connection.get_queue("default").count == 10  # AOF kept the queued jobs
        after = fault_jobs.count_run.using(queue="high").enqueue(f"{tag}-after")
        wait_for(
            lambda: Job.objects.get(pk=after.pk).status == Status.FINISHED, timeout=90, message="reconnect"
        )
        assert worker.process.poll() is None, "the worker exited"
    output = worker.stop()
    assert "Traceback" not in output, output
    assert len(output.splitlines()) < 60, output
    drain("jobs.worker.SimpleWorker")  # the test's settings point at the AOF Redis
    assert all(fault_jobs.runs_of(f"{tag}-{n}") == 1 for n in range(10))
    assert {Job.objects.get(pk=r.pk).status for r in queued} == {Status.FINISHED}


@pytest.mark.parametrize("worker_class", ["jobs.worker.SimpleWorker", "jobs.worker.ThreadedWorker"])
def test_a_worker_started_while_redis_is_down_waits_for_it(redis_server, worker_class):
    redis_server.stop()
    worker = WorkerProcess("--worker-class", worker_class, queues=("default",))
    lines = worker.lines
    with worker:
        record = fault_jobs.count_run.enqueue(uuid.uuid4().hex)  # recorded, left to the relay
        assert record.undispatched_since is not None
        wait_for(
            lambda: (
                any("Redis does not answer" in line for line in lines) or worker.process.poll() is not None
            ),
            timeout=60,
            message="the worker to find Redis down",
        )
        assert worker.process.poll() is None, "".join(lines)
        redis_server.start()
        wait_for(
            lambda: Job.objects.get(pk=record.pk).status == Status.FINISHED, timeout=60, message="the job"
        )
    output = "".join(lines)
    assert output.count("Redis does not answer") == 1, output
    assert "Traceback" not in output, output


FAST = {"ABANDONED_AFTER": 4, "RELAY_GRACE": 1, "RECONCILE_INTERVAL": 1}


@pytest.mark.parametrize(
    "worker_class", ["jobs.worker.Worker", "jobs.worker.SimpleWorker", "jobs.worker.ThreadedWorker"]
)
def test_flushall_waiting_jobs_are_pushed_again_and_the_running_one_is_left_alone(redis, worker_class):
    tag = uuid.uuid4().hex[:8]
    running = fault_jobs.work_for.enqueue(5)
    with WorkerProcess("--worker-class", worker_class, queues=("default",), JOBS_TEST_JOBS=json.dumps(FAST)):
        wait_for(lambda: Job.objects.get(pk=running.pk).status == Status.STARTED, timeout=60)
        waiting = [fault_jobs.count_run.enqueue(f"{tag}-{n}") for n in range(10)]
        redis.flushall()
        ids = [r.pk for r in [running, *waiting]]
        wait_for(
            lambda: Job.objects.filter(pk__in=ids, status=Status.FINISHED).count() == len(ids),
            timeout=90,
            message="the reconciler",
        )
    running.refresh_from_db()
    assert (running.attempts, running.failed_attempts.count()) == (1, 0)
    assert all(fault_jobs.runs_of(f"{tag}-{n}") == 1 for n in range(10))


@pytest.mark.parametrize("worker_class", ["jobs.worker.LeanWorker", "jobs.worker.ThreadedWorker"])
def test_a_redis_hung_past_the_entries_ttl_leaves_a_live_workers_jobs_alone(redis_server, worker_class):
    # The entries live 2 s; Redis stops answering for 6 s while the jobs run, then answers again. The
    # reaper (in the other worker) then finds entries past their score, until the live worker's next
    # heartbeats write them again: it must not give those jobs up as abandoned and run them again.
    tag = uuid.uuid4().hex[:8]
    running = 1 if worker_class.endswith("LeanWorker") else 2  # the lean worker runs one at a time
    records = [fault_jobs.count_run_for.enqueue(f"{tag}-{n}", 10) for n in range(running)]
    env = {"JOBS_TEST_JOBS": json.dumps({**FAST, "WORKER_CONCURRENCY": running})}
    runner = WorkerProcess("--worker-class", worker_class, queues=("default",), **env)
    reaper = WorkerProcess("--worker-class", "jobs.worker.ThreadedWorker", queues=("high",), **env)
    with runner, reaper:
        started = Job.objects.filter(pk__in=[r.pk for r in records], status=Status.STARTED)
        wait_for(lambda: started.count() == running, timeout=60, message="the jobs to start")
        os.kill(redis_server.process.pid, signal.SIGSTOP)
        try:
            time.sleep(6)  # the outage: three times the entries' TTL
        finally:
            os.kill(redis_server.process.pid, signal.SIGCONT)
        finished = Job.objects.filter(pk__in=[r.pk for r in records], status=Status.FINISHED)
        wait_for(lambda: finished.count() == len(records), timeout=60, message="the jobs to finish")
    for record in records:
        record.refresh_from_db()
        assert (record.attempts, record.failed_attempts.count()) == (1, 0)
    assert [fault_jobs.runs_of(f"{tag}-{n}") for n in range(len(records))] == [1] * len(records)


def test_a_queue_whose_redis_is_down_holds_back_only_its_own_records(settings):
    # "default" and "high" on one Redis, "low" on another, which is down: the relay pushes the others.
    first, second = RedisServer(), RedisServer()
    first.start()
    second.start()
    try:
        queues = {name: {**config, "URL": first.url} for name, config in settings.RQ_QUEUES.items()}
        queues["low"] = {**queues["low"], "URL": second.url}
        with override_settings(RQ_QUEUES=queues):
            second.stop()
            held = fault_jobs.count_run.using(queue="low").enqueue(uuid.uuid4().hex)  # the oldest
            first.stop()
            records = [fault_jobs.count_run.enqueue(uuid.uuid4().hex) for _ in range(3)]
            first.start()
            assert relay() == 3  # the records of the Redis that answers; the oldest waits for its own
            assert Job.objects.undispatched().get() == held
            with pytest.raises(RedisError):
                relay()  # only the one whose Redis is down is left: that is an error
            assert reaper.reap() == 0  # the upkeep of the other queues goes on
            drain("jobs.worker.SimpleWorker", queues=("default",))
            assert {Job.objects.get(pk=r.pk).status for r in records} == {Status.FINISHED}
            second.start()
            assert relay() == 1
            drain("jobs.worker.SimpleWorker", queues=("low",))
            assert Job.objects.get(pk=held.pk).status == Status.FINISHED
    finally:
        first.cleanup()
        second.cleanup()


def test_reconcile_command_pushes_again_what_redis_lost(redis):
    records = [fault_jobs.count_run.enqueue(uuid.uuid4().hex) for _ in range(3)]
    Job.objects.filter(pk__in=[r.pk for r in records]).update(
        enqueued_at=Job.objects.get(pk=records[0].pk).enqueued_at.replace(year=2020)
    )
    redis.flushall()
    call_command("jobs_reconcile")
    assert jobs_connection.get_queue("default").count == 3
    call_command("jobs_reconcile")  # known to Redis now: not pushed twice
    assert jobs_connection.get_queue("default").count == 3


def test_job_a_dead_worker_left_in_rqs_intermediate_list_is_pushed_again_within_abandoned_after(redis):
    record = fault_jobs.count_run.enqueue(uuid.uuid4().hex)
    running = fault_jobs.count_run.enqueue(uuid.uuid4().hex)
    queue = jobs_connection.get_queue("default")
    redis.lmove(queue.key, queue.intermediate_queue_key)  # what a worker's dequeue did before it died
    redis.lmove(queue.key, queue.intermediate_queue_key)  # ...and a job RQ's own path started
    redis.zadd(queue.started_job_registry.key, {f"{running.pk}:execution": time.time() + 60})
    call_command("jobs_reap")  # first seen there: a live worker may be about to take it
    assert queue.count == 0
    stranded = keys.reaper_stranded()
    assert list(redis.hgetall(stranded)) == [str(record.pk).encode()]
    # ...and still there ABANDONED_AFTER later.
    redis.hset(stranded, str(record.pk), time.time() - jobs_settings.ABANDONED_AFTER)
    call_command("jobs_reap")
    assert queue.get_job_ids() == [str(record.pk)]
    assert queue.intermediate_queue.get_job_ids() == [str(running.pk)]  # a started job stays
    assert redis.hgetall(stranded) == {}
    drain("jobs.worker.SimpleWorker", queues=("default",))
    assert Job.objects.get(pk=record.pk).status == Status.FINISHED


def test_a_heartbeat_held_up_by_a_hung_redis_beats_again_as_soon_as_it_answers(redis_server, redis, settings):
    # Entries live 8 s, a beat every 2 s. The client has no socket timeout: a beat sent while Redis hangs
    # waits for it, and lands with the score it was given before the wait.
    settings.JOBS = {**settings.JOBS, "ABANDONED_AFTER": 16}
    client = redis_server.client()
    heartbeat = Heartbeat(client)
    heartbeat.add(Running("rq:wip:default", "beating:1", None, "rq:worker:beating"))
    try:
        wait_for(lambda: client.zscore("rq:wip:default", "beating:1"), timeout=10, message="a first beat")
        os.kill(redis_server.process.pid, signal.SIGSTOP)
        try:
            time.sleep(5)  # over two beats: one is sent, and waits
        finally:
            os.kill(redis_server.process.pid, signal.SIGCONT)
        answered_at = time.time()
        # Within half a beat, a score reckoned after the wait (the one sent during it is 2 s old or more).
        wait_for(
            lambda: client.zscore("rq:wip:default", "beating:1") > answered_at + 8 - 1,
            timeout=1,
            interval=0.02,
            message="a beat with a fresh score",
        )
    finally:
        heartbeat.stop()
