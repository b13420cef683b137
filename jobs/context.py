"""The job running in this context, and the progress it reports: the API that job code calls."""

from __future__ import annotations

import contextvars
from typing import Any, NamedTuple

from . import transitions
from .codec import UNSTORABLE, decode
from .exceptions import JobsError
from .models import Dependency, Job


class _Run(NamedTuple):
    record: Job
    #: The attempt this run is, as its claim returned it: what its progress reports are conditional on.
    attempt: int


_current: contextvars.ContextVar[_Run | None] = contextvars.ContextVar("jobs_current", default=None)


def current_job() -> Job | None:
    """The record of the job running in this context, or None outside a job."""
    run = _current.get()
    return None if run is None else run.record


def current_attempt() -> int | None:
    """The attempt that the job running in this context is (1 for its first run), or None outside a job."""
    run = _current.get()
    return None if run is None else run.attempt


def running(record: Job, attempt: int) -> contextvars.Token[_Run | None]:
    """Make ``record``, at ``attempt``, the current job (the worker calls this around a run); returns
    the reset token."""
    return _current.set(_Run(record, attempt))


def done(token: contextvars.Token[_Run | None]) -> None:
    _current.reset(token)


def set_progress(percent: float, message: str = "") -> bool:
    """Record how far the running job is (0-100) and what it is doing.

    Returns False, and does nothing, when called outside a job (say, when the job's function is
    called directly in a test), so job code need not care where it runs; and when this run is no longer
    the job's current attempt (its worker was judged dead and a newer attempt took the job).
    """
    if not isinstance(percent, int | float) or isinstance(percent, bool) or not 0 <= percent <= 100:
        raise JobsError(f"progress must be a number from 0 to 100, not {percent!r}")
    text = str(message)[:255]
    found = UNSTORABLE.search(text)
    if found is not None:
        raise JobsError(
            f"the progress message holds the character {found.group()!r} at position {found.start()}, "
            "which not every database can store"
        )
    run = _current.get()
    if run is None:
        return False
    return transitions.report_progress(run.record, run.attempt, percent, text)


def dependency_results() -> list[Any]:
    """The results of the running job's dependencies (``depends_on``), in the order they were given:
    how a job in a chain or a group's callback reads what the jobs before it returned, as they returned
    it (dates, Decimals, UUIDs; a model instance read again). A dependency that failed or was
    cancelled, and was allowed to, gives None, as one deleted since. An empty list outside a job.
    """
    run = _current.get()
    if run is None:
        return []
    record = run.record
    results = [decode(result) for result in record.dependencies().values_list("result", flat=True)]
    if len(results) >= record.dependencies_total:
        return results
    # Some were deleted (their links with them): each result left stays in its place, the others None.
    placed: list[Any] = [None] * record.dependencies_total
    links = Dependency.objects.using(record._state.db).filter(dependent=record)
    for position, result in links.values_list("position", "dependency__result"):
        if position < len(placed):
            placed[position] = decode(result)
    return placed
