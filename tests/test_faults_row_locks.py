"""A worker stopped (SIGSTOP, a paused VM, a host cut off) inside a transaction that holds row locks.

Real `manage.py rqworker` processes on PostgreSQL. The first worker stops itself inside the transaction
that finishes a job and releases its dependent, holding the row locks of the job, its link and the
dependent. The second worker's reaper finds the stopped job's registry entry dead and tries to abandon
it: its UPDATE waits on the row lock. The wait is bounded (``jobs.upkeep.locks``), the record is
skipped until a later pass, and the second worker goes on taking jobs. Once the stopped worker is
killed, its connection closes, its transaction is rolled back and the record is retried.

The same bound holds for the management commands and for a forking worker recording its killed work
horse, tested below with another connection holding the row locked.
"""

import contextlib
import json
import os
import signal
import threading
import time
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from jobs import job as job_decorator
from jobs import keys, schedules, transitions
from jobs.context import current_job
from jobs.models import Job, Schedule, Status
from jobs.transport import connection as jobs_connection
from jobs.upkeep import locks
from jobs.worker import SimpleWorker, maintenance
from tests import fault_jobs, jobs
from tests.helpers import WorkerProcess, wait_for

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.slow,
    pytest.mark.skipif(
        connection.vendor == "sqlite",
        reason="SQLite has no row locks: a worker stopped inside a transaction holds the write lock of the "
        "whole database (the README's Reliability section says so)",
    ),
]

FAST = {"ABANDONED_AFTER": 4}


class StopsInsideReleaseWorker(SimpleWorker):
    """A SimpleWorker that stops itself (SIGSTOP) inside the transaction that finishes a job and releases
    its dependents, once it has counted them down."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        count_down = transitions._count_down

        def count_down_then_stop(alias, edges):
            released = count_down(alias, edges)
            os.kill(os.getpid(), signal.SIGSTOP)
            return released

        transitions._count_down = count_down_then_stop


def stopped(pid):
    with open(f"/proc/{pid}/status") as status:
        return any(line.startswith("State:") and line.split()[1] == "T" for line in status)


def waiting_on_a_row_lock():
    """The UPDATEs of job records that PostgreSQL holds back on a lock (the reaper's, here), in this
    test's database (another test process's may wait on one of its own)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity "
            "WHERE wait_event_type = 'Lock' AND query LIKE 'UPDATE %%jobs_job%%' "
            "AND datname = current_database()"
        )
        return cursor.fetchall()


def status_of(record):
    record.refresh_from_db()
    return record.status


def test_a_worker_stopped_inside_a_transaction_does_not_stall_the_other_workers():
    dependency = jobs.add.using(max_attempts=2, backoff=[0]).enqueue(1, 2)
    dependent = jobs.add.using(depends_on=dependency).enqueue(3, 4)
    env = {"JOBS_TEST_JOBS": json.dumps(FAST)}
    stopping = WorkerProcess(
        "--worker-class", f"{__name__}.StopsInsideReleaseWorker", queues=("default",), **env
    )
    other = None
    try:
        wait_for(lambda: stopped(stopping.pid), timeout=30, message="the first worker to stop itself")
        assert status_of(dependency) == Status.STARTED  # its finish is not committed
        other = WorkerProcess("--worker-class", "jobs.worker.SimpleWorker", queues=("default", "high"), **env)
        # The other worker's reaper has found the stopped job's entry dead, and waits on its row lock.
        wait_for(waiting_on_a_row_lock, timeout=20, message="the reaper to wait on the stopped worker's lock")
        same_queue = jobs.add.enqueue(5, 6)
        unrelated = jobs.add.using(queue="high").enqueue(7, 8)
        wait_for(
            lambda: status_of(same_queue) == status_of(unrelated) == Status.FINISHED,
            timeout=10,
            message=lambda: (
                "the other worker to run new jobs while one is stopped; its log:\n"
                + "".join(other.lines[-12:])
            ),
        )
        assert status_of(dependency) == Status.STARTED
        assert any("skipped" in line for line in other.lines), "".join(other.lines[-12:])

        os.kill(stopping.pid, signal.SIGKILL)  # its connection closes: its transaction is rolled back
        stopping.process.wait(timeout=10)
        wait_for(
            lambda: status_of(dependency) == status_of(dependent) == Status.FINISHED,
            timeout=15,
            message=lambda: (
                "the stopped worker's job to be retried; the other worker's log:\n"
                + "".join(other.lines[-12:])
            ),
        )
    finally:
        if other is not None:
            other.stop()
        stopping.stop()
    dependency.refresh_from_db()
    assert dependency.attempts == 2
    assert [a.error_class for a in dependency.failed_attempts.all()] == ["jobs.exceptions.JobAbandoned"]
    dependent.refresh_from_db()
    assert dependent.result == 7


def lock_timeout():
    with connection.cursor() as cursor:
        cursor.execute("SHOW lock_timeout")
        return cursor.fetchone()[0]


def test_the_bound_holds_for_the_maintenance_tasks_only(monkeypatch):
    """The tasks run with the bound; a job run on the same connection afterwards does not."""
    seen = []
    monkeypatch.setattr(
        maintenance, "TASKS", (maintenance.Task("probe", lambda: 60, lambda: seen.append(lock_timeout())),)
    )
    before = lock_timeout()
    with locks.bounded_lock_waits():
        assert lock_timeout() == "2s"  # JOBS["ROW_LOCK_TIMEOUT"]'s default
    assert lock_timeout() == before
    maintenance.Maintenance(["default"]).run()
    assert seen == ["2s"]
    assert lock_timeout() == before


# Everything else of `jobs` that writes records outside a job: the management commands an operator or
# cron runs, and a forking worker recording its killed work horse. Another connection holds the row
# lock here, in an open transaction, as a process stopped inside one would; it lets go after
# ``at_most`` seconds, so that a wait that is not bounded fails the test rather than hangs it.


@contextlib.contextmanager
def held(table, pk, at_most=6.0):
    """The row ``pk`` of ``table`` locked by another connection until the block ends."""
    holder = connection.get_new_connection(connection.get_connection_params())
    try:
        with holder.cursor() as cursor:
            cursor.execute(f"SELECT 1 FROM {table} WHERE id = %s FOR UPDATE", [pk])
            assert cursor.fetchall() == [(1,)]
        watchdog = threading.Timer(at_most, holder.rollback)
        watchdog.start()
        try:
            yield
        finally:
            watchdog.cancel()
    finally:
        holder.close()


@pytest.fixture
def short_lock_timeout(settings):
    settings.JOBS = {**settings.JOBS, "ROW_LOCK_TIMEOUT": 0.2}


def command(*args):
    """Run a management command; its output, and the message of its CommandError (None if none)."""
    out = StringIO()
    started = time.monotonic()
    try:
        call_command(*args, stdout=out)
        error = None
    except CommandError as exc:
        error = str(exc)
    took = time.monotonic() - started
    assert took < 3, f"{args[0]} took {took:.1f}s: it waited for the lock"
    return out.getvalue(), error


def test_jobs_relay_reports_a_locked_record_and_relays_the_others(short_lock_timeout):
    records = [jobs.add.enqueue(i, i) for i in range(3)]
    jobs_connection.get_queue("default").empty()
    transitions.mark_undispatched(records, timezone.now())
    with held("jobs_job", records[0].pk):
        out, error = command("jobs_relay")
    assert out == "Pushed 2 record(s) to Redis; 1 still waiting.\n"
    assert f"1 record(s) skipped, the others done (job {records[0].pk})" in error
    assert list(Job.objects.undispatched()) == [records[0]]


def _claimed_by_a_dead_worker(record, redis):
    """The record started by a worker that died: its entry in RQ's registry expired long ago, and an
    earlier reaper pass found it so."""
    queue = jobs_connection.get_queue("default")
    queue.remove(str(record.pk))
    assert transitions.claim(record, "dead-worker") == 1
    Job.objects.filter(pk=record.pk).update(started_at=timezone.now() - timedelta(minutes=5))
    redis.zadd(queue.started_job_registry.key, {f"{record.pk}:dead-execution": time.time() - 600})
    redis.hset(keys.reaper_expired(), str(record.pk), time.time() - 600)
    return record


def test_jobs_reap_reports_a_locked_record_and_reaps_the_others(short_lock_timeout, redis):
    locked, other = (_claimed_by_a_dead_worker(jobs.add.enqueue(i, i), redis) for i in range(2))
    with held("jobs_job", locked.pk):
        out, error = command("jobs_reap")
    assert out == "1 abandoned job(s) retried or failed.\n"
    assert f"1 record(s) skipped, the others done (job {locked.pk})" in error
    assert (status_of(locked), status_of(other)) == (Status.STARTED, Status.FAILED)


def _orphan():
    """A deferred job whose only dependency was deleted without telling it: the reconciler releases it."""
    dependency = jobs.add.enqueue(1, 2)
    dependent = jobs.add.using(depends_on=dependency).enqueue(3, 4)
    Job.objects.filter(pk=dependency.pk).delete()
    return dependent


def test_jobs_reconcile_reports_a_locked_record_and_handles_the_others(short_lock_timeout):
    locked, other = _orphan(), _orphan()
    with held("jobs_job", locked.pk):
        out, error = command("jobs_reconcile")
    assert out == "1 waiting record(s) pushed again or released; 0 abandoned job(s) handled.\n"
    assert f"1 record(s) skipped, the others done (job {locked.pk})" in error
    assert (status_of(locked), status_of(other)) == (Status.DEFERRED, Status.QUEUED)


def _failed_long_ago():
    record = Job.objects.create(
        function="tests.jobs.add", status=Status.FAILED, finished_at=timezone.now() - timedelta(days=90)
    )
    record.failed_attempts.create(number=1, error_class="ValueError", error_message="no")
    return record


def test_jobs_prune_reports_a_record_whose_attempt_is_locked_and_deletes_the_others(short_lock_timeout):
    """The record's own row is free (locked ones are skipped as they are chosen): the DELETE of its
    attempt waits."""
    locked, _other = _failed_long_ago(), _failed_long_ago()
    with held("jobs_failedattempt", locked.failed_attempts.get().pk):
        out, error = command("jobs_prune")
    assert out.startswith("Deleted 1 record(s): ")
    assert f"1 record(s) skipped, the others done (job {locked.pk})" in error
    assert list(Job.objects.all()) == [locked]


def _due(name):
    schedule = Schedule(name=name, function="tests.jobs.add", args=[1, 2], cron="* * * * *")
    schedule.next_tick = timezone.now() - timedelta(seconds=5)
    schedule.save()
    return schedule


def test_jobs_schedule_tick_reports_a_locked_schedule_and_fires_the_others(short_lock_timeout):
    locked, _other = _due("locked"), _due("other")
    with held("jobs_schedule", locked.pk):
        out, error = command("jobs_schedule", "tick")
    assert out == "Fired 1 tick(s).\n"
    assert "1 record(s) skipped, the others done (schedule 'locked')" in error
    assert list(Job.objects.values_list("schedule__name", flat=True)) == ["other"]


def declared(settings, cron):
    settings.JOBS = {
        **settings.JOBS,
        "SCHEDULES": {"declared": {"function": "tests.jobs.add", "args": [1, 2], "cron": cron}},
    }


@pytest.mark.parametrize("action", [["sync"], ["run", "declared"]])
def test_jobs_schedule_sync_and_run_give_up_on_a_locked_schedule(short_lock_timeout, settings, action):
    declared(settings, "0 9 * * *")
    schedules.sync()
    locked = Schedule.objects.get(name="declared")
    declared(settings, "0 10 * * *")
    with held("jobs_schedule", locked.pk):
        out, error = command("jobs_schedule", *action)
    assert out == ""
    assert error.startswith("Gave up on a step that waited for a row lock (the step changed nothing)")
    locked.refresh_from_db()
    assert locked.cron == "0 9 * * *"
    assert not Job.objects.exists()


def running_pid(record):
    """The pid of the work horse running the job (the job announces it), once it runs."""
    record.refresh_from_db()
    announced = record.progress_message.isdigit() and int(record.progress_message)
    return record.status == Status.STARTED and announced


def test_a_forking_worker_leaves_its_killed_horse_s_locked_record_to_the_reaper():
    record = fault_jobs.hang_once.enqueue(120)
    env = {"JOBS_TEST_JOBS": json.dumps({**FAST, "ROW_LOCK_TIMEOUT": 0.5})}
    with WorkerProcess("--worker-class", "jobs.worker.Worker", queues=("default",), **env) as worker:
        horse = wait_for(lambda: running_pid(record), timeout=30, message="the job to start")
        with held("jobs_job", record.pk, at_most=30):
            os.kill(horse, signal.SIGKILL)
            # The worker records the kill: its UPDATE waits on the lock, gives up, and the worker goes on.
            after = jobs.add.enqueue(5, 6)
            wait_for(
                lambda: status_of(after) == Status.FINISHED,
                timeout=10,
                message=lambda: "the worker to take the next job; its log:\n" + "".join(worker.lines[-12:]),
            )
            assert status_of(record) == Status.STARTED
        assert any("left to the reaper" in line for line in worker.lines), "".join(worker.lines[-12:])
        # The lock released, the reaper gives the run up: Redis holds no execution of it.
        wait_for(lambda: status_of(record) == Status.FAILED, timeout=15, message="the reaper")
    assert "Redis holds no execution" in record.failed_attempts.get().error_message


@pytest.mark.usefixtures("restore_signal_handlers")
def test_a_worker_started_while_a_declared_schedule_is_locked_takes_its_jobs(
    short_lock_timeout, settings, redis
):
    """A worker syncs the declared schedules as it starts: a schedule's row locked by a process stopped
    inside a transaction (a scheduling worker stopped mid-fire) held every starting worker there, before
    it listened to any queue. The sync now gives up (logged), and the worker takes its jobs."""
    declared(settings, "0 9 * * *")
    schedules.sync()
    locked = Schedule.objects.get(name="declared")
    declared(settings, "0 10 * * *")
    record = jobs.add.enqueue(2, 3)
    started = time.monotonic()
    with held("jobs_schedule", locked.pk):
        SimpleWorker(["default"], connection=redis).work(burst=True)
        took = time.monotonic() - started
    assert took < 3, f"the worker took {took:.1f}s: it waited for the lock"
    record.refresh_from_db()
    assert record.status == Status.FINISHED


#: Connections that jobs of ``locks_its_own_row`` left holding their record's row lock.
HOLDERS = []


@job_decorator
def locks_its_own_row():
    """Lock this job's own record from another connection, left in its transaction: once the job ends,
    the finish waits for that lock, as for a process stopped inside a transaction."""
    holder = connection.get_new_connection(connection.get_connection_params())
    with holder.cursor() as cursor:
        cursor.execute("SELECT 1 FROM jobs_job WHERE id = %s FOR UPDATE", [current_job().pk])
    HOLDERS.append(holder)


@pytest.mark.usefixtures("restore_signal_handlers")
@override_settings(JOBS={"WORKER_CONCURRENCY": 2, "ROW_LOCK_TIMEOUT": 0.2})
def test_a_threaded_worker_puts_off_a_job_whose_record_is_locked_and_goes_on(redis):
    """The threaded worker's main thread claims the jobs: a record locked by a process stopped inside a
    transaction held it in that claim, and no job of the worker's started again. The claim now gives up
    after ``ROW_LOCK_TIMEOUT``, and the job is put off, as after a database error."""
    from tests.helpers import drain

    record = jobs.add.enqueue(2, 3)
    started = time.monotonic()
    with held("jobs_job", record.pk):
        drain("jobs.worker.ThreadedWorker", queues=("default",))
        took = time.monotonic() - started
    assert took < 3, f"the worker took {took:.1f}s: it waited for the lock"
    assert status_of(record) == Status.QUEUED
    queue = jobs_connection.get_queue("default")
    assert queue.scheduled_job_registry.get_job_ids() == [str(record.pk)]
    with connection.cursor() as cursor:
        cursor.execute("SHOW lock_timeout")
        assert cursor.fetchone() == ("0",), "the worker left this thread's connection bounded"


@pytest.mark.usefixtures("restore_signal_handlers")
@override_settings(JOBS={"WORKER_CONCURRENCY": 2, "ROW_LOCK_TIMEOUT": 0.2})
def test_a_threaded_worker_leaves_a_locked_finish_to_the_reaper_and_records_the_next(monkeypatch, redis):
    """The recorder thread writes the ends of the jobs that succeeded, one batch after another: a record
    locked by a stopped process held it in that batch's finish, and no job of the worker's was recorded
    again (each left started, its entry kept live). The finish now gives up after ``ROW_LOCK_TIMEOUT``,
    is tried again for ``RECORD_PATIENCE_SECONDS``, then is left to the reaper; the other records of its
    batch are finished one by one, rather than left to the reaper with it."""
    from jobs.worker import threaded
    from tests.helpers import drain

    monkeypatch.setattr(threaded, "RECORD_PATIENCE_SECONDS", 1)
    monkeypatch.setattr(threaded, "RECORD_WAIT_SECONDS", 0.5)  # the jobs' ends in one batch
    locked = locks_its_own_row.enqueue()
    following = [jobs.add.enqueue(2, n) for n in range(3)]

    def let_go():
        for holder in HOLDERS:
            holder.close()
        HOLDERS.clear()

    watchdog = threading.Timer(6, let_go)  # a wait that is not bounded fails the test rather than hangs it
    watchdog.start()
    started = time.monotonic()
    try:
        drain("jobs.worker.ThreadedWorker", queues=("default",))
        took = time.monotonic() - started
    finally:
        watchdog.cancel()
        let_go()
    assert took < 4, f"the burst took {took:.1f}s: the recorder waited for the lock"
    assert [status_of(record) for record in following] == [Status.FINISHED] * 3
    assert status_of(locked) == Status.STARTED  # left to the reaper
