"""The job that refreshes a stale entry of a ``@cached`` function on a worker."""

from __future__ import annotations

from typing import Any

from django.utils.module_loading import import_string

from ..registry import job
from . import keys
from .stats import flush


def _one_per_call(target: str, args: list, kwargs: dict) -> str:
    return f"jobs.cache.refresh:{keys.digest([target, args, kwargs])}"


@job(unique_key=_one_per_call)
def refresh_entry(target: str, args: list, kwargs: dict) -> None:
    """Compute ``target(*args, **kwargs)`` again and store it; ``target`` is a ``@cached`` function."""
    from .decorator import CachedFunction

    try:
        function: Any = import_string(target)
    except ImportError as exc:
        raise LookupError(f"{target!r} cannot be imported: {exc}") from exc
    if not isinstance(function, CachedFunction):
        raise LookupError(f"{target!r} is not a @cached function")
    try:
        function.refresh(*args, **kwargs)
    finally:
        flush()
