"""A Redis that refuses writes for a while: full (``maxmemory`` reached with ``noeviction``), as a replica
answers ``READONLY`` after a failover. RQ's loop writes the worker's heartbeat after each job and in its
suspension check; the refusal (a ``ResponseError``, not a connection error) ended RQ's loop, and the
worker exited with code 0, which a supervisor that restarts only failed processes takes as a clean stop."""

import json
import time
import uuid

import pytest

from jobs.models import Status
from tests import fault_jobs, jobs
from tests.helpers import WorkerProcess, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


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
