"""Job functions for the rolling-restart test, importable by worker processes.

As ``tests.chaos_jobs``, each records its run in Redis (a list per job name, one entry per run), and none
reads the database; each entry holds the attempt the run was given by its claim, the process that ran it
and when it started, so that a job run twice says where: a duplicate is allowed only in a worker that was
killed or stopped cold while it ran the job.
"""

import json
import os
import time
from typing import NamedTuple

from jobs import job
from jobs.context import current_attempt
from jobs.transport import connection as jobs_connection

PREFIX = "restart:"
#: Seconds from which a job counts as long (``work``).
LONG = 0.5


class RunOf(NamedTuple):
    attempt: int
    pid: int
    started: float  # time.time()


def _redis():
    return jobs_connection.get_connection("default")


def _record_run(name):
    _redis().rpush(f"{PREFIX}runs:{name}", json.dumps([current_attempt() or 0, os.getpid(), time.time()]))


def runs_of(name):
    """Each run of ``name``, in the order the runs started."""
    return [RunOf(*json.loads(entry)) for entry in _redis().lrange(f"{PREFIX}runs:{name}", 0, -1)]


@job(max_attempts=3, backoff=[0])
def work(name, seconds):
    _record_run(name)
    if seconds < LONG:
        time.sleep(seconds)
        return name
    # A long job says, while it runs, in which process and until when: a test waits for one to cut short.
    key = f"{PREFIX}running:{os.getpid()}"
    _redis().zadd(key, {name: time.time() + seconds})
    try:
        time.sleep(seconds)
    finally:
        _redis().zrem(key, name)
    return name


def running_until(pid, after):
    """How many long jobs the process ``pid`` runs that end after ``after`` (``time.time()``)."""
    return _redis().zcount(f"{PREFIX}running:{pid}", after, "+inf")


@job(max_attempts=3, backoff=[0])
def fails_once(name):
    """Fails its first attempt, succeeds on any later one."""
    _record_run(name)
    if current_attempt() == 1:
        raise RuntimeError(f"first attempt of {name} fails, as it should")
    return name


@job(max_attempts=3, backoff=[0])
def member(group, n, seconds):
    """A member of a group: notes itself in the group's set as it runs."""
    _record_run(f"{group}-{n}")
    time.sleep(seconds)
    _redis().sadd(f"{PREFIX}group:{group}", n)
    return n


@job(max_attempts=3, backoff=[0])
def callback(group):
    """The group's callback: notes how many members had ended when it ran."""
    _record_run(f"{group}-callback")
    _redis().rpush(f"{PREFIX}callback:{group}", _redis().scard(f"{PREFIX}group:{group}"))
    return group


def members_seen_by_callback(group):
    """For each run of the callback, how many members of its group had ended by then."""
    return [int(count) for count in _redis().lrange(f"{PREFIX}callback:{group}", 0, -1)]
