"""Background jobs for Django on RQ, with a durable record of every job, and a cache-aside decorator."""

from typing import TYPE_CHECKING

__all__ = ["current_job", "job", "set_progress"]

if TYPE_CHECKING:
    from .execution import current_job
    from .progress import set_progress
    from .registry import job


def __getattr__(name: str):
    if name == "job":
        from .registry import job

        return job
    if name == "set_progress":
        from .progress import set_progress

        return set_progress
    if name == "current_job":
        from .execution import current_job

        return current_job
    raise AttributeError(f"module 'jobs' has no attribute {name!r}")
