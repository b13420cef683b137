"""Every change of a job's status, as named transitions: nothing else writes a record's status.

Each transition is one conditional UPDATE, on the record's id and the status it expects (and, once the
record has run, the attempt it belongs to), and says whether it won. One that finds the record in
another state, or at another attempt, changes nothing and returns False (the bulk ones count those as
refused): the caller decides whether that is worth a log line, a count in the admin, or nothing.

=====================  =======  =====================  ========================  ======================
transition             from     to                     who                       condition (and the id)
=====================  =======  =====================  ========================  ======================
(``enqueue()``)        -        queued, scheduled      code, a view, the API     (an INSERT)
``claim``              waiting  started, attempts + 1  the worker, for one run   waiting; gives attempt
``claim_many``         waiting  started, attempts + 1  the worker, for a batch   waiting; gives attempts
``report_progress``    started  started (progress)     job code (set_progress)   started, run's attempt
``finish``             started  finished               the worker: run returned  started, run's attempt
``finish_many``        started  finished               the worker, for a batch   started, each attempt
``fail_attempt``       started  retrying or failed     the worker: run raised    started, run's attempt
``abandon``            started  retrying or failed     the reaper; a forking     started, the attempt
                                                       worker whose horse died   found dead
``retry``              failed   queued                 a person (the admin)      failed, rows locked
``cancel``             waiting  cancelled              a person (the admin)      waiting, rows locked
``mark_undispatched``  waiting  waiting, undispatched  dispatch(): Redis down    waiting
``mark_dispatched``    waiting  waiting, dispatched    the relay, once pushed    waiting
=====================  =======  =====================  ========================  ======================

``waiting`` is queued, scheduled or retrying (``jobs.models.WAITING``).

A stale run (one whose attempt is no longer the record's: the reaper judged it dead and a newer attempt
took the job, or a person acted meanwhile) never overwrites the record: its finish, its failure and its
progress all lose their condition. Its outcome is dropped and logged by the worker rather than kept as
a failed attempt: the history already holds that attempt, written by ``abandon`` when the attempt was
given up, and one attempt with two contradicting rows would mislead more than it tells.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from django.db import router, transaction
from django.db.models import QuerySet
from django.utils import timezone

from . import statements
from .models import WAITING, Job, Status

#: Rows locked and updated per statement by the bulk transitions (SQLite takes at most 999 parameters
#: in older builds).
CHUNK = 500


def _alias(record: Job) -> str:
    return record._state.db or router.db_for_write(Job)


def _this_attempt(record: Job, attempt: int) -> QuerySet[Job]:
    return Job.objects.using(_alias(record)).filter(pk=record.pk, status=Status.STARTED, attempts=attempt)


def claim(record: Job, worker_name: str) -> int | None:
    """waiting -> started, for one run: returns that run's attempt number, or None when the record is
    no longer waiting (cancelled, or taken by another run). One UPDATE (see ``jobs.statements``)."""
    started_at = timezone.now()
    attempt = statements.claim(_alias(record), record.pk, worker_name, started_at)
    if attempt is None:
        return None
    record.status, record.started_at, record.finished_at = Status.STARTED, started_at, None
    record.worker_name, record.undispatched_since, record.attempts = worker_name, None, attempt
    return attempt


def claim_many(records: Sequence[Job], worker_name: str) -> dict[str, int]:
    """waiting -> started, for a batch of runs on one database, in one UPDATE where the database says
    which rows it changed (else one per record): returns each won run's attempt by record id (text)."""
    if not records:
        return {}
    alias = _alias(records[0])
    started_at = timezone.now()
    if statements.returns_from_update(alias):
        won = statements.claim_many(alias, [record.pk for record in records], worker_name, started_at)
    else:
        won = {}
        for record in records:
            attempt = statements.claim(alias, record.pk, worker_name, started_at)
            if attempt is not None:
                won[str(record.pk)] = attempt
    for record in records:
        attempt = won.get(str(record.pk))
        if attempt is not None:
            record.status, record.started_at, record.finished_at = Status.STARTED, started_at, None
            record.worker_name, record.undispatched_since, record.attempts = worker_name, None, attempt
    return won


def finish_many(runs: Sequence[tuple[Job, int, Any]]) -> set[str]:
    """started -> finished, for a batch of (record, attempt, result) on one database, each if its attempt
    still holds the record: one UPDATE where the database says which rows it changed (else one per
    record). Returns the ids (text) of the records it finished."""
    if not runs:
        return set()
    alias = _alias(runs[0][0])
    finished_at = timezone.now()
    if statements.returns_from_update(alias):
        won = statements.finish_many(
            alias, [(record.pk, attempt, result) for record, attempt, result in runs], finished_at
        )
    else:
        won = {
            str(record.pk)
            for record, attempt, result in runs
            if statements.finish(alias, record.pk, attempt, result, finished_at)
        }
    for record, _attempt, result in runs:
        if str(record.pk) in won:
            record.status, record.finished_at, record.result, record.progress = (
                Status.FINISHED,
                finished_at,
                result,
                100,
            )
    return won


def finish(record: Job, attempt: int, result: Any) -> bool:
    """started -> finished with the run's result, if ``attempt`` still holds the record. One UPDATE."""
    finished_at = timezone.now()
    if not statements.finish(_alias(record), record.pk, attempt, result, finished_at):
        return False
    record.status, record.finished_at, record.result, record.progress = (
        Status.FINISHED,
        finished_at,
        result,
        100,
    )
    return True


def report_progress(record: Job, attempt: int, percent: float, message: str) -> bool:
    """started -> started with the run's progress, if ``attempt`` still holds the record."""
    if not _this_attempt(record, attempt).update(progress=percent, progress_message=message):
        return False
    record.progress, record.progress_message = percent, message
    return True


def fail_attempt(
    record: Job,
    attempt: int,
    *,
    error_class: str,
    error_message: str,
    traceback: str,
    retrying: bool,
    delay: float | None = None,
) -> bool:
    """started -> retrying (attempts remain) or failed, if ``attempt`` still holds the record; the
    attempt's error goes into the history (``FailedAttempt``) in the same transaction. ``delay``: seconds
    before the retry is due, when the job asked for it."""
    return _end_attempt(
        record,
        attempt,
        retrying=retrying,
        error_class=error_class,
        error_message=error_message,
        traceback=traceback,
        delay=delay,
    )


def abandon(record: Job, reason: str, *, error_class: str, retrying: bool, delay: float = 0) -> bool:
    """started -> retrying or failed for the attempt the record is at (``record.attempts``, as read by
    the reaper when it judged that attempt's worker dead); ``delay``: seconds before the retry is due."""
    return _end_attempt(
        record,
        record.attempts,
        retrying=retrying,
        error_class=error_class,
        error_message=reason,
        traceback="",
        delay=delay,
    )


def _end_attempt(
    record: Job,
    attempt: int,
    *,
    retrying: bool,
    error_class: str,
    error_message: str,
    traceback: str,
    delay: float | None = None,
) -> bool:
    now = timezone.now()
    fields: dict[str, Any] = {
        "status": Status.RETRYING if retrying else Status.FAILED,
        "finished_at": None if retrying else now,
        "error_class": error_class,
        "error_message": error_message,
        "traceback": traceback,
    }
    if delay is not None:
        fields["scheduled_for"] = now + timedelta(seconds=delay) if delay else None
    with transaction.atomic(using=_alias(record)):
        if not _this_attempt(record, attempt).update(**fields):
            return False
        record.add_failed_attempt(
            number=attempt,
            failed_at=now,
            error_class=error_class,
            error_message=error_message,
            traceback=traceback,
        )
    for name, value in fields.items():
        setattr(record, name, value)
    return True


def retry(queryset: QuerySet[Job], user: Any = None) -> tuple[list[Job], int]:
    """failed -> queued, for the failed records among ``queryset``, by a person.

    The record keeps its id, its attempts count and its failed attempts, so the history shows every run.
    Returns the records changed and how many of those asked for were refused (not failed).
    """
    fields = {
        "status": Status.QUEUED,
        "retried_at": timezone.now(),
        "retried_by": user if getattr(user, "pk", None) else None,
        "finished_at": None,
        "scheduled_for": None,
        "undispatched_since": None,
        "progress": 0,
        "progress_message": "",
        "result": None,
        "error_class": "",
        "error_message": "",
        "traceback": "",
    }
    return _bulk(queryset, (Status.FAILED,), fields)


def cancel(queryset: QuerySet[Job]) -> tuple[list[Job], int]:
    """waiting -> cancelled, for the waiting records among ``queryset``, by a person. A started record
    is refused: its run is not stopped, and its outcome is recorded as usual."""
    return _bulk(queryset, WAITING, {"status": Status.CANCELLED, "finished_at": timezone.now()})


def _bulk(queryset: QuerySet[Job], allowed: Iterable[str], fields: dict[str, Any]) -> tuple[list[Job], int]:
    """Lock the rows that may move (where the database can), move them, and test the status again in
    the UPDATE: two people, or one person's double submit, change a row once."""
    alias = queryset.db
    allowed = tuple(allowed)
    changed: list[Job] = []
    with transaction.atomic(using=alias):
        pks = list(queryset.order_by().values_list("pk", flat=True).distinct())
        for chunk in _chunks(pks):
            rows = list(Job.objects.using(alias).select_for_update().filter(pk__in=chunk, status__in=allowed))
            Job.objects.using(alias).filter(pk__in=[r.pk for r in rows], status__in=allowed).update(**fields)
            for row in rows:
                for name, value in fields.items():
                    setattr(row, name, value)
            changed.extend(rows)
    return changed, len(pks) - len(changed)


def _chunks(items: list) -> Iterator[list]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


def mark_undispatched(records: Sequence[Job], since: datetime) -> int:
    """Waiting records Redis could not take: the relay pushes them later. Returns how many were marked."""
    return _set_undispatched(records, since)


def mark_dispatched(records: Sequence[Job]) -> int:
    """Waiting records the relay has pushed. Returns how many were marked."""
    return _set_undispatched(records, None)


def _set_undispatched(records: Sequence[Job], since: datetime | None) -> int:
    if not records:
        return 0
    marked = (
        Job.objects.using(_alias(records[0]))
        .waiting()
        .filter(pk__in=[r.pk for r in records])
        .update(undispatched_since=since)
    )
    for record in records:
        record.undispatched_since = since
    return marked
