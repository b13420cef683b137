"""Every change of a job's status, as named transitions: nothing else writes a record's status.

Each transition is one conditional UPDATE, on the record's id and the status it expects (and, once the
record has run, the attempt it belongs to), and says whether it won. One that finds the record in
another state, or at another attempt, changes nothing and returns False (the bulk ones count those as
refused): the caller decides whether that is worth a log line, a count in the admin, or nothing.

=====================  ========  =====================  ========================  ===============
``waiting`` is queued, scheduled or retrying (``jobs.models.WAITING``); ``deferred`` waits for other
jobs to end and is not in Redis.

Workflows. A job enqueued with ``depends_on`` is recorded ``deferred`` with one ``Dependency`` row per
job it waits for and a count of those not yet done. The transitions that end a job (``finish``; a
failure for good in ``fail_attempt`` and ``abandon``; ``cancel``) tell its dependents in the same
transaction: each edge is marked done once (a conditional UPDATE on locked rows) and the dependent's
count goes down by one with it, so the count always equals its edges not done, and the one transaction
that brings it to zero releases the dependent, however many dependencies end at once on however many
workers. A worker killed before that transaction commits leaves the dependency started (the reaper
retries it); killed after, it leaves a released record that Redis does not hold yet, which the
reconciler pushes (``released_at`` counts as its enqueue time). A released job is pushed by ``push``
(``jobs.dispatch.dispatch``, given by the caller) when the transaction commits.

RQ's own dependencies (``depends_on``, its ``DeferredJobRegistry``, rq 3's ``READY_TO_ENQUEUE``) are
not used, because in them the truth would be Redis's, not the ledger's: RQ releases dependents when its
job returns, which a run that lost its claim or a stale attempt also does; it never fails a dependent
with the reason when a dependency fails; a retry from the ledger deletes RQ's job and pushes a new one
of the same id, which drops RQ's dependents set; and its bookkeeping lives only in Redis, so a Redis
that loses its data loses every workflow, which the reconciler could only rebuild from the database.

A stale run (one whose attempt is no longer the record's: the reaper judged it dead and a newer attempt
took the job, or a person acted meanwhile) never overwrites the record: its finish, its failure and its
progress all lose their condition. Its outcome is dropped and logged by the worker rather than kept as
a failed attempt: the history already holds that attempt, written by ``abandon`` when the attempt was
given up, and one attempt with two contradicting rows would mislead more than it tells.
"""

from __future__ import annotations

import functools
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, router, transaction
from django.db.models import Case, Exists, F, OuterRef, Q, QuerySet, Value, When
from django.utils import timezone

from . import signals, statements
from .exceptions import DEPENDENCY_FAILED, DependencyFailed
from .models import ACTIVE, CANCELLABLE, Dependency, FailedAttempt, Job, Status

#: What pushes released jobs to Redis once their transaction commits (``jobs.dispatch.dispatch``).
Push = Callable[[Sequence[Job]], object]
#: The longest reason written on a job that a dependency's end failed or cancelled.
MAX_REASON = 2000

#: Rows locked and updated per statement by the bulk transitions (SQLite takes at most 999 parameters
#: in older builds).
CHUNK = 500


def _alias(record: Job) -> str:
    return record._state.db or router.db_for_write(Job)


def _this_attempt(record: Job, attempt: int) -> QuerySet[Job]:
    return Job.objects.using(_alias(record)).filter(pk=record.pk, status=Status.STARTED, attempts=attempt)


def _as_claimed(record: Job, worker_name: str, started_at: datetime, attempt: int) -> None:
    """The record in memory as a won claim wrote it (``statements.claim``)."""
    record.status, record.started_at, record.finished_at = Status.STARTED, started_at, None
    record.worker_name, record.undispatched_since, record.attempts = worker_name, None, attempt
    record.progress, record.progress_message = 0, ""


def _as_finished(record: Job, result: Any, finished_at: datetime) -> None:
    """The record in memory as a won finish wrote it."""
    record.status, record.finished_at = Status.FINISHED, finished_at
    record.result, record.progress = result, 100


def claim(record: Job, worker_name: str, started_at: datetime | None = None) -> int | None:
    """waiting -> started, for one run: returns that run's attempt number, or None when the record is
    no longer waiting (cancelled, or taken by another run). One UPDATE (see ``jobs.statements``)."""
    started_at = started_at or timezone.now()
    attempt = statements.claim(_alias(record), record.pk, worker_name, started_at)
    if attempt is None:
        return None
    _as_claimed(record, worker_name, started_at, attempt)
    return attempt


def attempt_claimed_by(record: Job, worker_name: str, started_at: datetime | None = None) -> int | None:
    """The attempt of ``record`` that ``worker_name`` holds, if the record is started by it (by the claim
    made at ``started_at``, when given): what a claim interrupted by an exception, or whose answer was
    lost with its connection, had written, if it had."""
    if not worker_name:
        return None
    attempts = Job.objects.using(_alias(record)).filter(
        pk=record.pk, status=Status.STARTED, worker_name=worker_name
    )
    if started_at is not None:
        attempts = attempts.filter(started_at=started_at)
    attempt = attempts.values_list("attempts", flat=True).first()
    if attempt is not None and started_at is not None:
        _as_claimed(record, worker_name, started_at, attempt)
    return attempt


def claim_many_again(records: Sequence[Job], worker_name: str, started_at: datetime) -> dict[str, int]:
    """``claim_many`` sent once more after its connection died: the claims its first send wrote (made at
    ``started_at`` by ``worker_name``) are read back as won, and the other records claimed."""
    if not records:
        return {}
    written = Job.objects.using(_alias(records[0])).filter(
        pk__in=[record.pk for record in records],
        status=Status.STARTED,
        worker_name=worker_name,
        started_at=started_at,
    )
    won = {str(pk): attempt for pk, attempt in written.values_list("pk", "attempts")}
    for record in records:
        attempt = won.get(str(record.pk))
        if attempt is not None:
            _as_claimed(record, worker_name, started_at, attempt)
    left = [record for record in records if str(record.pk) not in won]
    return {**won, **claim_many(left, worker_name, started_at)}


def finished_by(record: Job, attempt: int, result: Any, finished_at: datetime) -> bool:
    """Whether ``attempt``'s finish at ``finished_at`` is written: a finish whose answer was lost with
    its connection, asked before it is sent again."""
    written = (
        Job.objects.using(_alias(record))
        .filter(pk=record.pk, status=Status.FINISHED, attempts=attempt, finished_at=finished_at)
        .exists()
    )
    if written:
        _as_finished(record, result, finished_at)
    return written


def claim_many(
    records: Sequence[Job], worker_name: str, started_at: datetime | None = None
) -> dict[str, int]:
    """waiting -> started, for a batch of runs on one database, in one UPDATE where the database says
    which rows it changed (else one per record): returns each won run's attempt by record id (text)."""
    if not records:
        return {}
    alias = _alias(records[0])
    started_at = started_at or timezone.now()
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
            _as_claimed(record, worker_name, started_at, attempt)
    return won


def finish_many(runs: Sequence[tuple[Job, int, Any, datetime | None]], push: Push | None = None) -> set[str]:
    """started -> finished, for a batch of (record, attempt, result, when it ended) on one database, each
    if its attempt still holds the record: one UPDATE where the database says which rows it changed (else
    one per record). A record that other jobs wait for is finished by ``finish``, with their release.
    Returns the ids (text) of the records it finished. A run whose end is not given ended now."""
    if not runs:
        return set()
    alias = _alias(runs[0][0])
    now = timezone.now()
    ended = [(record, attempt, result, finished_at or now) for record, attempt, result, finished_at in runs]
    if statements.returns_from_update(alias):
        won = statements.finish_many(alias, [(record.pk, *rest) for record, *rest in ended])
    else:
        won = {
            str(record.pk)
            for record, attempt, result, finished_at in ended
            if statements.finish(alias, record.pk, attempt, result, finished_at)
        }
    for record, attempt, result, finished_at in ended:
        if str(record.pk) in won:
            _as_finished(record, result, finished_at)
        elif finish(record, attempt, result, push=push, finished_at=finished_at):
            # Not stale: a job with dependents, finished in the transaction that releases them.
            won.add(str(record.pk))
    return won


def finish_many_again(
    runs: Sequence[tuple[Job, int, Any, datetime | None]], push: Push | None = None
) -> set[str]:
    """``finish_many`` sent once more after its connection died: the finishes its first send wrote (each
    run's attempt, at the moment it ended) are read back as won, and the other runs finished."""
    if not runs:
        return set()
    ended = {str(record.pk): (attempt, at) for record, attempt, _, at in runs if at is not None}
    finished = (
        Job.objects.using(_alias(runs[0][0]))
        .filter(pk__in=[record.pk for record, *_ in runs], status=Status.FINISHED)
        .values_list("pk", "attempts", "finished_at")
    )
    written = {str(pk) for pk, attempt, at in finished if ended.get(str(pk)) == (attempt, at)}
    for record, _, result, finished_at in runs:
        if finished_at is not None and str(record.pk) in written:
            _as_finished(record, result, finished_at)
    left = [run for run in runs if str(run[0].pk) not in written]
    return written | finish_many(left, push=push)


def finish(
    record: Job, attempt: int, result: Any, push: Push | None = None, finished_at: datetime | None = None
) -> bool:
    """started -> finished with the run's result, if ``attempt`` still holds the record.

    One UPDATE for a job that no other job waits for. The statement skips a job with dependents: its
    finish and the release of its dependents then go in one transaction (and ``push`` takes the
    released ones after the commit).
    """
    finished_at = finished_at or timezone.now()
    alias = _alias(record)
    if not statements.finish(alias, record.pk, attempt, result, finished_at):
        fields = {"status": Status.FINISHED, "finished_at": finished_at, "result": result, "progress": 100}
        with transaction.atomic(using=alias):
            if not _this_attempt(record, attempt).update(**fields):
                return False
            _settle(alias, [record.pk], Status.FINISHED, push)
    _as_finished(record, result, finished_at)
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
    push: Push | None = None,
    failed_at: datetime | None = None,
) -> bool:
    """started -> retrying (attempts remain) or failed, if ``attempt`` still holds the record; the
    attempt's error goes into the history (``FailedAttempt``) in the same transaction. ``delay``: seconds
    before the retry is due, when the job asked for it. A failure for good tells the job's dependents in
    the same transaction (``push`` takes those it released). ``failed_at``: when it failed (now)."""
    return _end_attempt(
        record,
        attempt,
        retrying=retrying,
        error_class=error_class,
        error_message=error_message,
        traceback=traceback,
        delay=delay,
        push=push,
        now=failed_at,
    )


def fail_attempt_again(
    record: Job,
    attempt: int,
    *,
    error_class: str,
    error_message: str,
    traceback: str,
    retrying: bool,
    failed_at: datetime,
    delay: float | None = None,
    push: Push | None = None,
) -> bool:
    """``fail_attempt`` sent once more after its connection died: won at once if its first send wrote
    this attempt's failure at ``failed_at`` (its answer was lost with the connection), else sent again."""
    failure: dict[str, Any] = {
        "error_class": error_class,
        "error_message": error_message,
        "traceback": traceback,
        "retrying": retrying,
        "delay": delay,
    }
    written = (
        FailedAttempt.objects.using(_alias(record))
        .filter(job_id=record.pk, number=attempt, failed_at=failed_at)
        .exists()
    )
    if not written:
        return fail_attempt(record, attempt, push=push, failed_at=failed_at, **failure)
    for name, value in _failure_fields(failed_at, **failure).items():
        setattr(record, name, value)
    return True


def abandon(
    record: Job,
    reason: str,
    *,
    error_class: str,
    retrying: bool,
    delay: float = 0,
    push: Push | None = None,
) -> bool:
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
        push=push,
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
    push: Push | None = None,
    now: datetime | None = None,
) -> bool:
    now = now or timezone.now()
    fields = _failure_fields(
        now,
        retrying=retrying,
        error_class=error_class,
        error_message=error_message,
        traceback=traceback,
        delay=delay,
    )
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
        if not retrying:
            reason = f"{record.function} ({record.pk}) failed: {error_class}: {error_message}"
            _settle(_alias(record), [record.pk], Status.FAILED, push, {record.pk: reason})
    for name, value in fields.items():
        setattr(record, name, value)
    return True


def _failure_fields(
    now: datetime,
    *,
    retrying: bool,
    error_class: str,
    error_message: str,
    traceback: str,
    delay: float | None,
) -> dict[str, Any]:
    """What an attempt's failure at ``now`` writes on the record."""
    fields: dict[str, Any] = {
        "status": Status.RETRYING if retrying else Status.FAILED,
        "finished_at": None if retrying else now,
        "error_class": error_class,
        "error_message": error_message,
        "traceback": traceback,
    }
    if delay is not None:
        fields["scheduled_for"] = now + timedelta(seconds=delay) if delay else None
    return fields


@dataclass
class Retried:
    """What a person's retry did to the records it was given."""

    changed: list[Job] = field(default_factory=list)
    #: Not failed.
    refused: int = 0
    #: Failed, but another active job holds the record's unique key (or another record of the same
    #: key is retried with it): two active jobs of one key cannot be.
    key_held: int = 0
    #: Failed, but the record's queue is no longer in ``RQ_QUEUES``: no worker could take it.
    queue_unknown: int = 0
    #: Failed jobs that a retried one had failed, which wait for it again (deferred).
    waiting_again: int = 0


def retry(queryset: QuerySet[Job], user: Any = None, selection: QuerySet[Job] | None = None) -> Retried:
    """failed -> queued, for the failed records among ``queryset``, by a person.

    The record keeps its id, its attempts count and its failed attempts, so the history shows every run.
    The jobs that its failure failed wait for it again (deferred), in the same transaction. A record
    that a failed job of ``selection`` (what the person chose, of which ``queryset`` may be one batch;
    by default ``queryset``) failed is left to that job: it waits for it again rather than run at
    once, before it. A record whose unique key another active job holds, or whose queue is not in
    ``RQ_QUEUES``, stays failed and is counted apart.
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
    outcome = Retried()

    def movable(alias: str, rows: list[Job]) -> list[Job]:
        known = [row for row in rows if row.queue in settings.RQ_QUEUES]
        outcome.queue_unknown += len(rows) - len(known)
        held = _keys_held(alias, [(row.pk, row.unique_key) for row in known])
        outcome.key_held += len(held)
        return [row for row in known if row.pk not in held]

    def then(alias: str, rows: list[Job]) -> None:
        outcome.waiting_again += _wait_again(alias, rows)

    selection = queryset if selection is None else selection
    chosen = queryset.exclude(_failed_by_one_of(selection))
    outcome.changed, outcome.refused = _bulk(chosen, (Status.FAILED,), fields, then=then, movable=movable)
    return outcome


def _failed_by_one_of(selection: QuerySet[Job]) -> Q:
    """Records that a failed record of ``selection`` failed (``DependencyFailed``) and that no other
    failed or cancelled dependency holds back: retrying that one makes them wait for it again."""
    failed = selection.filter(status=Status.FAILED).values("pk")
    edges = Dependency.objects.filter(dependent=OuterRef("pk"), done=False, allow_failure=False)
    elsewhere = edges.filter(dependency__status__in=(Status.FAILED, Status.CANCELLED)).exclude(
        dependency__in=failed
    )
    return (
        Q(status=Status.FAILED, error_class=DEPENDENCY_FAILED)
        & Exists(edges.filter(dependency__in=failed))
        & ~Exists(elsewhere)
    )


def _keys_held(alias: str, keyed: Sequence[tuple[Any, str | None]]) -> set[Any]:
    """Of the records (id, unique key) about to become active, those whose key another active record
    holds, or an earlier one of ``keyed``: the database would refuse them (``jobs_unique_active_key``)."""
    keys = {key for _pk, key in keyed if key is not None}
    if not keys:
        return set()
    taken = set(
        Job.objects.using(alias)
        .filter(unique_key__in=keys, status__in=ACTIVE)
        .exclude(pk__in=[pk for pk, _key in keyed])
        .values_list("unique_key", flat=True)
    )
    held = set()
    for pk, key in keyed:
        if key is None:
            continue
        if key in taken:
            held.add(pk)
        taken.add(key)
    return held


def cancel(queryset: QuerySet[Job], push: Push | None = None) -> tuple[list[Job], int]:
    """waiting or deferred -> cancelled, for those records among ``queryset``, by a person. A started
    record is refused: its run is not stopped, and its outcome is recorded as usual. The jobs waiting
    for a cancelled one are cancelled with it, or released if they allowed it to fail (``push``)."""

    def tell_dependents(alias: str, rows: list[Job]) -> None:
        reasons = {row.pk: f"{row.function} ({row.pk}) was cancelled" for row in rows}
        _settle(alias, list(reasons), Status.CANCELLED, push, reasons)

    fields = {"status": Status.CANCELLED, "finished_at": timezone.now()}
    return _bulk(queryset, CANCELLABLE, fields, then=tell_dependents)


#: Times a bulk transition moves one chunk again after a job enqueued meanwhile took a unique key it
#: checked as free (``movable`` checks again each time).
KEY_RACE_ATTEMPTS = 3


def _bulk(
    queryset: QuerySet[Job],
    allowed: Iterable[str],
    fields: dict[str, Any],
    then: Callable[[str, list[Job]], None] | None = None,
    movable: Callable[[str, list[Job]], list[Job]] | None = None,
) -> tuple[list[Job], int]:
    """Lock the rows that may move (where the database can), move them, and test the status again in
    the UPDATE: two people, or one person's double submit, change a row once. ``then`` runs in the same
    transaction with the rows changed. ``movable`` keeps, of the rows in an allowed status, those that
    may move (it counts the others itself). Returns the rows changed and how many rows were refused
    for their status."""
    alias = queryset.db
    allowed = tuple(allowed)
    changed: list[Job] = []
    refused = 0
    with transaction.atomic(using=alias):
        pks = list(queryset.order_by().values_list("pk", flat=True).distinct())
        for chunk in _chunks(pks):
            rows = list(
                Job.objects.using(alias)
                .select_for_update()
                .filter(pk__in=chunk, status__in=allowed)
                .order_by("pk")
            )
            refused += len(chunk) - len(rows)
            for attempt in range(1, KEY_RACE_ATTEMPTS + 1):
                moving = rows if movable is None else movable(alias, rows)
                try:
                    with transaction.atomic(using=alias):
                        _move(alias, moving, allowed, fields, then)
                    break
                except IntegrityError:
                    if movable is None or attempt == KEY_RACE_ATTEMPTS:
                        raise
            changed.extend(moving)
    return changed, refused


def _move(
    alias: str,
    rows: list[Job],
    allowed: tuple[str, ...],
    fields: dict[str, Any],
    then: Callable[[str, list[Job]], None] | None,
) -> None:
    if not rows:
        return
    Job.objects.using(alias).filter(pk__in=[row.pk for row in rows], status__in=allowed).update(**fields)
    for row in rows:
        for name, value in fields.items():
            setattr(row, name, value)
    if then is not None:
        then(alias, rows)


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


# Workflows: what the end of a job does to the jobs that wait for it.


def settle_dependents(
    dependencies: Sequence[Job], push: Push | None = None, only: Sequence[Any] | None = None
) -> None:
    """Tell the dependents of jobs that have ended (read with their status and error) what the end
    was, as the transition that ended them does: for ``enqueue()``, whose new jobs (``only``) may
    depend on jobs that ended already, and for the reconciler, which finds ends never told. Changes
    nothing already told."""
    by_outcome: dict[str, list[Job]] = defaultdict(list)
    for record in dependencies:
        if record.status in (Status.FINISHED, Status.FAILED, Status.CANCELLED):
            by_outcome[record.status].append(record)
    for outcome, records in by_outcome.items():
        alias = _alias(records[0])
        reasons = {record.pk: _end_reason(record) for record in records}
        with transaction.atomic(using=alias):
            _settle(alias, list(reasons), outcome, push, reasons, only)


def _end_reason(record: Job) -> str:
    if record.status == Status.FAILED:
        return f"{record.function} ({record.pk}) failed: {record.error_class}: {record.error_message}"
    return f"{record.function} ({record.pk}) was {record.status}"


def settle_deleted(records: Sequence[Job], push: Push | None = None) -> None:
    """Before records are deleted: the jobs that still wait for them are cancelled, or released when
    they allowed them to fail, as if the records had been cancelled. Call it in the deleting
    transaction."""
    if not records:
        return
    alias = _alias(records[0])
    reasons = {r.pk: f"{r.function} ({r.pk}) was deleted" for r in records}
    with transaction.atomic(using=alias):
        _settle(alias, list(reasons), Status.CANCELLED, push, reasons)


def release_orphans(queryset: QuerySet[Job], push: Push | None = None) -> list[Job]:
    """deferred -> queued or scheduled, for the deferred records among ``queryset`` that no longer wait
    for anything (their last dependency was deleted without being told); returns those released."""
    alias = queryset.db
    with transaction.atomic(using=alias):
        pks = list(
            queryset.filter(status=Status.DEFERRED)
            .exclude(dependency_links__done=False)
            .values_list("pk", flat=True)
        )
        locked = list(
            Job.objects.using(alias)
            .select_for_update()
            .filter(pk__in=pks, status=Status.DEFERRED)
            .exclude(dependency_links__done=False)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        return _release(alias, locked, push)


def _settle(
    alias: str,
    ended: Sequence[Any],
    outcome: str,
    push: Push | None,
    reasons: Mapping[Any, str] | None = None,
    only: Sequence[Any] | None = None,
) -> None:
    """In the transaction that ended the jobs ``ended`` (ids) with ``outcome``: their edges that the end
    satisfies (a finish; any end where failure is allowed) are marked done and their dependents counted
    down, those at zero released; the other dependents, while deferred, fail (or are cancelled) with the
    reason, and their own dependents learn of it in turn. ``only``: the dependents to consider."""
    # Ids as the database gives them back (a worker knows its job's id as text).
    as_id = Job._meta.pk.to_python
    frontier = [as_id(pk) for pk in ended]
    outcome_of: dict[Any, str] = dict.fromkeys(frontier, outcome)
    reasons = {as_id(pk): reason for pk, reason in (reasons or {}).items()}
    released: list[Job] = []
    while frontier:
        edges = (
            Dependency.objects.using(alias).select_for_update().filter(dependency__in=frontier, done=False)
        )
        if only is not None:
            edges = edges.filter(dependent__in=only)
        rows = list(edges.order_by("pk").values_list("pk", "dependency_id", "dependent_id", "allow_failure"))
        satisfied = [row for row in rows if row[3] or outcome_of[row[1]] == Status.FINISHED]
        blocked = [row for row in rows if not (row[3] or outcome_of[row[1]] == Status.FINISHED)]
        released += _count_down(alias, satisfied)
        frontier = _fail_dependents(alias, blocked, outcome_of, reasons)
    if released and push is not None:
        transaction.on_commit(functools.partial(push, released), using=alias)


def _count_down(alias: str, edges: list[tuple]) -> list[Job]:
    """Mark ``edges`` done and count their dependents down; release those that reach zero."""
    if not edges:
        return []
    jobs = Job.objects.using(alias)
    Dependency.objects.using(alias).filter(pk__in=[edge[0] for edge in edges], done=False).update(done=True)
    counts = Counter(edge[2] for edge in edges)
    # Locked in one order, so that two ends counting down the same dependents cannot deadlock.
    dependents = list(
        jobs.select_for_update()
        .filter(pk__in=list(counts))
        .order_by("pk")
        .values_list("pk", "status", "dependencies_pending")
    )
    releasing = [
        pk for pk, status, pending in dependents if status == Status.DEFERRED and pending <= counts[pk]
    ]
    by_step: dict[int, list[Any]] = defaultdict(list)
    for pk, _status, _pending in dependents:
        if pk not in releasing:
            by_step[counts[pk]].append(pk)
    for step, pks in by_step.items():
        jobs.filter(pk__in=pks, dependencies_pending__gte=step).update(
            dependencies_pending=F("dependencies_pending") - step
        )
    return _release(alias, releasing, None)


def _release(alias: str, pks: list[Any], push: Push | None) -> list[Job]:
    """deferred -> queued (scheduled when its ``at`` or ``delay`` is still ahead), for locked records."""
    if not pks:
        return []
    now = timezone.now()
    jobs = Job.objects.using(alias)
    jobs.filter(pk__in=pks, status=Status.DEFERRED).update(
        status=Case(When(scheduled_for__gt=now, then=Value(Status.SCHEDULED)), default=Value(Status.QUEUED)),
        dependencies_pending=0,
        released_at=now,
    )
    released = list(jobs.filter(pk__in=pks))
    if push is not None:
        transaction.on_commit(functools.partial(push, released), using=alias)
    return released


def _fail_dependents(
    alias: str, edges: list[tuple], outcome_of: dict[Any, str], reasons: dict[Any, str]
) -> list[Any]:
    """deferred -> failed (or cancelled, when the dependency was cancelled) for the dependents of
    ``edges``, with the reason; returns those changed, whose own dependents are told next."""
    first_blocker: dict[Any, Any] = {}
    for _pk, dependency, dependent, _allowed in edges:
        first_blocker.setdefault(dependent, dependency)
    if not first_blocker:
        return []
    jobs = Job.objects.using(alias)
    locked = list(
        jobs.select_for_update()
        .filter(pk__in=list(first_blocker), status=Status.DEFERRED)
        .order_by("pk")
        .values_list("pk", "function")
    )
    now = timezone.now()
    changed = []
    failed: dict[Any, str] = {}
    for pk, function in locked:
        blocker = first_blocker[pk]
        outcome = Status.CANCELLED if outcome_of[blocker] == Status.CANCELLED else Status.FAILED
        message = f"Its dependency {reasons.get(blocker, blocker)}"[:MAX_REASON]
        jobs.filter(pk=pk, status=Status.DEFERRED).update(
            status=outcome, finished_at=now, error_class=DEPENDENCY_FAILED, error_message=message
        )
        if outcome == Status.FAILED:
            failed[pk] = message
        outcome_of[pk] = outcome
        reasons[pk] = (
            f"{function} ({pk}) was cancelled"
            if outcome == Status.CANCELLED
            else f"{function} ({pk}) failed: {DEPENDENCY_FAILED}: {message}"
        )
        changed.append(pk)
    if failed:
        transaction.on_commit(functools.partial(_announce_dependents_failed, alias, failed), using=alias)
    return changed


def _announce_dependents_failed(alias: str, messages: Mapping[Any, str]) -> None:
    """``job_failed`` for the jobs that a dependency's failure failed, once that is committed."""
    for record in Job.objects.using(alias).filter(pk__in=list(messages), status=Status.FAILED):
        signals.announce_failed(record, DependencyFailed(messages[record.pk]))


def _wait_again(alias: str, retried: list[Job]) -> int:
    """failed -> deferred, for the jobs that failed because one of ``retried`` failed and that no other
    failed or cancelled dependency holds back; then for theirs in turn. A job whose unique key another
    active job holds now stays failed. Returns how many wait again."""
    jobs = Job.objects.using(alias)
    frontier = [record.pk for record in retried]
    waiting = 0
    while frontier:
        candidates = set(
            Dependency.objects.using(alias)
            .filter(dependency__in=frontier, done=False, allow_failure=False)
            .filter(dependent__status=Status.FAILED, dependent__error_class=DEPENDENCY_FAILED)
            .values_list("dependent_id", flat=True)
        )
        held = set(
            Dependency.objects.using(alias)
            .filter(dependent__in=candidates, done=False, allow_failure=False)
            .filter(dependency__status__in=(Status.FAILED, Status.CANCELLED))
            .values_list("dependent_id", flat=True)
        )
        keyed = list(
            jobs.select_for_update()
            .filter(pk__in=candidates - held, status=Status.FAILED, error_class=DEPENDENCY_FAILED)
            .order_by("pk")
            .values_list("pk", "unique_key")
        )
        key_held = _keys_held(alias, keyed)
        ready = [pk for pk, _key in keyed if pk not in key_held]
        jobs.filter(pk__in=ready, status=Status.FAILED).update(
            status=Status.DEFERRED, finished_at=None, error_class="", error_message=""
        )
        waiting += len(ready)
        frontier = ready
    return waiting
