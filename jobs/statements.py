"""The ledger's hot statements, written once per database rather than built by the ORM for every job.

A worker sends two statements per job (the claim and the finish, the SQL of ``jobs.transitions.claim``
and ``jobs.transitions.finish``, which alone call them), or two per batch of jobs where the database
answers an UPDATE with its rows (``claim_many`` and ``finish_many``); a batch enqueue sends one. Building
such small statements through the ORM (filters, expressions, the compiler) costs several times what the
database spends running them. The SQL here is what the ORM would send; the values are prepared by the
model's own fields (``get_db_prep_save``), so they are stored exactly as the ORM stores them. The
statements go through Django's cursor, so ``CaptureQueriesContext`` and execute wrappers see them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field

from .conf import jobs_settings
from .models import WAITING, Job, Status

_meta = Job._meta
#: The model's concrete fields by name (and by attribute name, for the foreign key).
_FIELDS: dict[str, Field] = {
    **{field.name: field for field in _meta.concrete_fields},
    **{field.attname: field for field in _meta.concrete_fields},
}


_ATTNAMES = [field.attname for field in _meta.concrete_fields]


def _column(field: Field) -> str:
    column = field.column
    if column is None:
        raise ValueError(f"{field.name} has no column")
    return column


#: The statements' SQL by database vendor: a few entries whatever the number of connections or threads.
_sql_cache: dict[tuple[str, str], str] = {}


def _sql(connection: BaseDatabaseWrapper, statement: str) -> str:
    """The SQL of ``statement`` for the connection's database vendor, built once per vendor."""
    key = (connection.vendor, statement)
    sql = _sql_cache.get(key)
    if sql is None:
        sql = _sql_cache[key] = _build(connection.vendor, connection.ops.quote_name, statement)
    return sql


def _build(vendor: str, quote_name: Callable[[str], str], statement: str) -> str:

    def col(name: str) -> str:
        return quote_name(_column(_FIELDS[name]))

    # Only the model's own table and column names, quoted, go into the text; every value is a parameter.
    table = quote_name(_meta.db_table)
    if statement == "claim":
        waiting = ", ".join(["%s"] * len(WAITING))
        return (
            f"UPDATE {table} SET {col('status')} = %s, {col('started_at')} = %s, "  # noqa: S608
            f"{col('finished_at')} = NULL, {col('worker_name')} = %s, "
            f"{col('progress')} = %s, {col('progress_message')} = %s, "
            f"{col('attempts')} = {col('attempts')} + 1, {col('undispatched_since')} = NULL "
            f"WHERE {col('id')} = %s AND {col('status')} IN ({waiting})"
            + (f" RETURNING {col('attempts')}" if _returns_from_update(vendor) else "")
        )
    if statement == "attempts":
        return f"SELECT {col('attempts')} FROM {table} WHERE {col('id')} = %s"  # noqa: S608
    if statement == "finish":
        return (
            f"UPDATE {table} SET {col('status')} = %s, {col('finished_at')} = %s, "  # noqa: S608
            f"{col('result')} = %s, {col('progress')} = %s "
            f"WHERE {col('id')} = %s AND {col('status')} = %s AND {col('attempts')} = %s "
            f"AND {col('has_dependents')} = %s"
        )
    if statement == "insert":
        columns = ", ".join(quote_name(_column(field)) for field in _meta.concrete_fields)
        values = ", ".join(["%s"] * len(_meta.concrete_fields))
        return f"INSERT INTO {table} ({columns}) VALUES ({values})"  # noqa: S608
    raise ValueError(statement)


def _returns_from_update(vendor: str) -> bool:
    """Whether the database answers an UPDATE with the rows it changed (``RETURNING``): PostgreSQL, and
    SQLite from 3.35 (the version from which Django's SQLite backend returns columns from an INSERT)."""
    if vendor == "postgresql":
        return True
    if vendor == "sqlite":
        return sqlite3.sqlite_version_info >= (3, 35)
    return False


def _prepare(name: str, value: Any, connection: BaseDatabaseWrapper) -> Any:
    return _FIELDS[name].get_db_prep_save(value, connection)


#: Appended to a PostgreSQL UPDATE that runs as its own transaction, it makes that one transaction's
#: commit asynchronous: PostgreSQL decides at commit by the value then in effect, and a local value
#: ends with the transaction (``JOBS["LEDGER_ASYNC_COMMIT"]``).
ASYNC_COMMIT = " RETURNING set_config('synchronous_commit', 'off', true)"


def _async_commit(connection: BaseDatabaseWrapper) -> bool:
    return bool(
        jobs_settings.LEDGER_ASYNC_COMMIT
        and connection.vendor == "postgresql"
        and connection.get_autocommit()
    )


def _execute(alias: str, statement: str, params: Sequence[Any]) -> int:
    connection = connections[alias]
    sql = _sql(connection, statement)
    if _async_commit(connection):
        sql += ASYNC_COMMIT
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


#: A claimed attempt's progress and message: its own, not those a failed attempt before it reported.
_NEW_ATTEMPT_PROGRESS = (0.0, "")


def claim(alias: str, pk: Any, worker_name: str, started_at: datetime) -> int | None:
    """Mark a waiting job started (one UPDATE); returns the attempt number it now runs, or None when
    it is no longer waiting.

    Where the database cannot answer an UPDATE with its row (see ``_returns_from_update``), a SELECT of
    the attempt follows a claim that won.
    """
    connection = connections[alias]
    pk = _prepare("id", pk, connection)
    params = [
        Status.STARTED.value,
        _prepare("started_at", started_at, connection),
        worker_name,
        *_NEW_ATTEMPT_PROGRESS,
        pk,
        *(status.value for status in WAITING),
    ]
    sql = _sql(connection, "claim")
    returning = _returns_from_update(connection.vendor)
    if _async_commit(connection):
        sql += ", " + ASYNC_COMMIT.removeprefix(" RETURNING ")
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        if returning:
            row = cursor.fetchone()
            return None if row is None else int(row[0])
        if not cursor.rowcount:
            return None
        cursor.execute(_sql(connection, "attempts"), [pk])
        return int(cursor.fetchone()[0])


def finish(alias: str, pk: Any, attempt: int, result: Any, finished_at: datetime) -> bool:
    """Mark a job finished with its result (one UPDATE), if it is still started by ``attempt`` and no
    other job waits for it (``jobs.transitions.finish`` finishes those with their dependents' release)."""
    connection = connections[alias]
    params = [
        Status.FINISHED.value,
        _prepare("finished_at", finished_at, connection),
        _prepare("result", result, connection),
        _prepare("progress", 100, connection),
        _prepare("id", pk, connection),
        Status.STARTED.value,
        attempt,
        _prepare("has_dependents", False, connection),
    ]
    return _execute(alias, "finish", params) > 0


def returns_from_update(alias: str) -> bool:
    """Whether ``claim_many`` and ``finish_many`` can say which rows they changed on this database."""
    return _returns_from_update(connections[alias].vendor)


def claim_many(alias: str, pks: Sequence[Any], worker_name: str, started_at: datetime) -> dict[str, int]:
    """Mark the waiting jobs among ``pks`` started (one UPDATE); returns the attempt each now runs, by id
    (as text). Only where ``returns_from_update``."""
    connection = connections[alias]
    table, col = _names(connection)
    waiting = ", ".join(["%s"] * len(WAITING))
    ids = ", ".join(["%s"] * len(pks))
    sql = (
        f"UPDATE {table} SET {col('status')} = %s, {col('started_at')} = %s, "  # noqa: S608
        f"{col('finished_at')} = NULL, {col('worker_name')} = %s, "
        f"{col('progress')} = %s, {col('progress_message')} = %s, "
        f"{col('attempts')} = {col('attempts')} + 1, {col('undispatched_since')} = NULL "
        f"WHERE {col('id')} IN ({ids}) AND {col('status')} IN ({waiting}) "
        f"RETURNING {col('id')}, {col('attempts')}"
    )
    if _async_commit(connection):
        sql += ", " + ASYNC_COMMIT.removeprefix(" RETURNING ")
    params = [
        Status.STARTED.value,
        _prepare("started_at", started_at, connection),
        worker_name,
        *_NEW_ATTEMPT_PROGRESS,
        *(_prepare("id", pk, connection) for pk in pks),
        *(status.value for status in WAITING),
    ]
    id_field = _FIELDS["id"]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    return {str(id_field.to_python(row[0])): int(row[1]) for row in rows}


def finish_many(alias: str, finished: Sequence[tuple[Any, int, Any, datetime]]) -> set[str]:
    """Mark jobs finished with their results (one UPDATE), each if it is still started by its attempt and
    no other job waits for it (as ``finish``); ``finished`` holds (id, attempt, result, finished_at).
    Returns the ids (as text) that it marked. Only where ``returns_from_update``."""
    connection = connections[alias]
    table, col = _names(connection)
    postgresql = connection.vendor == "postgresql"
    # PostgreSQL types the values from their first row; casts keep a NULL result a json value.
    row = "(%s::uuid, %s::integer, %s::jsonb, %s::timestamptz)" if postgresql else "(%s, %s, %s, %s)"
    values = ", ".join([row] * len(finished))
    sql = (
        f"WITH done(id, attempt, result, finished_at) AS (VALUES {values}) "  # noqa: S608
        f"UPDATE {table} SET {col('status')} = %s, {col('finished_at')} = done.finished_at, "
        f"{col('result')} = done.result, {col('progress')} = %s FROM done "
        f"WHERE {table}.{col('id')} = done.id AND {table}.{col('attempts')} = done.attempt "
        f"AND {table}.{col('status')} = %s AND {table}.{col('has_dependents')} = %s "
        f"RETURNING {table}.{col('id')}"
    )
    if _async_commit(connection):
        sql += ", " + ASYNC_COMMIT.removeprefix(" RETURNING ")
    params: list[Any] = []
    for pk, attempt, result, finished_at in finished:
        params += [
            _prepare("id", pk, connection),
            attempt,
            _prepare("result", result, connection),
            _prepare("finished_at", finished_at, connection),
        ]
    params += [
        Status.FINISHED.value,
        _prepare("progress", 100, connection),
        Status.STARTED.value,
        _prepare("has_dependents", False, connection),
    ]
    id_field = _FIELDS["id"]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    return {str(id_field.to_python(row[0])) for row in rows}


def _names(connection: BaseDatabaseWrapper) -> tuple[str, Callable[[str], str]]:
    quote_name = connection.ops.quote_name

    def col(name: str) -> str:
        return quote_name(_column(_FIELDS[name]))

    return quote_name(_meta.db_table), col


def insert_batch(alias: str, common: dict[str, Any], rows: Iterable[dict[str, Any]]) -> list[Job]:
    """Insert jobs that share the values in ``common`` and differ in those each row gives (every row
    the same fields, its ``id`` among them) with one statement whatever their number: on PostgreSQL an
    ``INSERT ... SELECT`` from arrays of the varying values (``UNNEST``), elsewhere ``executemany``.
    Returns the records.

    Fields that neither gives take their default; each shared value is prepared once (``_prepared``).
    """
    connection = connections[alias]
    rows = list(rows)
    if not rows:
        return []
    given = rows[0].keys()
    if _meta.pk.attname not in given:
        raise ValueError("each row of a batch gives its id")
    shared = {
        field.attname: common[field.attname] if field.attname in common else field.get_default()
        for field in _meta.concrete_fields
        if field.attname not in given
    }
    prepared = {name: _prepared(connection, name, value) for name, value in shared.items()}
    records = [
        Job.from_db(alias, _ATTNAMES, [row[name] if name in row else shared[name] for name in _ATTNAMES])
        for row in rows
    ]
    columns = {
        name: [_FIELDS[name].get_db_prep_save(row[name], connection) for row in rows]
        for name in _ATTNAMES
        if name in given
    }
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql" and len(rows) > 1:
            cursor.execute(
                _unnest_sql(connection, tuple(columns)),
                [*prepared.values(), *columns.values()],
            )
        else:
            sql = _sql(connection, "insert")
            params = [
                [columns[name][index] if name in columns else prepared[name] for name in _ATTNAMES]
                for index in range(len(rows))
            ]
            if len(params) == 1:
                cursor.execute(sql, params[0])
            else:
                cursor.executemany(sql, params)
    return records


#: Values of the types whose prepared value ``_prepared`` keeps (statuses, as text enums, are text).
_KEPT_TYPES = (str, int, type(None))
#: Their prepared values, by database, field, type and value: a job function's enqueues prepare the
#: same few values (its name, queue, status, attempts, timeout) again and again.
_prepared_cache: dict[tuple[str, str, type, Any], Any] = {}


def _prepared(connection: BaseDatabaseWrapper, name: str, value: Any) -> Any:
    """``get_db_prep_save`` of the field ``name``, kept for a text, a number or None."""
    if not isinstance(value, _KEPT_TYPES):
        return _FIELDS[name].get_db_prep_save(value, connection)
    key = (connection.alias, name, type(value), value)
    try:
        return _prepared_cache[key]
    except KeyError:
        if len(_prepared_cache) >= 10_000:
            _prepared_cache.clear()
        prepared = _prepared_cache[key] = _FIELDS[name].get_db_prep_save(value, connection)
        return prepared


_unnest_cache: dict[tuple[str, tuple[str, ...]], str] = {}


def _unnest_sql(connection: BaseDatabaseWrapper, varying: tuple[str, ...]) -> str:
    """PostgreSQL: one INSERT of any number of rows, the shared values as scalars and the varying ones
    as one array per column (as Django's own bulk insert does on PostgreSQL, without repeating the
    shared values in every row)."""
    key = (connection.alias, varying)
    if key not in _unnest_cache:
        quote_name = connection.ops.quote_name

        def cast(field: Any) -> str:
            # Without its length, as Django does for its arrays: varchar[] rather than varchar(255)[].
            return field.db_type(connection).split("(")[0]

        fields = _meta.concrete_fields
        columns = ", ".join(quote_name(_column(field)) for field in fields)
        select = ", ".join(
            f"u.{quote_name(_column(field))}" if field.attname in varying else f"(%s)::{cast(field)}"
            for field in fields
        )
        arrays = ", ".join(f"(%s)::{cast(_FIELDS[name])}[]" for name in varying)
        names = ", ".join(quote_name(_column(_FIELDS[name])) for name in varying)
        _unnest_cache[key] = (
            f"INSERT INTO {quote_name(_meta.db_table)} ({columns}) "  # noqa: S608
            f"SELECT {select} FROM UNNEST({arrays}) AS u({names})"
        )
    return _unnest_cache[key]
