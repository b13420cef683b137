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
_discovered = threading.Event()
_discovering = threading.Lock()


def register(job_function: JobFunction[Any, Any]) -> JobFunction[Any, Any]:
    """Add a job under its name; the same function registered again (a module reloaded) replaces it."""
    existing = _registry.get(job_function.name)
    if existing is not None and existing.func.__code__ is not getattr(job_function.func, "__code__", None):
        raise InvalidJobDefinition(f"another function is already registered as job {job_function.name!r}")
    _registry[job_function.name] = job_function
    return job_function


def registered(name: str) -> JobFunction[Any, Any] | None:
    """The job registered as ``name`` in this process, or None; nothing is imported."""
    return _registry.get(name)


def lookup(name: str) -> JobFunction[Any, Any]:
    """The registered job called ``name``, for a name that comes from a request.

    Only the registry is consulted, never a module the name points at. The first miss in a process
    imports each installed app's ``jobs`` module once, as the admin does with ``admin`` modules.
    """
    found = _registry.get(name)
    if found is None and not _discovered.is_set():
        discover()
        found = _registry.get(name)
    if found is None:
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
    """The names of every registered job, each installed app's ``jobs`` module imported first."""
    discover()
    return sorted(_registry)


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
