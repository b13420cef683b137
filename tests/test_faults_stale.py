"""A stale run never overwrites a newer attempt: real ``manage.py rqworker`` processes and real signals.

The first attempt's run is made stale (its worker SIGSTOPped past ``ABANDONED_AFTER``, or its forking
worker SIGKILLed while the work horse runs on as an orphan); a second worker reaps it and runs attempt
2 to the end; then the first run is let go past its gate and ends (it fails, or returns). The record
keeps attempt 2's outcome, and RQ schedules no further retry.
"""

import contextlib
import json
import os
import signal

import pytest

from jobs.exceptions import ABANDONED
from jobs.models import Status
from jobs.transport import connection as jobs_connection
from tests import fault_jobs
from tests.helpers import WorkerProcess, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

#: A registry entry lives 2s without a refresh; the reaper runs every 0.67s.
FAST = {"ABANDONED_AFTER": 4}


def start_worker(worker_class, *options):
    return WorkerProcess(
        "--worker-class", worker_class, *options, queues=("default",), JOBS_TEST_JOBS=json.dumps(FAST)
    )


def running_pid(record):
    """The pid of the process running the job's first attempt (the job announces it), once it runs."""
    record.refresh_from_db()
    message = record.progress_message
    return record.status == Status.STARTED and record.attempts == 1 and message.isdigit() and int(message)


def finished_by_attempt_2(record):
    record.refresh_from_db()
    return record.status == Status.FINISHED and record.attempts == 2


def ended(pid):
    """Whether the process ``pid`` (not our child, so not ours to reap) has exited."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] == "Z"
    except FileNotFoundError:
        return True


def kill_left_over(*pids):
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
            os.kill(pid, signal.SIGKILL)


def assert_attempt_2_kept(record):
    record.refresh_from_db()
    assert (record.status, record.attempts, record.result) == (Status.FINISHED, 2, 2)
    # The stale run's progress report changed nothing either.
    assert record.progress == 100
    assert "past its gate" not in record.progress_message
    # The history holds attempt 1 once, as the reaper gave it up; the stale run's own outcome is dropped.
    [attempt] = record.failed_attempts.all()
    assert (attempt.number, attempt.error_class) == (1, ABANDONED)
    queue = jobs_connection.get_queue("default")
    assert str(record.pk) not in queue.get_job_ids()
    assert str(record.pk) not in queue.scheduled_job_registry.get_job_ids()


@pytest.mark.parametrize("worker_class", ["jobs.worker.SimpleWorker", "jobs.worker.ThreadedWorker"])
@pytest.mark.parametrize("outcome", ["fail", "return"])
def test_a_stopped_worker_resumed_after_a_newer_attempt_leaves_the_record_alone(
    tmp_path, outcome, worker_class
):
    gate = tmp_path / "gate"
    record = fault_jobs.gated_first_attempt.enqueue(str(gate), outcome)
    stale = start_worker(worker_class, "--burst")
    try:
        assert wait_for(lambda: running_pid(record), timeout=60, message="attempt 1 to start") == stale.pid
        os.kill(stale.pid, signal.SIGSTOP)
        with start_worker("jobs.worker.SimpleWorker"):
            wait_for(lambda: finished_by_attempt_2(record), timeout=60, message="the reaper and attempt 2")
        gate.touch()
        os.kill(stale.pid, signal.SIGCONT)
        # A burst worker: it would take a retry RQ scheduled at once (no backoff), then exit.
        stale.process.wait(timeout=60)
        output = stale.stop()
    finally:
        kill_left_over(stale.pid)
    assert_attempt_2_kept(record)
    assert "after the record moved on" in output, output


@pytest.mark.parametrize("outcome", ["fail", "return"])
def test_an_orphaned_work_horse_ending_after_a_newer_attempt_leaves_the_record_alone(tmp_path, outcome):
    gate = tmp_path / "gate"
    record = fault_jobs.gated_first_attempt.enqueue(str(gate), outcome)
    parent = start_worker("jobs.worker.Worker")
    horse = None
    try:
        horse = wait_for(lambda: running_pid(record), timeout=60, message="attempt 1 to start")
        assert horse != parent.pid
        os.kill(parent.pid, signal.SIGKILL)
        parent.process.wait(timeout=10)
        assert not ended(horse)
        with start_worker("jobs.worker.SimpleWorker"):
            wait_for(lambda: finished_by_attempt_2(record), timeout=60, message="the reaper and attempt 2")
        gate.touch()
        wait_for(lambda: ended(horse), timeout=60, message="the orphaned work horse to end")
    finally:
        kill_left_over(*([horse] if horse else []))
        parent.stop()
    assert_attempt_2_kept(record)
