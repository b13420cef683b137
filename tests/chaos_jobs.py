"""Job functions for the database chaos test, importable by worker processes.

Each records its run in Redis (the database is the thing under fire, and job code that reads it would
fail for its own reasons): a list per job name, one entry per run, holding the attempt the run was given
by its claim. None of them reads the database.
"""

import time

from jobs import job
from jobs.context import current_attempt
from jobs.transport import connection as jobs_connection

PREFIX = "chaos:"


def _redis():
    return jobs_connection.get_connection("default")


def _record_run(name):
    _redis().rpush(f"{PREFIX}runs:{name}", current_attempt() or 0)


def runs_of(name):
    """The attempts each run of ``name`` was given, in the order the runs started."""
    return [int(attempt) for attempt in _redis().lrange(f"{PREFIX}runs:{name}", 0, -1)]


@job(max_attempts=3, backoff=[0])
def plain(name, seconds):
    _record_run(name)
    time.sleep(seconds)
    return name


@job(max_attempts=3, backoff=[0])
def fails_once(name):
    """Fails its first attempt, succeeds on any later one."""
    _record_run(name)
    if current_attempt() == 1:
        raise RuntimeError(f"first attempt of {name} fails, as it should")
    return name


@job(max_attempts=3, backoff=[0])
def link(chain, position):
    """A link of a chain: notes its position in the chain's list as it runs."""
    _record_run(f"{chain}-{position}")
    _redis().rpush(f"{PREFIX}chain:{chain}", position)
    time.sleep(0.02)
    return position


def chain_order(chain):
    return [int(position) for position in _redis().lrange(f"{PREFIX}chain:{chain}", 0, -1)]


@job(max_attempts=3, backoff=[0])
def member(group, n):
    """A member of a group: notes itself in the group's set as it runs."""
    _record_run(f"{group}-{n}")
    _redis().sadd(f"{PREFIX}group:{group}", n)
    time.sleep(0.05)
    return n


@job(max_attempts=3, backoff=[0])
def callback(group):
    """The group's callback: notes how many members had run when it ran."""
    _record_run(f"{group}-callback")
    _redis().rpush(f"{PREFIX}callback:{group}", _redis().scard(f"{PREFIX}group:{group}"))
    return group


def members_seen_by_callback(group):
    """For each run of the callback, how many members of its group had run by then."""
    return [int(count) for count in _redis().lrange(f"{PREFIX}callback:{group}", 0, -1)]
