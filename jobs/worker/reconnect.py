"""The worker's own statements on a database connection kept between jobs (``CONN_MAX_AGE``) that died
meanwhile (the database restarted or failed over, its backend was killed): Django finds such a
connection dead only when a statement fails on it, and that statement would be a job's claim or the
record of its end. It is sent once more, on a new connection."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from django.db import DatabaseError, connections

T = TypeVar("T")


def once_more_if_the_connection_died(
    alias: str, statement: Callable[[], T], again: Callable[[], T] | None = None
) -> T:
    """``statement()``; if it fails on a connection of ``alias`` that was open before it and is dead
    now (Django may already have closed it, or opened another, on the way out of a transaction),
    ``statement()`` again on a new connection. Inside a transaction of the caller's, never.

    The connection may have died after the database committed the statement, before its answer came
    back: ``again``, when given, is what is sent the second time, a call that first asks whether the
    statement was written (a claim or a finish must not lose to its own first send). A connection made
    for the statement loses its answer as well as a kept one (with ``CONN_MAX_AGE`` 0, every claim is on
    a connection made for it): with ``again``, it is made first, and counts as open before it (a
    connect that fails sent nothing, and is not tried again here)."""
    connection = connections[alias]
    if again is not None and not connection.in_atomic_block:
        connection.ensure_connection()
    kept = connection.connection
    try:
        return statement()
    except DatabaseError:
        if kept is None or connection.in_atomic_block:
            raise
        if connection.connection is kept and connection.is_usable():
            raise  # the connection lives: the statement itself failed
        connection.close()
        return (again or statement)()
