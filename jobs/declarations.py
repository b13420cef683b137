"""Schedules declared in code or in settings, each checked where it is declared.

In code, in an app's ``jobs`` module (imported by the workers and by ``migrate``)::

    @job(schedule="0 9 * * 1-5")               # every weekday at 9:00, settings.TIME_ZONE
    def morning_digest(): ...

    schedule(send_report, cron="0 3 * * *", args=["daily"], timezone="Europe/Paris")
    schedule(ping, every=timedelta(seconds=30), name="ping-often")

In settings, ``JOBS["SCHEDULES"] = {"nightly": {"function": "myapp.jobs.send_report", "cron": "0 3 * * *"}}``.

``jobs.schedules.sync`` writes what is declared to the ``Schedule`` table on ``migrate`` and when a worker
starts; the workers fire it from there, with the schedules added in the admin.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from . import registry, ticks
from .codec import decode_arguments, encode_arguments
from .conf import jobs_settings
from .exceptions import ArgumentUnavailable, InvalidArguments, InvalidSchedule, JobNotRegistered

if TYPE_CHECKING:
    from .decorator import JobFunction

#: The longest schedule name: the length of the ``Schedule.name`` column.
MAX_NAME_LENGTH = 100
SETTINGS_KEYS = {"function", "cron", "every", "args", "kwargs", "timezone", "catch_up"}


@dataclasses.dataclass(frozen=True)
class Declaration:
    """One schedule as code or settings declare it; ``args`` and ``kwargs`` are stored as encoded."""

    name: str
    function: str
    cron: str = ""
    every: timedelta | None = None
    args: list = dataclasses.field(default_factory=list)
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    timezone: str = ""
    catch_up: bool = True
    #: ``"code"`` or ``"settings"`` (``jobs.models.Source``).
    source: str = "code"


_declared: dict[str, Declaration] = {}


def schedule(
    job_function: JobFunction[Any, Any],
    *,
    cron: str | None = None,
    every: timedelta | float | None = None,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    name: str | None = None,
    timezone: str = "",
    catch_up: bool = True,
) -> Declaration:
    """Run a ``@job`` function at each tick of ``cron`` (read in ``timezone``, else settings.TIME_ZONE)
    or every ``every`` (a timedelta or seconds), with these arguments; named after the job unless
    ``name`` is given. Refuses, with ``InvalidSchedule``, what could not run."""
    function = getattr(job_function, "name", None)
    if not isinstance(function, str) or registry.lookup(function) is not job_function:
        raise InvalidSchedule(
            f"schedule() takes a function decorated with @job, not {job_function!r}", "function"
        )
    declaration = _declaration(
        name=name or function,
        function=function,
        cron=cron,
        every=every,
        args=args,
        kwargs=kwargs,
        timezone=timezone,
        catch_up=catch_up,
        source="code",
    )
    existing = _declared.get(declaration.name)
    if existing is not None and existing.function != declaration.function:
        raise InvalidSchedule(
            f"schedule {declaration.name!r} is already declared for {existing.function}", "name"
        )
    _declared[declaration.name] = declaration
    return declaration


def undeclare(name: str) -> None:
    """Forget a schedule declared in code (the next sync deletes it from the table)."""
    _declared.pop(name, None)


def declared() -> list[Declaration]:
    """Every schedule that code (each installed app's ``jobs`` module) and settings declare."""
    registry.discover()
    found = dict(_declared)
    for declaration in from_settings():
        if declaration.name in found:
            raise InvalidSchedule(
                f"schedule {declaration.name!r} is declared both in code and in JOBS['SCHEDULES']", "name"
            )
        found[declaration.name] = declaration
    return list(found.values())


def from_settings() -> list[Declaration]:
    """The schedules of ``JOBS["SCHEDULES"]``; ``InvalidSchedule`` names the entry at fault."""
    entries = jobs_settings.SCHEDULES
    if not isinstance(entries, Mapping):
        raise InvalidSchedule(f"JOBS['SCHEDULES'] must be a dict of name -> schedule, not {entries!r}")
    found = []
    for name, entry in entries.items():
        try:
            if not isinstance(entry, Mapping):
                raise InvalidSchedule("must be a dict with a 'function' and a 'cron' or 'every'")
            unknown = set(entry) - SETTINGS_KEYS
            if unknown:
                raise InvalidSchedule(
                    f"has unknown key(s) {', '.join(sorted(map(str, unknown)))} "
                    f"(known: {', '.join(sorted(SETTINGS_KEYS))})"
                )
            found.append(
                _declaration(
                    name=name,
                    function=entry.get("function"),
                    cron=entry.get("cron"),
                    every=entry.get("every"),
                    args=entry.get("args", ()),
                    kwargs=entry.get("kwargs"),
                    timezone=entry.get("timezone", ""),
                    catch_up=entry.get("catch_up", True),
                    source="settings",
                )
            )
        except InvalidSchedule as exc:
            raise InvalidSchedule(f"JOBS['SCHEDULES'][{name!r}]: {exc}", exc.field) from exc
    return found


def _declaration(
    *,
    name: Any,
    function: Any,
    cron: Any,
    every: Any,
    args: Any,
    kwargs: Any,
    timezone: Any,
    catch_up: Any,
    source: str,
) -> Declaration:
    if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME_LENGTH:
        raise InvalidSchedule(
            f"a schedule's name must be 1 to {MAX_NAME_LENGTH} characters, not {name!r}", "name"
        )
    if isinstance(every, int | float) and not isinstance(every, bool):
        every = timedelta(seconds=every)
    if not isinstance(args, list | tuple):
        raise InvalidSchedule(f"args must be a list, not {args!r}", "args")
    if kwargs is not None and not isinstance(kwargs, Mapping):
        raise InvalidSchedule(f"kwargs must be a dict, not {kwargs!r}", "kwargs")
    if not isinstance(catch_up, bool):
        raise InvalidSchedule(f"catch_up must be True or False, not {catch_up!r}", "catch_up")
    try:
        encoded_args, encoded_kwargs = encode_arguments(list(args), dict(kwargs or {}))
    except InvalidArguments as exc:
        raise InvalidSchedule(str(exc), exc.field or "args") from exc
    check_definition(
        function=function,
        cron=cron or "",
        every=every,
        timezone=timezone,
        args=encoded_args,
        kwargs=encoded_kwargs,
    )
    return Declaration(
        name=name,
        function=function,
        cron=cron or "",
        every=every,
        args=encoded_args,
        kwargs=encoded_kwargs,
        timezone=timezone,
        catch_up=catch_up,
        source=source,
    )


def check_definition(
    *,
    function: Any,
    cron: str,
    every: timedelta | None,
    timezone: Any,
    args: Any,
    kwargs: Any,
    known: bool = False,
) -> JobFunction[Any, Any]:
    """Refuse a schedule that could not run: a cron expression and an interval, or neither; a cron
    expression croniter cannot read; an interval under a second; an unknown time zone; a function that is
    not a registered job; arguments (as stored, encoded) that the function cannot take. Returns the job.

    A name from a form or settings is only looked up in the registry; a ``known`` one, read from a
    schedule already checked, may import its module, as a worker does for a job's record.
    """
    if bool(cron) == (every is not None):
        raise InvalidSchedule(
            "give a schedule either a cron expression or an interval, not both or neither", "cron"
        )
    if cron:
        ticks.check_cron(cron)
    else:
        assert every is not None
        ticks.check_every(every)
    if not isinstance(timezone, str):
        raise InvalidSchedule(f"timezone must be the name of a zone, not {timezone!r}", "timezone")
    ticks.zone(timezone)
    if not isinstance(function, str) or not function:
        raise InvalidSchedule(f"function must be the name of a registered job, not {function!r}", "function")
    try:
        job_function = registry.resolve(function) if known else registry.lookup(function)
    except JobNotRegistered as exc:
        raise InvalidSchedule(str(exc), "function") from exc
    _check_arguments(job_function, args, kwargs)
    return job_function


def _check_arguments(job_function: JobFunction[Any, Any], args: Any, kwargs: Any) -> None:
    """Refuse arguments (as stored, encoded) that do not decode, or that the function cannot take."""
    if not isinstance(args, list):
        raise InvalidSchedule(f"args must be a list, not {args!r}", "args")
    if not isinstance(kwargs, dict):
        raise InvalidSchedule(f"kwargs must be a dict, not {kwargs!r}", "kwargs")
    try:
        decoded_args, decoded_kwargs = decode_arguments(args, kwargs)
        job_function.check_arguments(decoded_args, decoded_kwargs)
    except InvalidArguments as exc:
        raise InvalidSchedule(str(exc), exc.field or "args") from exc
    except ArgumentUnavailable as exc:
        raise InvalidSchedule(str(exc), "args") from exc
    except (KeyError, ValueError, TypeError, ArithmeticError) as exc:
        # A value written by hand (the admin's JSON) that looks like a marker of ours and is not one.
        raise InvalidSchedule(f"the arguments do not decode: {exc!r}", "args") from exc
