"""Bounded waits on row locks for the upkeep a worker's maintenance tick runs.

A process stopped (SIGSTOP, a paused VM, a host cut off) inside a transaction keeps that transaction's
row locks until its connection closes: for as long as it is stopped. An upkeep statement that needs one
of those rows (the reaper abandoning the stopped worker's job, say) would wait as long, and the worker
whose maintenance sent it would never take a job again. On PostgreSQL the tick therefore runs with a
``lock_timeout`` (``bounded_lock_waits``), and the passes that handle records one by one skip a record
whose lock they could not get until a later pass (``skip_if_locked``), so that one locked record does not
hold the others back. The job's own code never runs with that setting: it is reset when the tick ends.

SQLite has no row locks: a writer stopped inside its transaction holds the whole database, which no
setting here can bound (the README says so).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator

from django.db import DatabaseError, connections, router
from django.db.backends.base.base import BaseDatabaseWrapper

from ..models import Dependency, Job, Schedule

logger = logging.getLogger("jobs")

#: Seconds an upkeep statement waits for a row lock. Another live process holds one for milliseconds;
#: one held longer belongs to a process that is stopped or cut off, and the record waits for a later pass.
LOCK_TIMEOUT = 2
#: PostgreSQL's SQLSTATE for a lock not obtained within ``lock_timeout`` (``lock_not_available``).
LOCK_NOT_AVAILABLE = "55P03"
#: The records already said to be skipped, so that a record locked for hours is said once.
_said: set[tuple[str, str]] = set()


def databases() -> list[str]:
    """The databases the upkeep writes to."""
    return list(dict.fromkeys(router.db_for_write(model) for model in (Job, Dependency, Schedule)))


@contextlib.contextmanager
def bounded_lock_waits(aliases: Iterable[str] | None = None) -> Iterator[None]:
    """Within the block, the statements sent on these databases' connections (the upkeep's, by default;
    PostgreSQL only) wait at most ``LOCK_TIMEOUT`` seconds for a lock; afterwards, the connections' own
    setting is back."""
    with contextlib.ExitStack() as stack:
        for alias in databases() if aliases is None else aliases:
            if connections[alias].vendor == "postgresql":
                stack.enter_context(_bounded(connections[alias]))
        yield


@contextlib.contextmanager
def _bounded(conn: BaseDatabaseWrapper) -> Iterator[None]:
    """Set for the session rather than for a transaction, since upkeep also sends single statements
    outside any; ``RESET`` returns to the connection's configured default. A connection whose reset
    fails is closed, so that nothing runs on it with the bound."""
    with conn.cursor() as cursor:
        cursor.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}s'")
    try:
        yield
    finally:
        try:
            with conn.cursor() as cursor:
                cursor.execute("RESET lock_timeout")
        except DatabaseError:
            conn.close()


def is_lock_timeout(exc: BaseException) -> bool:
    """Whether ``exc`` is a statement that gave up waiting for a lock (PostgreSQL's ``lock_timeout``)."""
    cause = exc.__cause__
    return LOCK_NOT_AVAILABLE in (getattr(cause, "sqlstate", None), getattr(cause, "pgcode", None))


@contextlib.contextmanager
def skip_if_locked(what: str, item: str) -> Iterator[None]:
    """Run the block for one record (``item`` names it: "job <id>"); a lock it could not get within the
    bound ends the block, and the record waits for a later pass (said once, at warning). Any other error
    goes up."""
    key = (what, item)
    try:
        yield
    except DatabaseError as exc:
        if not is_lock_timeout(exc):
            raise
        if key not in _said:
            _said.add(key)
            logger.warning(
                "%s: %s skipped: another process has held it locked for over %ss (stopped or cut off "
                "inside a transaction?); it is tried again at the next passes",
                what,
                item,
                LOCK_TIMEOUT,
            )
        return
    if key in _said:
        _said.discard(key)
        logger.info("%s: %s, skipped while locked, is no longer locked", what, item)
