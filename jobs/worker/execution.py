"""What runs inside ``manage.py rqworker``: claim the record, run the registered function, record the end.

On the happy path the ledger costs two statements: the claiming UPDATE and the finishing UPDATE (a job
that other jobs wait for finishes in a transaction that releases them, see ``jobs.transitions``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import threading
import traceback as tb
from collections.abc import Callable
from typing import Any

from django.db import DatabaseError, close_old_connections, router
from django.utils import timezone

from .. import context, signals, transitions
from ..codec import decode_arguments, encode
from ..dispatch import dispatch
from ..exceptions import (
    ABANDONED,
    InvalidArguments,
    JobNotRegistered,
    JobsError,
    PermanentFailure,
    RetryLater,
    qualified_name,
)
from ..models import Job
from ..registry import resolve
from ..transport.runner import Call, no_retry, retry_in
from ..transport.worker import current_rq_job
from . import reconnect

logger = logging.getLogger("jobs")

#: Errors that no retry can mend: the job fails at once whatever attempts it has left. Anything else a
#: job raises (a KeyError included) is retried while attempts remain.
PERMANENT_ERRORS = (JobNotRegistered, InvalidArguments, PermanentFailure)


def preload(call: Call | None) -> None:
    """Import a job's function now, in a forking worker's parent, so that the work horses it forks
    inherit the module instead of each importing it again."""
    if call is None:
        return
    with contextlib.suppress(JobsError):
        resolve(call.function)


def run_job(job_id: str, function: str, args: list, kwargs: dict, alias: str = "default") -> None:
    """The entry point of every RQ job pushed by `jobs` (see ``transport.runner.RUNNER``)."""
    close_old_connections()
    try:
        _run(job_id, function, args, kwargs, alias)
    finally:
        close_old_connections()


def _run(job_id: str, function: str, args: list, kwargs: dict, alias: str) -> None:
    rq_job = current_rq_job()
    record = unread_record(alias, job_id, function)
    worker_name = (rq_job.worker_name or "") if rq_job else ""
    # RQ's timeout for the job (an alarm) and a second SIGTERM raise wherever the run is, the claim and
    # the finish included, even after the database wrote them: the run's end is recorded all the same,
    # not left ``started`` until the reaper gives the run up as abandoned.
    started_at = timezone.now()
    claim = functools.partial(transitions.claim, record, worker_name=worker_name, started_at=started_at)
    try:
        attempt = reconnect.once_more_if_the_connection_died(
            alias,
            claim,
            again=lambda: transitions.attempt_claimed_by(record, worker_name, started_at) or claim(),
        )
    except BaseException as exc:
        interrupted = None
        with contextlib.suppress(Exception):
            interrupted = transitions.attempt_claimed_by(record, worker_name)
        if interrupted is not None:
            _record_failure(record, interrupted, rq_job, exc)
        elif rq_job is not None:
            # No attempt began: RQ fails its job (the record still waits, for the reconciler) rather
            # than retry it, which would spend one of the attempts the record has left on no run.
            no_retry(rq_job)
        raise
    if attempt is None:
        logger.info("Job %s is no longer waiting (cancelled or already run); skipped", job_id)
        return
    value = perform(record, attempt, args, kwargs, lambda: rq_job)
    finished_at = timezone.now()
    finish = functools.partial(
        transitions.finish, record, attempt, value, push=dispatch, finished_at=finished_at
    )

    def finish_again() -> bool:
        return transitions.finished_by(record, attempt, value, finished_at) or finish()

    try:
        finished = reconnect.once_more_if_the_connection_died(alias, finish, again=finish_again)
    except BaseException as exc:
        _record_failure(record, attempt, rq_job, exc)  # wins only if the finish was not written
        raise
    if not finished:
        if rq_job is not None:
            # RQ's job now belongs to the newer attempt: should RQ's own handling of this run fail
            # (its execution was cleaned up meanwhile), it must not retry it.
            no_retry(rq_job)
        log_stale_success(record, attempt)
        return
    signals.announce(signals.job_finished, record)


def unclaimed(call: Call) -> Job:
    """The record of a call, not read from the database (``unread_record``)."""
    return unread_record(call.alias, call.job_id, call.function)


def unread_record(alias: str, job_id: str, function: str) -> Job:
    """A job's record as the ORM would load it, not read from the database: the other fields are
    deferred and load only if the job asks for them. Its id is a ``UUID``, as on a record read from
    the database (what RQ gives is text), for the job and for the receivers of the signals."""
    return Job.from_db(alias, ["id", "function"], [Job._meta.pk.to_python(job_id), function])


def perform(record: Job, attempt: int, args: list, kwargs: dict, rq_job: Callable[[], Any]) -> Any:
    """Run a claimed record's function as ``attempt`` and return its result, encoded for the record; a
    failure is recorded (retrying or failed, the RQ job ``rq_job()`` gives told which) and raised again."""
    token = context.running(record, attempt)
    try:
        signals.job_started.send(sender=Job, job=record)
        target = resolve(record.function)
        call_args, call_kwargs = decode_arguments(args, kwargs)
        value = target.run(call_args, call_kwargs)
        if inspect.iscoroutine(value):
            # An ``async def`` job: awaited on an event loop of its own, in the thread that runs it.
            value = asyncio.run(value)
    except BaseException as exc:
        try:
            _record_failure(record, attempt, rq_job(), exc)
        except DatabaseError as db_exc:
            # The record stays started: the reaper gives the attempt up as abandoned, without this error.
            logger.warning(
                "Job %s attempt %d failed (%r); the database could not record it (%s), left to the reaper",
                record.pk,
                attempt,
                exc,
                db_exc,
            )
            raise
        raise
    finally:
        context.done(token)
    return _encode_result(record.function, value)


def log_stale_success(record: Job, attempt: int) -> None:
    logger.warning(
        "Job %s attempt %d succeeded after the record moved on (given up as abandoned, or taken by a "
        "newer attempt); the record keeps its own outcome and this result is dropped",
        record.pk,
        attempt,
    )


def _record_failure(record: Job, attempt: int, rq_job: Any, exc: BaseException) -> None:
    permanent = isinstance(exc, PERMANENT_ERRORS)
    retrying = bool(rq_job is not None and rq_job.retries_left and not permanent)
    delay = exc.delay if retrying and isinstance(exc, RetryLater) else None
    error_class, message = qualified_name(type(exc)), message_of(exc)
    in_main_thread = threading.current_thread() is threading.main_thread()
    if isinstance(exc, SystemExit | KeyboardInterrupt) and in_main_thread:
        # A second SIGTERM or SIGINT (RQ's cold shutdown) stopped a non-forking worker in the job (in a
        # job thread of a ``ThreadedWorker``, where no signal arrives, it is the job's own).
        error_class, message = ABANDONED, "The worker was stopped at once (cold shutdown) during this job."
    failure: dict[str, Any] = {
        "error_class": error_class,
        "error_message": message,
        "traceback": "".join(tb.format_exception(exc)),
        "retrying": retrying,
        "delay": delay,
        "push": dispatch,
        "failed_at": timezone.now(),
    }
    won = reconnect.once_more_if_the_connection_died(
        record._state.db or router.db_for_write(Job),
        functools.partial(transitions.fail_attempt, record, attempt, **failure),
        # Sent again, it first asks whether the first send wrote it: that send's answer may be lost.
        again=functools.partial(transitions.fail_attempt_again, record, attempt, **failure),
    )
    if (permanent or not won) and rq_job is not None:
        # RQ then fails its job instead of scheduling a retry: a permanent error, or a stale run whose
        # job a newer attempt owns.
        no_retry(rq_job)
    elif delay is not None:
        retry_in(rq_job, delay)
    if not won:
        logger.warning(
            "Job %s attempt %d failed after the record moved on (given up as abandoned, or taken by a "
            "newer attempt); the record keeps its own outcome and this error is dropped: %r",
            record.pk,
            attempt,
            exc,
        )
    elif retrying:
        logger.warning("Job %s attempt %d failed, will retry: %r", record.pk, attempt, exc)
    else:
        logger.error("Job %s failed after %d attempt(s): %r", record.pk, attempt, exc)
        signals.announce_failed(record, exc)


def message_of(exc: BaseException) -> str:
    """``str(exc)``, or what can be said of an exception whose ``__str__`` itself fails."""
    try:
        return str(exc)
    except Exception as failure:
        return f"<{type(exc).__name__} whose message cannot be read: {failure!r}>"


def _encode_result(function: str, value: Any) -> Any:
    """The result as the record keeps it: JSON through the codec, else its ``repr()``, else a stand-in
    that names its type. Never raises: the job ran, and its end must be recorded whatever it returned."""
    try:
        return encode(value, "result")
    except Exception:  # ArgumentNotSerializable, or whatever the value's own methods raise
        logger.warning("Result of %s is not JSON serialisable; its repr() is stored instead", function)
    try:
        return repr(value)
    except Exception as failure:  # an int of more than 4,300 digits, a __repr__ that raises
        return f"<{type(value).__qualname__} whose repr() cannot be read: {message_of(failure)}>"
