"""Bounded waits on row locks for the upkeep: a worker's maintenance tick, the ``jobs_*`` management
commands, and a forking worker recording its killed work horse.

A process stopped (SIGSTOP, a paused VM, a host cut off) inside a transaction keeps that transaction's
row locks until its connection closes: for as long as it is stopped. An upkeep statement that needs one
of those rows (the reaper abandoning the stopped worker's job, say) would wait as long, and the worker
whose maintenance sent it would never take a job again. On PostgreSQL the tick therefore runs with a
``lock_timeout`` of ``JOBS["ROW_LOCK_TIMEOUT"]`` (``bounded_lock_waits``), and the passes that handle
records one by one skip a record whose lock they could not get until a later pass (``skip_if_locked``),
so that one locked record does not hold the others back. The job's own code never runs with that
setting: it is reset when the tick ends. A management command runs the same upkeep with the same bound
(``for_command``), and ends in a ``CommandError`` that names what it skipped, rather than hang.

SQLite has no row locks: a writer stopped inside its transaction holds the whole database, which no
setting here can bound (the README says so).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import math
import weakref
from collections.abc import Iterable, Iterator

from django.core.management.base import CommandError
from django.db import DatabaseError, connections, router
from django.db.backends.base.base import BaseDatabaseWrapper

from ..conf import jobs_settings
from ..models import Dependency, Job, Schedule

logger = logging.getLogger("jobs")

#: PostgreSQL's SQLSTATE for a lock not obtained within ``lock_timeout`` (``lock_not_available``).
LOCK_NOT_AVAILABLE = "55P03"
#: The records already said to be skipped, so that a record locked for hours is said once.
_said: set[tuple[str, str]] = set()
#: The records skipped within the innermost ``bounded_lock_waits`` block, for a caller that reports them.
_skipped: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("jobs_skipped", default=None)
#: The database connections bounded for as long as they live (``keep_bounded``), which a block of
#: ``bounded_lock_waits`` leaves bounded.
_kept: weakref.WeakSet = weakref.WeakSet()


def timeout() -> float:
    """Seconds a statement of the upkeep waits for a row lock (``JOBS["ROW_LOCK_TIMEOUT"]``). Another
    live process holds one for milliseconds; one held longer belongs to a process that is stopped or cut
    off, and the record waits for a later pass."""
    return float(jobs_settings.ROW_LOCK_TIMEOUT)


def databases() -> list[str]:
    """The databases the upkeep writes to."""
    return list(dict.fromkeys(router.db_for_write(model) for model in (Job, Dependency, Schedule)))


@contextlib.contextmanager
def bounded_lock_waits(aliases: Iterable[str] | None = None) -> Iterator[list[str]]:
    """Within the block, the statements sent on these databases' connections (the upkeep's, by default;
    PostgreSQL only) wait at most ``timeout()`` seconds for a lock; afterwards, the connections' own
    setting is back. Yields the records the block skipped (``skip_if_locked``), named."""
    skipped: list[str] = []
    token = _skipped.set(skipped)
    try:
        with contextlib.ExitStack() as stack:
            for alias in databases() if aliases is None else aliases:
                if connections[alias].vendor == "postgresql":
                    stack.enter_context(_bounded(connections[alias]))
            yield skipped
    finally:
        _skipped.reset(token)


@contextlib.contextmanager
def _bounded(conn: BaseDatabaseWrapper) -> Iterator[None]:
    """Set for the session rather than for a transaction, since upkeep also sends single statements
    outside any; ``RESET`` returns to the connection's configured default. A connection whose reset
    fails is closed, so that nothing runs on it with the bound."""
    conn.ensure_connection()
    if conn.connection in _kept:
        yield
        return
    _set_bound(conn)
    try:
        yield
    finally:
        try:
            with conn.cursor() as cursor:
                cursor.execute("RESET lock_timeout")
        except DatabaseError:
            conn.close()


def _set_bound(conn: BaseDatabaseWrapper) -> None:
    milliseconds = max(1, math.ceil(timeout() * 1000))  # 0 would be no bound at all
    with conn.cursor() as cursor:
        cursor.execute(f"SET lock_timeout = '{milliseconds}ms'")


def keep_bounded(alias: str) -> None:
    """This thread's connection to ``alias`` (PostgreSQL only) waits at most ``timeout()`` for a row lock
    for as long as it lives: one statement per connection made. For a thread that runs no job's code:
    the threaded worker's main thread, which claims the jobs, and its recorder, which finishes them. A
    lock held by a stopped process then fails the claim (the jobs are put off) or the finish (tried
    again, then left to the reaper), rather than hold up every job after it."""
    conn = connections[alias]
    if conn.vendor != "postgresql":
        return
    conn.ensure_connection()
    if conn.connection not in _kept:
        _set_bound(conn)
        _kept.add(conn.connection)


def release(alias: str) -> None:
    """This thread's connection to ``alias``, bounded by ``keep_bounded``, back to its own setting."""
    conn = connections[alias]
    if conn.connection is None or conn.connection not in _kept:
        return
    _kept.discard(conn.connection)
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
        skipped = _skipped.get()
        if skipped is not None and item not in skipped:
            skipped.append(item)
        if key not in _said:
            _said.add(key)
            logger.warning(
                "%s: %s skipped: another process has held it locked for over %ss (stopped or cut off "
                "inside a transaction?); it is tried again at the next passes",
                what,
                item,
                f"{timeout():g}",
            )
        return
    if key in _said:
        _said.discard(key)
        logger.info("%s: %s, skipped while locked, is no longer locked", what, item)


@contextlib.contextmanager
def for_command(using: str | None = None) -> Iterator[None]:
    """A management command's upkeep, which an operator or cron runs: bounded as a worker's tick is, on
    ``using`` (the upkeep's databases, by default). It ends in a ``CommandError`` (a non-zero exit)
    rather than wait for a process that may never let go: after the block, when it skipped records
    (it did the rest); at once, when a statement gave up waiting (that statement changed nothing)."""
    why = (
        f"for over {timeout():g}s (stopped or cut off inside a transaction? pg_stat_activity shows it "
        "'idle in transaction'); run the command again later"
    )
    with bounded_lock_waits(None if using is None else [using]) as skipped:
        try:
            yield
        except DatabaseError as exc:
            if not is_lock_timeout(exc):
                raise
            raise CommandError(
                f"Gave up on a step that waited for a row lock (the step changed nothing): another "
                f"process has held a row this command needs {why}."
            ) from exc
    if skipped:
        named = ", ".join(skipped[:20]) + (", ..." if len(skipped) > 20 else "")
        raise CommandError(
            f"{len(skipped)} record(s) skipped, the others done ({named}): another process has held them "
            f"locked {why}."
        )
