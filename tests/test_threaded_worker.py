"""The threaded worker (``manage.py rqworker --worker-class jobs.worker.ThreadedWorker``): up to N jobs at
once in one process, with everything that holds for one job holding for each of them."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.backends.signals import connection_created
from django.test import override_settings
from django.utils import timezone
from redis import exceptions as redis_exceptions
from rq.job import Job as RQJob
from rq.registry import ScheduledJobRegistry, StartedJobRegistry
from rq.serializers import JSONSerializer

from jobs import current_job, job, pause, set_progress
from jobs.models import Job, Status
from jobs.transport import batch
from jobs.transport import connection as jobs_connection
from jobs.upkeep import reaper
from jobs.worker import ThreadedWorker
from tests import fault_jobs, jobs
from tests.helpers import ROOT, WorkerProcess, drain, wait_for, within, worker_env

pytestmark = pytest.mark.django_db(transaction=True)

THREADED = "jobs.worker.ThreadedWorker"

_barrier_lock = threading.Lock()
_met: dict[str, int] = {}


@job
def meet(group, size):
    """Returns only once ``size`` runs of ``group`` run at the same time (or fails after 10 s)."""
    with _barrier_lock:
        _met[group] = _met.get(group, 0) + 1
    deadline = time.monotonic() + 10
    while _met[group] < size:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {_met[group]} of {size} ran at once")
        time.sleep(0.01)
    set_progress(50, "met")
    return threading.current_thread().name


@job
async def async_add(a, b):
    await asyncio.sleep(0.01)
    return {"sum": a + b, "job": str(current_job().pk)}


@override_settings(JOBS={"WORKER_CONCURRENCY": 4})
def test_four_jobs_run_at_once_each_recorded(redis):
    records = [meet.enqueue("four", 4) for _ in range(4)]
    drain(THREADED, queues=("default",), name="threaded-1")
    threads = set()
    for record in records:
        record.refresh_from_db()
        assert (record.status, record.attempts, record.worker_name) == (Status.FINISHED, 1, "threaded-1")
        assert record.progress == 100
        threads.add(record.result)
    assert len(threads) == 4  # four threads, one job each
    assert StartedJobRegistry("default", connection=redis).get_job_ids() == []
    assert redis.llen("rq:queue:default") == 0


@override_settings(JOBS={"WORKER_CONCURRENCY": 2})
def test_async_jobs_and_failures_and_many_jobs(redis):
    added = [async_add.enqueue(n, n) for n in range(3)]
    plain = [jobs.add.enqueue(n, 1) for n in range(20)]
    failed = jobs.boom.enqueue("no")
    retried = jobs.fails_then_succeeds.enqueue(1)  # its first attempt fails, RQ pushes it again
    drain(THREADED, queues=("default",))
    retried.refresh_from_db()
    assert (retried.status, retried.attempts, retried.result) == (Status.FINISHED, 2, 2)
    assert retried.failed_attempts.get().error_class == "builtins.RuntimeError"
    for n, record in enumerate(added):
        record.refresh_from_db()
        assert record.status == Status.FINISHED
        assert record.result == {"sum": 2 * n, "job": str(record.pk)}
    assert sorted(Job.objects.filter(pk__in=[r.pk for r in plain]).values_list("result", flat=True)) == [
        n + 1 for n in range(20)
    ]
    failed.refresh_from_db()
    assert (failed.status, failed.error_class) == (Status.FAILED, "builtins.ValueError")


@job(timeout=1)
def overstays():
    """Runs for 30 s unless stopped: Python code between short sleeps, where a thread can be stopped."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        time.sleep(0.02)
    return "not stopped"


@override_settings(JOBS={"WORKER_CONCURRENCY": 2})
def test_a_job_over_its_timeout_is_stopped_in_its_thread_and_recorded(redis):
    slow = overstays.enqueue()
    quick = jobs.add.enqueue(1, 1)
    started = time.monotonic()
    drain(THREADED, queues=("default",))
    assert time.monotonic() - started < 10
    slow.refresh_from_db()
    assert (slow.status, slow.attempts) == (Status.FAILED, 1)
    assert slow.error_class == "rq.timeouts.JobTimeoutException"
    assert Job.objects.get(pk=quick.pk).status == Status.FINISHED


@pytest.mark.slow
@override_settings(JOBS={"WORKER_CONCURRENCY": 4})
def test_rate_limits_and_paused_queues_hold_in_threads(redis):
    call_command("jobs_queue", "pause", "high")
    held = jobs.add.using(queue="high").enqueue(1, 1)
    first_a = fault_jobs.per_customer.enqueue("a", 1)
    second_a = fault_jobs.per_customer.enqueue("a", 2)
    first_b = fault_jobs.per_customer.enqueue("b", 1)
    drain(THREADED, queues=("default", "high"))
    assert Job.objects.get(pk=held.pk).status == Status.QUEUED
    assert Job.objects.get(pk=first_b.pk).status == Status.FINISHED
    # Customer a's two jobs ran side by side: one took the window, the other waits for the next.
    statuses = {r.pk: Job.objects.get(pk=r.pk) for r in (first_a, second_a)}
    assert sorted((r.status, r.attempts) for r in statuses.values()) == [
        (Status.FINISHED, 1),
        (Status.QUEUED, 0),
    ]
    [waiting] = [pk for pk, r in statuses.items() if r.status == Status.QUEUED]
    scheduled = ScheduledJobRegistry(queue=jobs_connection.get_queue("default"))
    assert scheduled.get_job_ids() == [str(waiting)]


# Real worker processes, where signals are the point.

FAST = {"ABANDONED_AFTER": 4, "WORKER_CONCURRENCY": 3}


def _threaded_worker(*queues):
    return WorkerProcess("--worker-class", THREADED, queues=queues, JOBS_TEST_JOBS=json.dumps(FAST))


def _pushed_again(records):
    """Every record given up by the reaper and its job back in its queue."""
    retrying = Job.objects.filter(pk__in=[r.pk for r in records], status=Status.RETRYING).count()
    return retrying == len(records) and jobs_connection.get_queue("default").count == len(records)


def _started(records):
    return Job.objects.filter(pk__in=[r.pk for r in records], status=Status.STARTED).count() == len(records)


@pytest.mark.slow
def test_sigterm_lets_every_running_job_finish_and_takes_no_new_one():
    running = [fault_jobs.work_for.enqueue(2) for _ in range(3)]
    worker = _threaded_worker("default")
    wait_for(lambda: _started(running), timeout=60, message="three jobs running at once")
    later = jobs.add.enqueue(1, 2)
    worker.signal(signal.SIGTERM)
    assert worker.process.wait(timeout=60) == 0
    output = worker.stop()
    for record in running:
        record.refresh_from_db()
        assert (record.status, record.attempts, record.result) == (Status.FINISHED, 1, 2), output
    assert Job.objects.get(pk=later.pk).status == Status.QUEUED
    assert jobs_connection.get_queue("default").get_job_ids() == [str(later.pk)]


@pytest.mark.slow
def test_a_killed_worker_s_running_jobs_are_all_found_and_retried(settings):
    settings.JOBS = {**settings.JOBS, **FAST}
    running = [fault_jobs.hang_first_attempt.enqueue(120) for _ in range(3)]
    victim = _threaded_worker("default")
    wait_for(lambda: _started(running), timeout=60, message="three jobs running at once")
    registry = StartedJobRegistry("default", connection=jobs_connection.get_connection("default"))
    assert sorted(registry.get_job_ids()) == sorted(str(r.pk) for r in running)
    os.kill(victim.pid, signal.SIGKILL)
    victim.process.wait(timeout=10)
    with _threaded_worker("low"):  # the rescuer: it runs the reaper, never the jobs
        wait_for(lambda: _pushed_again(running), timeout=60, message="the reaper to find all three")
    drain(THREADED, queues=("default",))
    for record in running:
        record.refresh_from_db()
        assert (record.status, record.attempts, record.result) == (Status.FINISHED, 2, 2)
        assert record.failed_attempts.get().error_class == "jobs.exceptions.JobAbandoned"


@pytest.mark.slow
@pytest.mark.skipif(connection.vendor != "sqlite", reason="moves the SQLite file away")
def test_a_job_that_ends_while_the_database_is_gone_is_recorded_once_it_is_back():
    path = connection.settings_dict["NAME"]
    record = fault_jobs.work_for.enqueue(2)
    worker = _threaded_worker("default")
    lines = worker.lines
    with worker:
        wait_for(lambda: Job.objects.get(pk=record.pk).progress == 1, timeout=60, message="the job to run")
        connection.close()
        os.replace(path, path + ".away")
        try:
            wait_for(
                lambda: any("could not be recorded yet" in line for line in lines),
                timeout=60,
                message="the job to end while the database is gone",
            )
        finally:
            os.replace(path + ".away", path)
        wait_for(lambda: Job.objects.get(pk=record.pk).status == Status.FINISHED, timeout=60)
    record.refresh_from_db()
    assert (record.attempts, record.result, record.failed_attempts.count()) == (1, 2, 0), "".join(lines)
    assert "left to the reaper" not in "".join(lines)


CLAIMING_AHEAD = "tests.fault_jobs.ClaimingAheadWorker"


def _claiming_ahead_worker():
    return WorkerProcess(
        "--worker-class", CLAIMING_AHEAD, queues=("default",), JOBS_TEST_JOBS=json.dumps(FAST)
    )


@pytest.mark.slow
def test_sigterm_lets_the_job_claimed_ahead_of_the_threads_run_and_leaves_the_next_waiting():
    running = [fault_jobs.work_for.enqueue(2) for _ in range(4)]
    ahead = jobs.add.enqueue(1, 2)
    later = jobs.add.enqueue(2, 3)
    worker = _claiming_ahead_worker()
    wait_for(lambda: _started([*running, ahead]), timeout=60, message="four running and one claimed ahead")
    assert jobs_connection.get_queue("default").get_job_ids() == [str(later.pk)]
    worker.signal(signal.SIGTERM)
    assert worker.process.wait(timeout=60) == 0
    output = worker.stop()
    finished = Job.objects.filter(pk__in=[r.pk for r in [*running, ahead]], status=Status.FINISHED)
    assert sorted(finished.values_list("attempts", "result")) == [(1, 2)] * 4 + [(1, 3)], output
    assert Job.objects.get(pk=later.pk).status == Status.QUEUED
    assert jobs_connection.get_queue("default").get_job_ids() == [str(later.pk)]


@pytest.mark.slow
def test_a_job_claimed_ahead_of_the_threads_counts_as_started_when_its_worker_dies(settings):
    settings.JOBS = {**settings.JOBS, **FAST}
    running = [fault_jobs.hang_first_attempt.enqueue(120) for _ in range(4)]
    ahead = fault_jobs.hang_first_attempt.enqueue(0)
    later = jobs.add.enqueue(2, 3)
    victim = _claiming_ahead_worker()
    wait_for(lambda: _started([*running, ahead]), timeout=60, message="four running and one claimed ahead")
    wait_for(
        lambda: Job.objects.filter(pk__in=[r.pk for r in running], progress=1).count() == 4,
        timeout=60,
        message="the four running jobs to announce themselves",
    )
    os.kill(victim.pid, signal.SIGKILL)
    victim.process.wait(timeout=10)
    assert Job.objects.get(pk=ahead.pk).progress == 0  # claimed, never begun
    given_up = Job.objects.filter(pk__in=[r.pk for r in [*running, ahead]], status=Status.RETRYING)
    with _threaded_worker("low"):  # the rescuer
        wait_for(
            lambda: given_up.count() == 5 and jobs_connection.get_queue("default").count == 6,
            timeout=60,
            message="the reaper to retry the five it held",
        )
    drain(THREADED, queues=("default",))
    for record in [*running, ahead]:
        record.refresh_from_db()
        assert (record.status, record.attempts, record.result) == (Status.FINISHED, 2, 2)
        assert record.failed_attempts.get().error_class == "jobs.exceptions.JobAbandoned"
    assert Job.objects.get(pk=later.pk).attempts == 1


def test_jobs_are_claimed_ahead_of_the_threads_for_a_short_while_and_for_a_quarter_of_them_at_most(redis):
    worker = fault_jobs.ClaimingAheadWorker(["default"], connection=redis)
    assert worker.claimed_ahead == 1
    worker._run_time = 0.05
    for threads, claimed in ((1, 0), (3, 0), (4, 0), (8, 1), (32, 6), (64, 12)):
        worker.slots, worker.claim_ahead = threads, ThreadedWorker.claim_ahead
        assert worker.claimed_ahead == claimed, threads
    worker._run_time = 0.0001  # short jobs: a quarter of the threads
    assert worker.claimed_ahead == 16
    worker.claim_ahead = 0  # a job is claimed only once a thread is free for it
    assert worker.claimed_ahead == 0


@pytest.mark.slow
def test_django_rq_worker_pool_runs_jobs_with_the_ledger():
    records = [jobs.add.enqueue(n, n) for n in range(12)]
    completed = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "rqworker-pool", "--burst", "--num-workers", "2",
         "--worker-class", THREADED, "default"],
        env=worker_env(JOBS_TEST_JOBS=json.dumps(FAST)),
        capture_output=True, text=True, timeout=120, check=False, cwd=ROOT,
    )  # fmt: skip
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output
    finished = Job.objects.filter(pk__in=[r.pk for r in records], status=Status.FINISHED)
    assert sorted(finished.values_list("result", flat=True)) == [2 * n for n in range(12)], output
    assert set(finished.values_list("attempts", flat=True)) == {1}
    assert jobs_connection.get_queue("default").count == 0


# The fast path: jobs taken, claimed and recorded in batches.

TAKING_AHEAD = "tests.fault_jobs.TakingAheadWorker"


def test_a_deep_queue_is_taken_in_one_batch_and_claimed_and_recorded_in_few(redis, monkeypatch):
    monkeypatch.setattr(fault_jobs.TakingAheadWorker, "concurrency", 8)
    records = [jobs.add.enqueue(n, n) for n in range(40)]
    statements = []

    def count(execute, sql, params, many, context):
        statements.append(sql)
        return execute(sql, params, many, context)

    def watch(sender, connection, **kwargs):
        if count not in connection.execute_wrappers:  # a thread's connection, opened again
            connection.execute_wrappers.append(count)

    connection_created.connect(watch)
    try:
        drain(TAKING_AHEAD, queues=("default",))
    finally:
        connection_created.disconnect(watch)
    finished = Job.objects.filter(pk__in=[r.pk for r in records], status=Status.FINISHED)
    assert sorted(finished.values_list("result", flat=True)) == sorted(2 * n for n in range(40))
    assert set(finished.values_list("attempts", flat=True)) == {1}
    claims = [sql for sql in statements if sql.startswith("UPDATE") and "RETURNING" in sql and "+ 1" in sql]
    finishes = [sql for sql in statements if sql.startswith("WITH done")]
    # All 40 taken at once; claimed as threads free up, 8 in the first statement.
    assert len(claims) <= 40 - 8 + 1
    assert 1 <= len(finishes) <= 40
    assert StartedJobRegistry("default", connection=redis).get_job_ids() == []
    assert [key for key in redis.scan_iter("rq:job:*")] == []  # RQ keeps nothing of them


def test_jobs_taken_by_a_worker_that_died_before_claiming_them_are_pushed_again(redis, settings):
    settings.JOBS = {**settings.JOBS, **FAST}
    records = [jobs.add.enqueue(n, 1) for n in range(3)]
    queue = jobs_connection.get_queue("default")
    taken = batch.take(queue, None, 3, ttl=-1)  # entries already past their score: a dead worker's
    assert len(taken) == 3 and queue.count == 0
    assert reaper.reap() == 0  # first found so: a live worker would write them again
    wait_for(lambda: reaper.reap() == 3, timeout=30, message="a later pass to push them again")
    assert sorted(queue.get_job_ids()) == sorted(str(r.pk) for r in records)
    drain(THREADED, queues=("default",))
    assert set(Job.objects.filter(pk__in=[r.pk for r in records]).values_list("status", "attempts")) == {
        (Status.FINISHED, 1)
    }


@pytest.mark.parametrize("concurrency", [2, 8])
def test_a_job_pushed_twice_and_taken_twice_in_one_batch_runs_once(redis, monkeypatch, concurrency):
    monkeypatch.setattr(fault_jobs.TakingAheadWorker, "concurrency", concurrency)
    tag = f"twice-{concurrency}-{time.monotonic_ns()}"
    record = fault_jobs.count_run.enqueue(tag)
    queue = jobs_connection.get_queue("default")
    queue.push_job_id(str(record.pk))  # a second mover's push of the same job
    later = jobs.add.enqueue(1, 2)
    drain(TAKING_AHEAD, queues=("default",))
    assert fault_jobs.runs_of(tag) == 1
    record.refresh_from_db()
    assert (record.status, record.attempts, record.failed_attempts.count()) == (Status.FINISHED, 1, 0)
    assert Job.objects.get(pk=later.pk).status == Status.FINISHED
    assert StartedJobRegistry("default", connection=redis).get_job_ids() == []
    assert queue.failed_job_registry.get_job_ids() == []


def test_a_job_whose_rq_job_the_losing_copy_ended_is_still_retried_at_once(redis, monkeypatch):
    # Two copies of one job in one batch: the first claims the record and runs; the second finds the
    # record started, is skipped, and its end deletes RQ's job while the first still runs.
    monkeypatch.setattr(fault_jobs.TakingAheadWorker, "concurrency", 2)
    record = fault_jobs.fail_once_its_rq_job_is_gone.enqueue()
    jobs_connection.get_queue("default").push_job_id(str(record.pk))  # a second mover's push
    drain(TAKING_AHEAD, queues=("default",))
    record.refresh_from_db()
    # The first attempt failed with RQ's job gone; its retry (due at once) ran in the same burst, not
    # left for the reconciler's next pass.
    assert (record.status, record.attempts, record.result) == (Status.FINISHED, 2, 2)
    assert StartedJobRegistry("default", connection=redis).get_job_ids() == []


def _on_first_claim(monkeypatch, action):
    """Run ``action(worker)`` while the worker's first claim is on its way."""
    claims = []
    claim = ThreadedWorker._claim

    def claiming(self, runs):
        claims.append(len(runs))
        if len(claims) == 1:
            action(self)
        return claim(self, runs)

    monkeypatch.setattr(ThreadedWorker, "_claim", claiming)
    return claims


def test_a_stop_asked_while_the_worker_claims_claims_and_takes_no_more(redis, monkeypatch):
    monkeypatch.setattr(fault_jobs.TakingAheadWorker, "concurrency", 2)
    records = [jobs.add.enqueue(n, n) for n in range(12)]
    claims = _on_first_claim(monkeypatch, lambda worker: worker.request_stop(signal.SIGTERM, None))
    drain(TAKING_AHEAD, queues=("default",))
    assert claims == [2]  # all 12 taken at once, two claimed: the SIGTERM came during that claim
    statuses = [Job.objects.get(pk=r.pk).status for r in records]
    assert statuses == [Status.FINISHED] * 2 + [Status.QUEUED] * 10
    # The ten taken ahead are back at the front of the queue, in their order.
    assert jobs_connection.get_queue("default").get_job_ids() == [str(r.pk) for r in records[2:]]
    assert StartedJobRegistry("default", connection=redis).get_job_ids() == []


def test_the_jobs_a_stopping_worker_puts_back_keep_their_place_by_priority(redis, monkeypatch):
    """A job of higher priority enqueued while a worker held jobs taken ahead still comes first once the
    stopping worker puts them back: they go back to their place by priority, as every push of `jobs`
    does (they were pushed to the head of the queue, ahead of it: a deploy's graceful stops kept urgent
    jobs waiting behind up to 64 others each)."""
    monkeypatch.setattr(fault_jobs.TakingAheadWorker, "concurrency", 2)
    records = [jobs.add.enqueue(n, n) for n in range(12)]
    urgent = []

    def enqueue_an_urgent_job_and_stop(worker):
        urgent.append(jobs.add.using(priority=10).enqueue(100, 100))
        worker.request_stop(signal.SIGTERM, None)

    claims = _on_first_claim(monkeypatch, enqueue_an_urgent_job_and_stop)
    drain(TAKING_AHEAD, queues=("default",))
    assert claims == [2]  # all 12 taken at once, two claimed: the SIGTERM came during that claim
    expected = [str(urgent[0].pk)] + [str(r.pk) for r in records[2:]]
    assert jobs_connection.get_queue("default").get_job_ids() == expected


def test_a_queue_paused_while_its_jobs_wait_ahead_keeps_them_queued(redis, monkeypatch):
    monkeypatch.setattr(fault_jobs.TakingAheadWorker, "concurrency", 2)
    records = [fault_jobs.work_for.enqueue(0.5) for _ in range(12)]
    paused_at = []

    def pause_default(worker):
        pause.pause("default")
        paused_at.append(timezone.now())

    _on_first_claim(monkeypatch, pause_default)
    try:
        drain(TAKING_AHEAD, queues=("default",))
    finally:
        pause.resume("default")
    started = Job.objects.filter(pk__in=[r.pk for r in records]).exclude(started_at=None)
    # A worker reads the paused queues at most once a second: none starts a second after the pause.
    assert all(
        at <= paused_at[0] + timedelta(seconds=1.2) for at in started.values_list("started_at", flat=True)
    )
    waiting = [r for r in records if Job.objects.get(pk=r.pk).status == Status.QUEUED]
    assert len(waiting) >= 4 and started.count() + len(waiting) == 12
    assert jobs_connection.get_queue("default").get_job_ids() == [str(r.pk) for r in waiting]
    assert StartedJobRegistry("default", connection=redis).get_job_ids() == []


@pytest.mark.slow
def test_a_worker_killed_mid_batch_loses_none_of_its_jobs(settings):
    settings.JOBS = {**settings.JOBS, **FAST}
    # The first two hang (on their first attempt), the four after them would return at once.
    records = [fault_jobs.hang_first_attempt.enqueue(120) for _ in range(2)]
    records += [jobs.add.enqueue(n, n) for n in range(4)]
    victim = WorkerProcess(
        "--worker-class", TAKING_AHEAD, queues=("default",), JOBS_TEST_JOBS=json.dumps(FAST)
    )
    # All six taken in one batch: two claimed and running, four waiting for a thread, not claimed.
    registry = StartedJobRegistry("default", connection=jobs_connection.get_connection("default"))
    wait_for(lambda: len(registry.get_job_ids()) == 6, timeout=60, message="the batch to be taken")
    wait_for(lambda: Job.objects.filter(status=Status.STARTED).count() == 2, timeout=60, message="two to run")
    assert Job.objects.filter(status=Status.QUEUED).count() == 4
    assert jobs_connection.get_queue("default").count == 0
    os.kill(victim.pid, signal.SIGKILL)
    victim.process.wait(timeout=10)
    with _threaded_worker("low"):  # the rescuer
        wait_for(
            lambda: jobs_connection.get_queue("default").count == 6,
            timeout=60,
            message="the reaper to push all six again",
        )
    drain(THREADED, queues=("default",))
    outcomes = sorted(Job.objects.filter(pk__in=[r.pk for r in records]).values_list("status", "attempts"))
    # The two that ran were abandoned and retried; the four that waited had not started: never given up.
    assert outcomes == [(Status.FINISHED, 1)] * 4 + [(Status.FINISHED, 2)] * 2


# The job RQ's dequeue gives is read with its take (``batch.unread_on_dequeue``).


def test_a_dequeued_job_whose_rq_job_is_gone_is_passed_over(redis):
    queue = jobs_connection.get_queue("default")
    queue.push_job_id("deleted-meanwhile")  # its hash is gone (deleted from RQ's side)
    record = jobs.add.enqueue(2, 3)
    with within(60, "the burst (the job that is gone still counted as running?)"):
        drain(THREADED, queues=("default",))
    record.refresh_from_db()
    assert (record.status, record.result) == (Status.FINISHED, 5)
    assert StartedJobRegistry("default", connection=redis).get_job_ids() == []
    assert queue.intermediate_queue.get_job_ids() == []


@pytest.mark.parametrize("worker_class", [THREADED, TAKING_AHEAD])
def test_other_rq_jobs_dequeued_or_taken_ahead_run_on_rqs_path_whole(redis, worker_class):
    # First in the queue (dequeued), or behind one of ours (taken ahead in its batch).
    queue = jobs_connection.get_queue("default")
    if worker_class == TAKING_AHEAD:
        record = jobs.add.enqueue(2, 2)
    rq_job = queue.enqueue("tests.jobs.not_a_job", result_ttl=600, meta={"kept": True}, description="mine")
    if worker_class == THREADED:
        record = jobs.add.enqueue(2, 2)
    drain(worker_class, queues=("default",))
    rq_job = RQJob.fetch(rq_job.id, connection=redis, serializer=JSONSerializer)
    assert (rq_job.get_status(), rq_job.return_value()) == ("finished", "should never run")
    assert (rq_job.meta, rq_job.description, rq_job.result_ttl) == ({"kept": True}, "mine", 600)
    assert rq_job.created_at is not None and rq_job.enqueued_at is not None
    record.refresh_from_db()
    assert (record.status, record.result) == (Status.FINISHED, 4)


def test_a_dequeued_job_whose_take_meets_a_redis_outage_is_left_to_the_relay(redis, monkeypatch):
    # A worker of several queues: RQ's dequeue, then the take in a round trip of its own.
    record = jobs.add.enqueue(3, 4)
    take = batch.take

    def lost_once(*args, **kwargs):
        monkeypatch.setattr(batch, "take", take)
        raise redis_exceptions.ConnectionError("Redis went away at the take")

    monkeypatch.setattr(batch, "take", lost_once)
    drain(THREADED, queues=("default", "low"))
    record.refresh_from_db()
    assert (record.status, record.attempts) == (Status.QUEUED, 0)
    assert record.undispatched_since is not None  # the relay pushes it within seconds, not the reaper
    queue = jobs_connection.get_queue("default")
    assert (queue.get_job_ids(), queue.intermediate_queue.get_job_ids()) == ([], [])
    drain(THREADED, queues=("default", "low"))  # its maintenance runs the relay
    record.refresh_from_db()
    assert (record.status, record.result, record.attempts) == (Status.FINISHED, 7, 1)
