"""The worker's own statements on a database connection kept between jobs (``CONN_MAX_AGE``) that died
meanwhile (the database restarted or failed over, its backend was killed): Django finds such a
connection dead only when a statement fails on it, and that statement would be a job's claim or the
record of its end. It is sent once more, on a new connection."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from django.db import DatabaseError, connections

T = TypeVar("T")


def once_more_if_the_connection_died(alias: str, statement: Callable[[], T]) -> T:
    """``statement()``; if it fails and leaves the connection of ``alias`` unusable (outside a
    transaction), ``statement()`` again on a new connection."""
    try:
        return statement()
    except DatabaseError:
        connection = connections[alias]
        if connection.in_atomic_block or (connection.connection is not None and connection.is_usable()):
            raise
        connection.close()
        return statement()
