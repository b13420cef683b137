"""Background jobs for Django on RQ, with a durable record of every job, and a cache-aside decorator."""

from typing import TYPE_CHECKING

from .exceptions import PermanentFailure, RetryLater

__all__ = [
    "PermanentFailure",
    "RetryLater",
    "allow_failure",
    "current_job",
    "dependency_results",
    "job",
    "schedule",
    "set_progress",
]

if TYPE_CHECKING:
    from .context import current_job, dependency_results, set_progress
    from .declarations import schedule
    from .decorator import job
    from .options import allow_failure


def __getattr__(name: str):
    # Lazy, so that ``import jobs`` (INSTALLED_APPS) loads no model before Django's app registry is ready.
    if name == "job":
        from .decorator import job

        return job
    if name == "schedule":
        from .declarations import schedule

        return schedule
    if name in ("current_job", "set_progress", "dependency_results"):
        from . import context

        return getattr(context, name)
    if name == "allow_failure":
        from .options import allow_failure

        return allow_failure
    raise AttributeError(f"module 'jobs' has no attribute {name!r}")
