"""The threaded worker's dequeue from one queue: the job moved into the worker's hand-off list and taken
in the same round trip (``jobs.transport.batch.Handoff``), and what becomes of a job left in such a list.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading

import pytest
from django.db import connections
from django_rq.workers import get_worker
from redis.connection import AbstractConnection
from rq.registry import StartedJobRegistry
from rq.utils import get_version

from jobs import keys
from jobs.models import Job, Status
from jobs.transport import batch
from jobs.transport import connection as jobs_connection
from jobs.upkeep import reaper
from tests import jobs
from tests.helpers import WorkerProcess, drain, wait_for

THREADED = "jobs.worker.ThreadedWorker"

pytestmark = pytest.mark.django_db(transaction=True)


def _blocked_in_blmove(client):
    return any(entry.get("cmd") == "blmove" for entry in client.client_list())


def test_an_idle_workers_job_is_moved_and_taken_in_one_round_trip(redis, monkeypatch):
    worker = get_worker("default", worker_class=THREADED)
    queue = worker.queues[0]
    sends = []
    send = AbstractConnection.send_packed_command

    def counted(connection, command, *args, **kwargs):
        if threading.current_thread() is threading.main_thread():
            sends.append(command)
        return send(connection, command, *args, **kwargs)

    def enqueue_once_blocked():
        wait_for(lambda: _blocked_in_blmove(redis), timeout=10, message="the worker to block on its queue")
        try:
            records.append(jobs.add.enqueue(1, 2))
        finally:
            connections.close_all()

    records: list[Job] = []
    pusher = threading.Thread(target=enqueue_once_blocked)
    pusher.start()
    get_version(worker.connection)  # RQ asks Redis its version once per connection
    monkeypatch.setattr(AbstractConnection, "send_packed_command", counted)
    job, dequeued_from = worker.queue_class.dequeue_any(
        worker.queues,
        10,
        connection=worker.connection,
        job_class=worker.job_class,
        serializer=worker.serializer,
    )
    monkeypatch.undo()
    pusher.join()
    [record] = records
    assert (job.id, dequeued_from.name) == (str(record.pk), "default")
    assert len(sends) == 1  # the registration, the move and the take: one pipeline
    # Taken: in the started registry, out of every list; what it runs read with it.
    [taken] = worker._handoff.taken_with(job.id, queue, 0, 60)
    assert taken.job_id == job.id and taken.call(0).args == [1, 2]
    registry = StartedJobRegistry("default", connection=redis)
    assert redis.zrange(registry.key, 0, -1) == [taken.entry.encode()]
    assert redis.llen(keys.handoff(worker.name)) == 0
    assert (queue.count, queue.intermediate_queue.get_job_ids()) == (0, [])
    assert redis.hget(keys.handoffs(), worker.name) == b"default"


def test_a_job_whose_take_failed_after_its_move_is_taken_by_the_next_take(redis, monkeypatch, caplog):
    record = jobs.add.enqueue(2, 5)
    move_and_take = batch.Handoff._move_and_take

    def take_fails_once(handoff, *args):
        monkeypatch.setattr(batch.Handoff, "_move_and_take", move_and_take)
        monkeypatch.setattr(batch, "_TAKE", "return redis.error_reply('the take failed')")
        try:
            return move_and_take(handoff, *args)
        finally:
            monkeypatch.setattr(batch, "_TAKE", TAKE)

    TAKE = batch._TAKE
    monkeypatch.setattr(batch.Handoff, "_move_and_take", take_fails_once)
    with caplog.at_level(logging.INFO, logger="jobs"):
        drain(THREADED, queues=("default",), name="failed-take")
    assert "The take of a job dequeued from default failed (the take failed)" in caplog.text
    assert "no longer waiting" not in caplog.text  # taken once: out of the list with its take
    record.refresh_from_db()
    assert (record.status, record.result, record.attempts) == (Status.FINISHED, 7, 1)
    assert redis.llen(keys.handoff("failed-take")) == 0
    assert not redis.hexists(keys.handoffs(), "failed-take")  # the worker left the hash as it stopped
    assert StartedJobRegistry("default", connection=redis).get_job_ids() == []


def _hand_over(redis, worker_name, queue_name="default"):
    """What a dequeue leaves behind when the take after it does not run: the job moved into the worker's
    hand-off list, the list registered."""
    queue = jobs_connection.get_queue(queue_name)
    redis.hset(keys.handoffs(), worker_name, queue_name)
    return redis.lmove(queue.key, keys.handoff(worker_name)).decode()


def test_a_job_left_in_a_workers_handoff_list_is_taken_by_its_next_dequeue(redis):
    records = [jobs.add.enqueue(n, 1) for n in range(2)]
    assert _hand_over(redis, "same-worker") == str(records[0].pk)
    drain(THREADED, queues=("default",), name="same-worker")
    assert set(Job.objects.filter(pk__in=[r.pk for r in records]).values_list("status", "attempts")) == {
        (Status.FINISHED, 1)
    }
    assert redis.llen(keys.handoff("same-worker")) == 0


def test_a_job_left_in_a_dead_workers_handoff_list_is_pushed_again_and_the_list_forgotten(redis, settings):
    settings.JOBS = {**settings.JOBS, "ABANDONED_AFTER": 3}
    record = jobs.add.enqueue(4, 4)
    other = jobs.add.enqueue(0, 1)
    assert _hand_over(redis, "dead-worker") == str(record.pk)
    redis.hset(keys.handoffs(), "idle-worker", "default")  # a dead worker's list that holds nothing
    queue = jobs_connection.get_queue("default")
    assert reaper.reap() == 0  # first found there: a live worker takes it out within moments
    assert redis.lrange(keys.handoff("dead-worker"), 0, -1) == [str(record.pk).encode()]
    assert not redis.hexists(keys.handoffs(), "idle-worker")
    wait_for(lambda: reaper.reap() == 1, timeout=30, message="a later pass to push it again")
    assert queue.get_job_ids() == [str(other.pk), str(record.pk)]
    assert redis.llen(keys.handoff("dead-worker")) == 0
    reaper.reap()
    assert redis.hgetall(keys.handoffs()) == {}
    drain(THREADED, queues=("default",))
    for each, result in ((record, 8), (other, 1)):
        each.refresh_from_db()
        assert (each.status, each.result, each.attempts) == (Status.FINISHED, result, 1)


def test_a_live_workers_empty_handoff_list_stays_registered(redis):
    worker = get_worker("default", worker_class=THREADED)
    worker.register_birth()
    redis.hset(keys.handoffs(), worker.name, "default")
    redis.hset(keys.handoffs(), "gone-worker", "default")
    reaper.reap()
    assert redis.hgetall(keys.handoffs()) == {worker.name.encode(): b"default"}


@pytest.mark.slow
def test_a_worker_stopped_while_it_waits_loses_nothing_and_runs_nothing_twice(redis):
    # Stopped (SIGSTOP) while blocked on its queue: Redis moves and takes the next job for it all the same,
    # since both commands were sent; the job waits in the started registry with an entry no heartbeat
    # keeps, the reaper of another worker pushes it again, and the stopped worker, resumed, skips it.
    settings = {"ABANDONED_AFTER": 4, "WORKER_CONCURRENCY": 2}
    options = ("--worker-class", THREADED)
    environment = {"JOBS_TEST_JOBS": json.dumps(settings)}
    stopped = WorkerProcess(*options, "--name", "stopped", queues=("default",), **environment)
    try:
        wait_for(lambda: _blocked_in_blmove(redis), timeout=60, message="the worker to block on its queue")
        os.kill(stopped.pid, signal.SIGSTOP)
        record = jobs.add.enqueue(2, 3)
        registry = StartedJobRegistry("default", connection=redis)
        wait_for(lambda: registry.get_job_ids() == [str(record.pk)], timeout=10, message="the job taken")
        assert jobs_connection.get_queue("default").count == 0
        with WorkerProcess(*options, queues=("default",), **environment):
            wait_for(
                lambda: Job.objects.get(pk=record.pk).status == Status.FINISHED,
                timeout=60,
                message="the reaper to push it again and the other worker to run it",
            )
        os.kill(stopped.pid, signal.SIGCONT)
        # A job skipped ends as one that succeeded, in RQ's count of the worker's jobs.
        wait_for(
            lambda: redis.hget("rq:worker:stopped", "successful_job_count") == b"1",
            timeout=30,
            message=lambda: "the resumed worker to skip the job: " + "".join(stopped.lines)[-2000:],
        )
    finally:
        stopped.stop()
    record.refresh_from_db()
    assert (record.status, record.result, record.attempts) == (Status.FINISHED, 5, 1)
    assert registry.get_job_ids() == []
