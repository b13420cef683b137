"""A Redis that refuses writes for a while: full (``maxmemory`` reached with ``noeviction``), as a replica
answers ``READONLY`` after a failover, or unable to persist (``MISCONF``: its snapshot failed, its disk is
full). RQ's loop writes the worker's heartbeat after each job and in its suspension check; the refusal (a
``ResponseError``, not a connection error) ended RQ's loop, and the worker exited with code 0, which a
supervisor that restarts only failed processes takes as a clean stop."""

import contextlib
import json
import time
import uuid

import pytest
from django_rq.workers import get_worker
from redis.exceptions import ResponseError

from jobs.dispatch import breaker
from jobs.models import Status
from jobs.worker.base import REDIS_DOWN
from tests import fault_jobs, jobs
from tests.helpers import WorkerProcess, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

#: A worker on RQ's own loop (the forking and simple workers, which exited at the heartbeat after a job)
#: and one on the lean loop (the lean and threaded workers, which logged each refused dequeue): REDIS_DOWN
#: is the one tuple every class waits out.
WORKER_CLASSES = ["jobs.worker.SimpleWorker", "jobs.worker.ThreadedWorker"]


def status_of(record):
    record.refresh_from_db()
    return record.status


@pytest.mark.parametrize("worker_class", ["jobs.worker.Worker", "jobs.worker.SimpleWorker"])
def test_a_worker_waits_out_a_redis_that_refuses_writes_and_goes_on(redis, worker_class):
    tag = uuid.uuid4().hex[:8]
    first = jobs.fills_redis.enqueue(f"{tag}-first")
    second = fault_jobs.count_run.using(queue="high").enqueue(f"{tag}-second")
    env = {"JOBS_TEST_JOBS": json.dumps({"ABANDONED_AFTER": 4})}
    with WorkerProcess("--worker-class", worker_class, queues=("high", "default"), **env) as worker:
        try:
            wait_for(lambda: status_of(first) == Status.FINISHED, timeout=30, message="the first job")
            # RQ's loop writes the heartbeat right after the job: a worker that quits on the refusal
            # does so within the second; this one is still there three seconds on.
            deadline = time.monotonic() + 3
            while worker.process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            assert worker.process.poll() is None, "the worker exited:\n" + "".join(worker.lines[-30:])
        finally:
            redis.config_set("maxmemory", "0")
        wait_for(
            lambda: fault_jobs.runs_of(f"{tag}-second") == 1,
            timeout=30,
            message=lambda: "the second job did not run:\n" + "".join(worker.lines[-30:]),
        )
        assert worker.process.poll() is None
    assert status_of(second) == Status.FINISHED


def said_since(worker, start, text):
    return any(text in line for line in worker.lines[start:])


@pytest.mark.parametrize("worker_class", WORKER_CLASSES)
def test_a_worker_waits_out_a_redis_that_cannot_persist_and_goes_on(
    redis, redis_server, worker_class, tmp_path
):
    """``MISCONF`` refuses every write (PING too) with a plain ``ResponseError``: the forking and simple
    workers exited with code 0 at the heartbeat after the job; the lean and threaded ones logged each
    refused dequeue as a failure, with its traceback, and the threaded one said that recorded jobs could
    not be recorded."""
    tag = uuid.uuid4().hex[:8]
    gate = tmp_path / "gate"
    first = fault_jobs.gated_first_attempt.enqueue(str(gate), "return")
    with WorkerProcess("--worker-class", worker_class, queues=("high", "default")) as worker:
        wait_for(lambda: status_of(first) == Status.STARTED, timeout=30, message="the first job's start")
        with redis_server.failing_snapshots():
            # Refused at once: the record is left to the relay, and pushes are not skipped for a while.
            second = fault_jobs.count_run.using(queue="high").enqueue(f"{tag}-second")
            second.refresh_from_db()
            assert second.undispatched_since is not None
            assert not breaker.is_open()
            gate.touch()
            wait_for(lambda: status_of(first) == Status.FINISHED, timeout=30, message="the first job")
            ended = len(worker.lines)
            wait_for(
                lambda: (
                    worker.process.poll() is not None or said_since(worker, ended, "Redis did not answer")
                ),
                timeout=30,
                message=lambda: "the worker did not wait for Redis:\n" + "".join(worker.lines[ended:][-30:]),
            )
            assert worker.process.poll() is None, "the worker exited:\n" + "".join(worker.lines[-30:])
        wait_for(
            lambda: fault_jobs.runs_of(f"{tag}-second") == 1,
            timeout=30,
            message=lambda: "the second job did not run:\n" + "".join(worker.lines[-30:]),
        )
        assert worker.process.poll() is None
    assert status_of(first) == Status.FINISHED
    assert status_of(second) == Status.FINISHED
    assert second.undispatched_since is None
    assert fault_jobs.runs_of(f"{tag}-second") == 1


def test_a_worker_started_while_redis_cannot_persist_waits_for_it(redis, redis_server):
    """``MISCONF`` answers PING too: the worker's first command raised, and it exited with code 1."""
    tag = uuid.uuid4().hex[:8]
    with contextlib.ExitStack() as running:
        with redis_server.failing_snapshots():
            record = fault_jobs.count_run.enqueue(tag)
            worker = running.enter_context(WorkerProcess("--worker-class", "jobs.worker.LeanWorker"))
            wait_for(
                lambda: worker.process.poll() is not None or said_since(worker, 0, "the worker waits for it"),
                timeout=30,
                message=lambda: "the worker did not wait for Redis:\n" + "".join(worker.lines[-30:]),
            )
            assert worker.process.poll() is None, "the worker exited:\n" + "".join(worker.lines[-30:])
        wait_for(
            lambda: fault_jobs.runs_of(tag) == 1,
            timeout=30,
            message=lambda: "the job did not run:\n" + "".join(worker.lines[-30:]),
        )
    assert status_of(record) == Status.FINISHED


def test_a_refusal_to_persist_is_an_outage_and_a_refusal_of_a_command_is_not(redis, redis_server):
    """Once a worker is built in a process, ``MISCONF`` is one of the errors it waits out, sent alone, in a
    pipeline (which rewrites the error's message) or from a script; a command refused for what a key
    holds, or a script's own error, is still an error."""
    get_worker("default", worker_class="jobs.worker.LeanWorker")
    redis.set("text", "x")
    with redis_server.failing_snapshots():
        for write in (
            lambda: redis.set("text", "y"),
            lambda: redis.pipeline().set("text", "y").expire("text", 60).execute(),
            lambda: redis.eval("return redis.call('set', 'text', 'y')", 0),
        ):
            with pytest.raises(REDIS_DOWN):
                write()
    for refused in (lambda: redis.lpush("text", "y"), lambda: redis.eval("return redis.call('nope')", 0)):
        with pytest.raises(ResponseError) as caught:
            refused()
        assert not isinstance(caught.value, REDIS_DOWN)
