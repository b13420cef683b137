"""The job running in this context, and the progress it reports: the API that job code calls."""

from __future__ import annotations

import contextvars

from .exceptions import JobsError
from .models import Job

_current: contextvars.ContextVar[Job | None] = contextvars.ContextVar("jobs_current", default=None)


def current_job() -> Job | None:
    """The record of the job running in this context, or None outside a job."""
    return _current.get()


def running(record: Job) -> contextvars.Token[Job | None]:
    """Make ``record`` the current job (the worker calls this around a run); returns the reset token."""
    return _current.set(record)


def done(token: contextvars.Token[Job | None]) -> None:
    _current.reset(token)


def set_progress(percent: float, message: str = "") -> bool:
    """Record how far the running job is (0-100) and what it is doing.

    Returns False, and does nothing, when called outside a job (say, when the job's function is
    called directly in a test), so job code need not care where it runs.
    """
    if not isinstance(percent, int | float) or isinstance(percent, bool) or not 0 <= percent <= 100:
        raise JobsError(f"progress must be a number from 0 to 100, not {percent!r}")
    record = current_job()
    if record is None:
        return False
    Job.objects.using(record._state.db).filter(pk=record.pk).update(
        progress=percent, progress_message=str(message)[:255]
    )
    record.progress, record.progress_message = percent, str(message)[:255]
    return True
