"""Job functions for the fault tests, importable by worker processes.

Each reports the pid of the process running it (the work horse, or the worker itself) in its progress
message, so that a test can kill exactly that process.
"""

import contextlib
import os
import time

from django.db import DatabaseError, connection, transaction
from redis.exceptions import RedisError
from rq.job import Job as RQJob

from jobs import current_job, job, set_progress
from jobs.transport import connection as jobs_connection
from jobs.worker import ThreadedWorker


def _announce():
    set_progress(1, str(os.getpid()))


@job(max_attempts=2, backoff=[0])
def hang_first_attempt(seconds):
    """Hangs on its first attempt (the one the test kills); later attempts return at once."""
    _announce()
    if current_job().attempts == 1:
        time.sleep(seconds)
    return current_job().attempts


@job(max_attempts=1)
def hang_once(seconds):
    _announce()
    time.sleep(seconds)
    return "done"


@job(max_attempts=1)
def work_for(seconds):
    """A job that runs longer than a heartbeat's TTL, and finishes."""
    _announce()
    time.sleep(seconds)
    return seconds


def _create_runs_table(cursor):
    """The table of runs, made by the first run. Two runs that make it at the same moment race on
    PostgreSQL, whose ``IF NOT EXISTS`` does not see a table another transaction is creating: the loser
    finds it made."""
    try:
        with transaction.atomic():
            cursor.execute("CREATE TABLE IF NOT EXISTS fault_runs (name VARCHAR(100))")
    except DatabaseError:
        cursor.execute("SELECT 1 FROM fault_runs LIMIT 1")  # made by the other run, else raises


@job(max_attempts=1)
def count_run(name):
    """Counts its runs in a table of its own, so that a test sees double runs."""
    with connection.cursor() as cursor:
        _create_runs_table(cursor)
        cursor.execute("INSERT INTO fault_runs (name) VALUES (%s)", [name])
    return name


@job(max_attempts=2, backoff=[0])
def count_run_for(name, seconds):
    """``count_run``, then runs for ``seconds``."""
    count_run.run([name], {})
    time.sleep(seconds)
    return name


def runs_of(name=None):
    with connection.cursor() as cursor:
        _create_runs_table(cursor)
        if name is None:
            cursor.execute("SELECT name, COUNT(*) FROM fault_runs GROUP BY name")
            return dict(cursor.fetchall())
        cursor.execute("SELECT COUNT(*) FROM fault_runs WHERE name = %s", [name])
        return cursor.fetchone()[0]


@job(rate_limit="2/s")
def limited(n):
    return n


@job(rate_limit="1/m", rate_key=lambda customer, n: customer)
def per_customer(customer, n):
    return f"{customer}:{n}"


@job(max_attempts=2, backoff=[0])
def gated_first_attempt(gate, outcome):
    """Its first attempt waits (two minutes at most) until the file ``gate`` exists, then reports its
    progress and fails or returns as ``outcome`` ("fail" or "return") says; later attempts return their
    number at once."""
    _announce()
    attempt = current_job().attempts
    if attempt == 1:
        deadline = time.monotonic() + 120
        while not os.path.exists(gate) and time.monotonic() < deadline:
            time.sleep(0.05)
        set_progress(50, "attempt 1 went on past its gate")
        if outcome == "fail":
            raise RuntimeError("attempt 1 failed past its gate")
    return attempt


@job(max_attempts=2, backoff=[0])
def fail_once_its_rq_job_is_gone():
    """Its first attempt waits (30 s at most) until Redis no longer holds its RQ job (the run of another
    copy of it ended it), then fails; the second returns its number."""
    attempt = current_job().attempts
    if attempt == 1:
        redis = jobs_connection.get_connection("default")
        deadline = time.monotonic() + 30
        while redis.exists(RQJob.key_for(str(current_job().pk))) and time.monotonic() < deadline:
            time.sleep(0.01)
        raise RuntimeError("attempt 1 failed once its RQ job was gone")
    return attempt


def _shut_redis_down():
    with contextlib.suppress(RedisError):  # Redis closes the connection as it goes
        jobs_connection.get_connection("default").shutdown(nosave=True)


@job(max_attempts=2, backoff=[0])
def stop_redis_then_fail(name):
    """Its first attempt shuts Redis down and fails: the worker ends it, a retry, with no Redis to take
    the retry. The second counts its run."""
    if current_job().attempts == 1:
        _shut_redis_down()
        raise RuntimeError(f"attempt 1 of {name} failed with Redis gone")
    return count_run(name)


@job(max_attempts=1)
def stop_redis_then_fail_for_good(name):
    """Shuts Redis down, then fails its only attempt: the worker records the failure with no Redis to end
    its RQ job."""
    count_run(name)
    _shut_redis_down()
    raise RuntimeError(f"{name} failed with Redis gone")


@job(max_attempts=1)
def stop_redis_then_return(name):
    """Shuts Redis down, then succeeds: the worker records its end with no Redis to end its RQ job."""
    _shut_redis_down()
    return count_run(name)


class ClaimingAheadWorker(ThreadedWorker):
    """The threaded worker with 4 threads that claims a job ahead of them from the start (the most it
    may: a quarter of the threads), and takes none ahead unclaimed: it holds five jobs."""

    concurrency = 4
    claim_ahead = 1000.0


class TakingAheadWorker(ThreadedWorker):
    """The threaded worker with 2 threads that takes as many jobs ahead as it may (64): a batch holds
    running jobs and jobs waiting for a thread."""

    concurrency = int(os.environ.get("TAKING_AHEAD_THREADS", "2"))
    take_ahead = 1000.0


@job(max_attempts=1)
def exits(code):
    """Ends with ``sys.exit(code)``: a ``SystemExit``, which is not an ``Exception``."""
    raise SystemExit(code)


@job(max_attempts=1)
def interrupts():
    """Raises ``KeyboardInterrupt`` of its own (no signal came)."""
    raise KeyboardInterrupt("raised by the job")


@job(max_attempts=1)
async def awaits_a_cancelled_task():
    """An ``async def`` job whose awaited task is cancelled: ``asyncio.CancelledError`` leaves it."""
    import asyncio

    task = asyncio.ensure_future(asyncio.sleep(10))
    asyncio.get_running_loop().call_later(0.01, task.cancel)
    await task
