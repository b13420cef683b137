"""A worker stopped (SIGSTOP, a paused VM, a host cut off) inside a transaction that holds row locks.

Real `manage.py rqworker` processes on PostgreSQL. The first worker stops itself inside the transaction
that finishes a job and releases its dependent, holding the row locks of the job, its link and the
dependent. The second worker's reaper finds the stopped job's registry entry dead and tries to abandon
it: its UPDATE waits on the row lock. The wait is bounded (``jobs.upkeep.locks``), the record is
skipped until a later pass, and the second worker goes on taking jobs. Once the stopped worker is
killed, its connection closes, its transaction is rolled back and the record is retried.
"""

import json
import os
import signal

import pytest
from django.db import connection

from jobs import transitions
from jobs.models import Status
from jobs.upkeep import locks
from jobs.worker import SimpleWorker, maintenance
from tests import jobs
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
    """The UPDATEs of job records that PostgreSQL holds back on a lock (the reaper's, here)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity "
            "WHERE wait_event_type = 'Lock' AND query LIKE 'UPDATE %%jobs_job%%'"
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
        assert lock_timeout() == f"{locks.LOCK_TIMEOUT}s"
    assert lock_timeout() == before
    maintenance.Maintenance(["default"]).run()
    assert seen == [f"{locks.LOCK_TIMEOUT}s"]
    assert lock_timeout() == before
