"""The registry of functions a worker is allowed to run, filled by ``@job``."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .exceptions import InvalidJobDefinition, JobNotRegistered

if TYPE_CHECKING:
    from .decorator import JobFunction

_registry: dict[str, JobFunction[Any, Any]] = {}


def register(job_function: JobFunction[Any, Any]) -> JobFunction[Any, Any]:
    """Add a job under its name; the same function registered again (a module reloaded) replaces it."""
    existing = _registry.get(job_function.name)
    if existing is not None and existing.func.__code__ is not getattr(job_function.func, "__code__", None):
        raise InvalidJobDefinition(f"another function is already registered as job {job_function.name!r}")
    _registry[job_function.name] = job_function
    return job_function


def resolve(name: str) -> JobFunction[Any, Any]:
    """The registered job called ``name``, importing its module if this process has not yet."""
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
