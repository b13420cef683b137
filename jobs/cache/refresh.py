"""The job that refreshes a stale entry of a ``@cached`` function on a worker."""

from __future__ import annotations

from typing import Any

from django.utils.module_loading import import_string

from ..decorator import job
from ..registry import internal
from . import keys
from .stats import flush

#: The ``@cached`` functions that serve stale entries, by dotted path: what a refresh job may run.
refreshable: dict[str, Any] = {}


def _one_per_call(target: str, args: list, kwargs: dict) -> str:
    return f"jobs.cache.refresh:{keys.digest([target, args, kwargs])}"


@internal  # ``target`` is imported: only the cache may name it, never a request
@job(unique_key=_one_per_call)
def refresh_entry(target: str, args: list, kwargs: dict) -> None:
    """Compute ``target(*args, **kwargs)`` again and store it; ``target`` is a ``@cached`` function."""
    try:
        import_string(target)  # registers the function, if its module was not imported in this process
    except ImportError as exc:
        raise LookupError(f"{target!r} cannot be imported: {exc}") from exc
    function = refreshable.get(target)
    if function is None:
        raise LookupError(f"{target!r} is not a @cached function")
    try:
        function.refresh(*args, **kwargs)
    finally:
        flush()
