"""The registry of functions a worker is allowed to run, filled by ``@job``."""

from __future__ import annotations

import importlib
import threading
from typing import TYPE_CHECKING, Any

from django.utils.module_loading import autodiscover_modules

from .exceptions import InvalidJobDefinition, JobNotRegistered

if TYPE_CHECKING:
    from .decorator import JobFunction

_registry: dict[str, JobFunction[Any, Any]] = {}
#: Jobs of the app's own that a request may not name (``internal``).
_internal: set[str] = set()
_discovered = threading.Event()
_discovering = threading.Lock()


def register(job_function: JobFunction[Any, Any]) -> JobFunction[Any, Any]:
    """Add a job under its name; the same function registered again (a module reloaded) replaces it."""
    existing = _registry.get(job_function.name)
    if existing is not None and existing.func.__code__ is not getattr(job_function.func, "__code__", None):
        raise InvalidJobDefinition(f"another function is already registered as job {job_function.name!r}")
    _registry[job_function.name] = job_function
    return job_function


def internal(job_function: JobFunction[Any, Any]) -> JobFunction[Any, Any]:
    """Keep one of the app's own jobs out of reach of requests: ``lookup`` refuses its name, so that
    neither the JSON API nor a schedule can enqueue it, and ``names`` leaves it out. Code still
    enqueues it, and a worker still runs it."""
    _internal.add(job_function.name)
    return job_function


def registered(name: str) -> JobFunction[Any, Any] | None:
    """The job registered as ``name`` in this process, or None; nothing is imported."""
    return _registry.get(name)


def lookup(name: str) -> JobFunction[Any, Any]:
    """The registered job called ``name``, for a name that comes from a request.

    Only the registry is consulted, never a module the name points at. The first miss in a process
    imports each installed app's ``jobs`` module once, as the admin does with ``admin`` modules. The
    app's own jobs marked ``internal`` are refused as if they were not registered.
    """
    found = _registry.get(name)
    if found is None and not _discovered.is_set():
        discover()
        found = _registry.get(name)
    if found is None or name in _internal:
        raise JobNotRegistered(f"{_shorten(name)} is not a registered job")
    return found


def discover() -> None:
    """Import each installed app's ``jobs`` module, once per process."""
    if _discovered.is_set():
        return
    with _discovering:
        if not _discovered.is_set():
            autodiscover_modules("jobs")
            _discovered.set()


def names() -> list[str]:
    """The names of every job a request may name (``lookup``), each installed app's ``jobs`` module
    imported first."""
    discover()
    return sorted(name for name in _registry if name not in _internal)


def resolve(name: str) -> JobFunction[Any, Any]:
    """The registered job called ``name``, importing its module if this process has not yet.

    For names read from a job's record, which ``@job`` wrote; a name from a request goes to ``lookup``.
    """
    found = _registry.get(name)
    if found is not None:
        return found
    module_name = name.rpartition(".")[0]
    while module_name:
        try:
            importlib.import_module(module_name)
            break
        except ImportError:
            module_name = module_name.rpartition(".")[0]
    found = _registry.get(name)
    if found is None:
        raise JobNotRegistered(
            f"{name!r} is not a registered job: it does not exist, cannot be imported, or lacks @job"
        )
    return found


def _shorten(name: str, length: int = 100) -> str:
    """``name`` quoted, cut to ``length`` characters, for messages that echo a request."""
    return repr(name if len(name) <= length else name[:length] + "…")
