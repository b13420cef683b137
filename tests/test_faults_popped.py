"""A job that a worker of several queues popped (RQ's ``BLPOP``) and died with before it took it: Redis
holds nothing of it but its hash, which says queued. The reconciler pushes it again, once two passes
found it so (``jobs.transport.queues.unaccounted``)."""

import json
import os
import signal
import time
from datetime import timedelta

import pytest
from django.db.models import F

from jobs import keys
from jobs.models import Job, Status
from jobs.transport import batch, queues
from jobs.transport import connection as jobs_connection
from jobs.upkeep.reconcile import reconcile
from tests import jobs
from tests.helpers import WorkerProcess, drain, wait_for

pytestmark = [pytest.mark.django_db(transaction=True)]

#: Records count for the reconciler at once; two passes a heartbeat or so apart.
RECOVERY = {"ABANDONED_AFTER": 4, "RELAY_GRACE": 1, "RECONCILE_INTERVAL": 1}


def test_a_popped_job_is_pushed_again_and_those_redis_holds_are_left_alone(redis, settings):
    settings.JOBS = {**settings.JOBS, **RECOVERY}
    queue = jobs_connection.get_queue("default")
    popped, waiting, taken, handed, elsewhere = records = [jobs.add.enqueue(n, 1) for n in range(5)]
    earlier = F("enqueued_at") - timedelta(minutes=1)  # older than RELAY_GRACE
    Job.objects.filter(pk__in=[record.pk for record in records]).update(enqueued_at=earlier)
    assert redis.lpop(queue.key).decode() == str(popped.pk)  # what a worker's BLPOP did before it died
    low = jobs_connection.get_queue("low")
    redis.lmove(queue.key, low.key)  # a stray id of another queue's list: not this queue's job
    assert redis.lpop(low.key).decode() == str(waiting.pk)
    redis.rpush(queue.key, str(waiting.pk))  # ...back in its own queue
    redis.lrem(queue.key, 1, str(taken.pk))
    [entered] = batch.take(queue, str(taken.pk), 0, 60)  # taken by a threaded worker, not claimed
    assert entered.job_id == str(taken.pk)
    redis.hset(keys.handoffs(), "a-worker", "default")
    redis.lrem(queue.key, 1, str(handed.pk))
    redis.rpush(keys.handoff("a-worker"), str(handed.pk))  # in a worker's hand-off list
    redis.lrem(queue.key, 1, str(elsewhere.pk))
    redis.rpush(queue.intermediate_queue.key, str(elsewhere.pk))  # in RQ's intermediate list
    assert reconcile() == 0  # first found so: a live worker takes a job it popped within moments
    assert list(redis.hgetall(keys.reconcile_popped())) == [str(popped.pk).encode()]
    wait_for(lambda: reconcile() == 1, timeout=20, message="a later pass to push it again")
    assert queue.get_job_ids() == [str(waiting.pk), str(popped.pk)]
    assert redis.hgetall(keys.reconcile_popped()) == {}
    drain("jobs.worker.SimpleWorker", queues=("default",))
    popped.refresh_from_db()
    assert (popped.status, popped.result, popped.attempts) == (Status.FINISHED, 1, 1)


def test_a_queue_longer_than_the_search_is_not_searched(redis, monkeypatch):
    monkeypatch.setattr(queues, "SEARCHED_UP_TO", 2)
    records = [jobs.add.enqueue(n, 1) for n in range(4)]
    queue = jobs_connection.get_queue("default")
    redis.lpop(queue.key)
    batch_ = [(record.pk, "default") for record in records]
    assert queues.unaccounted(batch_) == ([], [])  # three still waiting: not read
    redis.lpop(queue.key)
    assert queues.unaccounted(batch_) == ([], [records[0].pk, records[1].pk])


def _blocked_in(client, command):
    return any(entry.get("cmd") == command for entry in client.client_list())


@pytest.mark.slow
@pytest.mark.parametrize("worker_class", ["jobs.worker.SimpleWorker", "jobs.worker.ThreadedWorker"])
def test_a_worker_of_several_queues_killed_with_the_job_it_popped_loses_nothing(redis, worker_class):
    # Stopped while it waits: Redis pops the next job for it all the same (BLPOP was sent), and the
    # reply dies with the worker. Nothing of the job is left in Redis but its hash, which says queued.
    environment = {"JOBS_TEST_JOBS": json.dumps(RECOVERY)}
    options = ("--worker-class", worker_class)
    killed = WorkerProcess(*options, queues=("default", "low"), **environment)
    try:
        wait_for(
            lambda: _blocked_in(redis, "blpop"),
            timeout=60,
            message=lambda: "the worker to wait on its queues: " + "".join(killed.lines)[-3000:],
        )
        os.kill(killed.pid, signal.SIGSTOP)
        record = jobs.add.enqueue(3, 3)
        queue = jobs_connection.get_queue("default")
        wait_for(lambda: queue.count == 0, timeout=10, message="Redis to pop the job for the stopped worker")
        os.kill(killed.pid, signal.SIGKILL)
        killed.process.wait(timeout=10)
        assert queue.started_job_registry.get_job_ids() == []
        assert queue.intermediate_queue.get_job_ids() == []
        started = time.monotonic()
        with WorkerProcess(*options, queues=("default", "low"), **environment):
            wait_for(
                lambda: Job.objects.get(pk=record.pk).status == Status.FINISHED,
                timeout=60,
                message="the reconciler to push the job again and the other worker to run it",
            )
        assert time.monotonic() - started < 30
    finally:
        killed.stop()
    record.refresh_from_db()
    assert (record.status, record.result, record.attempts) == (Status.FINISHED, 6, 1)
