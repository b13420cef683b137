"""Workflows on three real worker processes (``manage.py rqworker``): a group of 100 jobs and its
callback, the callback run exactly once after all of them; and once too when one job of a group is
SIGKILLed mid-run (with its worker) and retried."""

import json
import os
import signal
import uuid

import pytest
from django.test import override_settings

from jobs.exceptions import DEPENDENCY_FAILED
from jobs.models import Job, Status
from jobs.transport import connection as jobs_connection
from tests import fault_jobs, jobs
from tests.helpers import WorkerProcess, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

FAST = {"ABANDONED_AFTER": 2}
LEAN, THREADED = "jobs.worker.LeanWorker", "jobs.worker.ThreadedWorker"


@pytest.fixture(params=[LEAN, THREADED], ids=["lean", "threaded"])
def worker_class(request):
    return request.param


def three_workers(worker_class):
    env = {"JOBS_TEST_JOBS": json.dumps(FAST)}
    return [WorkerProcess("--worker-class", worker_class, queues=("default",), **env) for _ in range(3)]


def stop_all(workers):
    for worker in workers:
        worker.stop()


def status_of(record):
    return Job.objects.values_list("status", flat=True).get(pk=record.pk)


def _states(*records):
    """What the records and RQ's queue hold, for a wait that timed out."""
    rows = Job.objects.filter(pk__in=[r.pk for r in records]).values_list(
        "pk", "status", "attempts", "worker_name", "dependencies_pending"
    )
    queue = jobs_connection.get_queue("default")
    registry = queue.started_job_registry.connection.zrange(
        queue.started_job_registry.key, 0, -1, withscores=True
    )
    return f"{list(rows)}; queue {queue.get_job_ids()}; started {registry}\n"


def _output(workers):
    return "".join(line for worker in workers for line in [*worker.lines[-15:], "--\n"])


def tagged(name):
    """A name of this test's own in the table of runs, which outlives each test."""
    return f"{uuid.uuid4().hex[:8]}-{name}"


def test_a_callback_runs_once_after_its_100_jobs_on_three_workers(worker_class):
    tag = tagged("")
    children = jobs.add.enqueue_many([(n, 1) for n in range(100)])
    callback = fault_jobs.count_run.using(depends_on=children).enqueue(f"{tag}callback")
    # A second group, one of whose jobs fails for good: its callback fails and never runs.
    doomed_children = [*jobs.add.enqueue_many([(n, n) for n in range(9)]), jobs.boom.enqueue("bad child")]
    doomed = fault_jobs.count_run.using(depends_on=doomed_children).enqueue(f"{tag}doomed")
    workers = three_workers(worker_class)
    try:
        wait_for(lambda: status_of(callback) == Status.FINISHED, timeout=60, message="the callback")
        wait_for(lambda: status_of(doomed) == Status.FAILED, timeout=30, message="the doomed callback")
    finally:
        stop_all(workers)
    assert fault_jobs.runs_of(f"{tag}callback") == 1
    ran = Job.objects.filter(pk__in=[c.pk for c in children]).values_list("status", "attempts", "result")
    assert sorted(ran, key=lambda row: row[2]) == [(Status.FINISHED, 1, n + 1) for n in range(100)]
    callback = Job.objects.get(pk=callback.pk)
    ends = Job.objects.filter(pk__in=[c.pk for c in children]).values_list("finished_at", flat=True)
    assert callback.started_at >= max(ends)
    assert (callback.attempts, callback.dependencies_pending) == (1, 0)
    # The children's ends counted down concurrently: on all three lean workers (one job at a time each);
    # a threaded worker runs several at once on its own, and may take them all before the others start.
    names = set(Job.objects.filter(pk__in=[c.pk for c in children]).values_list("worker_name", flat=True))
    if worker_class == LEAN:
        assert len(names) == 3
    doomed = Job.objects.get(pk=doomed.pk)
    assert (doomed.error_class, doomed.attempts) == (DEPENDENCY_FAILED, 0)
    assert "bad child" in doomed.error_message


@override_settings(JOBS={"DEFAULT_QUEUE": "default", **FAST})
def test_a_job_of_the_group_killed_mid_run_is_retried_and_the_callback_still_runs_once(worker_class):
    hanging = fault_jobs.hang_first_attempt.enqueue(120)
    tag = tagged("")
    others = fault_jobs.count_run.enqueue_many([(f"{tag}child-{n}",) for n in range(29)])
    children = [hanging, *others]
    callback = fault_jobs.count_run.using(depends_on=children).enqueue(f"{tag}callback")
    workers = three_workers(worker_class)
    try:

        def running_pid():
            record = Job.objects.get(pk=hanging.pk)
            message = record.progress_message
            return record.status == Status.STARTED and message.isdigit() and int(message)

        pid = wait_for(running_pid, timeout=60, message="the hanging job to start")
        # Killed once the others ended: a worker killed between RQ's dequeue and its claim leaves a job
        # in RQ's intermediate list, which the reconciler rescues only after RQ's minute (tested apart).
        ended = Job.objects.filter(pk__in=[r.pk for r in others], status=Status.FINISHED)
        wait_for(lambda: ended.count() == len(others), timeout=60, message="the other jobs to end")
        os.kill(pid, signal.SIGKILL)
        wait_for(
            lambda: status_of(callback) == Status.FINISHED,
            timeout=60,
            message=lambda: "the callback: " + _states(hanging, callback) + _output(workers),
        )
    finally:
        stop_all(workers)
    assert fault_jobs.runs_of(f"{tag}callback") == 1
    hanging = Job.objects.get(pk=hanging.pk)
    assert (hanging.status, hanging.attempts) == (Status.FINISHED, 2)
    assert hanging.failed_attempts.get().error_class.endswith("JobAbandoned")
    callback = Job.objects.get(pk=callback.pk)
    assert callback.started_at >= hanging.finished_at
    assert callback.attempts == 1
