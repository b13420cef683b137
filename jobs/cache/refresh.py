"""The job that refreshes a stale entry of a ``@cached`` function on a worker."""

from __future__ import annotations

from typing import Any

from django.utils.module_loading import import_string

from ..decorator import job
from ..registry import internal
from . import keys
from .stats import flush

#: The ``@cached`` functions that serve stale entries, by dotted path, then by namespace and version
#: (one function may be cached twice, with two policies): what a refresh job may run.
refreshable: dict[str, dict[tuple[str, int], Any]] = {}


def register_refreshable(function: Any) -> None:
    """Make a ``@cached`` function one a refresh job can name: by its path, namespace and version."""
    refreshable.setdefault(function.target, {})[function.namespace, function.version] = function


def _one_per_call(
    target: str, args: list, kwargs: dict, namespace: str | None = None, version: int | None = None
) -> str:
    return f"jobs.cache.refresh:{keys.digest([target, args, kwargs, namespace, version])}"


@internal  # ``target`` is imported: only the cache may name it, never a request
@job(unique_key=_one_per_call)
def refresh_entry(
    target: str, args: list, kwargs: dict, namespace: str | None = None, version: int | None = None
) -> None:
    """Compute ``target(*args, **kwargs)`` again and store it, through the ``@cached`` wrapper of
    ``target`` with that namespace and version (a job enqueued without them: the only wrapper)."""
    try:
        import_string(target)  # registers the function, if its module was not imported in this process
    except ImportError as exc:
        raise LookupError(f"{target!r} cannot be imported: {exc}") from exc
    function = _wrapper(target, namespace, version)
    try:
        function.refresh(*args, **kwargs)
    finally:
        flush()


def _wrapper(target: str, namespace: str | None, version: int | None) -> Any:
    wrappers = refreshable.get(target, {})
    if not wrappers:
        raise LookupError(f"{target!r} is not a @cached function")
    if namespace is None or version is None:
        if len(wrappers) == 1:
            return next(iter(wrappers.values()))
        raise LookupError(f"{target!r} is cached by {len(wrappers)} wrappers, and the job does not say which")
    function = wrappers.get((namespace, version))
    if function is None:
        raise LookupError(f"{target!r} has no @cached wrapper of namespace {namespace!r}, version {version}")
    return function
