"""The ``Schedule`` table kept in step with what code and settings declare, and a schedule's run on demand.

``sync()`` runs after ``migrate`` and when a worker starts. A declared schedule's definition (function,
cron expression or interval, zone, arguments, catch-up) is the declaration's; whether it is enabled is
the table's, so that a schedule disabled in the admin stays disabled across deploys. A schedule that code
or settings no longer declare is deleted (its runs keep their records). Schedules added in the admin are
left alone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db import router, transaction
from django.utils import timezone

from . import declarations
from . import enqueue as _enqueue
from .codec import decode_arguments
from .exceptions import JobsError
from .models import Job, Schedule, Source

if TYPE_CHECKING:
    from .decorator import JobFunction

logger = logging.getLogger("jobs")

#: The fields a declaration owns; a sync writes them when they differ.
DECLARED_FIELDS = ("function", "cron", "every", "args", "kwargs", "timezone", "catch_up", "source")


@dataclass
class Synced:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)


def sync(using: str | None = None) -> Synced:
    """Write the declared schedules to the table; ``InvalidSchedule`` if one cannot run."""
    alias = using or router.db_for_write(Schedule)
    wanted = {declaration.name: declaration for declaration in declarations.declared()}
    outcome = Synced()
    now = timezone.now()
    with transaction.atomic(using=alias):
        rows = Schedule.objects.using(alias).select_for_update()
        existing = {row.name: row for row in rows.filter(name__in=wanted) | rows.declared()}
        for name, declaration in wanted.items():
            row = existing.get(name)
            values = {key: getattr(declaration, key) for key in DECLARED_FIELDS}
            if row is None:
                row = Schedule(name=name, **values)
                row.next_tick = row.first_tick_after(now)
                row.save(using=alias, force_insert=True)
                outcome.created.append(name)
            elif any(getattr(row, key) != value for key, value in values.items()):
                timing_changed = any(
                    getattr(row, key) != values[key] for key in ("cron", "every", "timezone")
                )
                for key, value in values.items():
                    setattr(row, key, value)
                if timing_changed:
                    row.next_tick = row.first_tick_after(now)
                row.save(using=alias)
                outcome.updated.append(name)
        stale = [name for name, row in existing.items() if name not in wanted and row.source != Source.ADMIN]
        if stale:
            Schedule.objects.using(alias).filter(name__in=stale).delete()
            outcome.deleted.extend(stale)
    for kind in ("created", "updated", "deleted"):
        names = getattr(outcome, kind)
        if names:
            logger.info("Schedules %s: %s", kind, ", ".join(sorted(names)))
    written = Schedule.objects.using(alias).filter(name__in=outcome.created + outcome.updated)
    for name in written.filter(next_tick=None).values_list("name", flat=True):
        logger.warning("Schedule %r has no tick after now (its cron's years passed): it never fires", name)
    return outcome


def sync_after_migrate(*, using: str = "default", apps: Any = None, **kwargs: Any) -> None:
    """``post_migrate`` receiver: sync on the database just migrated, if it holds the table (not after
    ``migrate jobs 0001``, nor ``migrate other_app`` on a database where `jobs` has no tables yet)."""
    if apps is not None:
        try:
            apps.get_model("jobs", "Schedule")
        except LookupError:
            return
    if router.allow_migrate_model(using, Schedule):
        sync(using)


def run_now(schedule: Schedule) -> Job:
    """Run the schedule once now, outside its ticks (a person's request); the run has no tick.

    Refused (``JobsError``) while an earlier such run of the schedule still waits, so that a double
    submit runs it once.
    """
    alias = schedule._state.db or router.db_for_write(Schedule)
    with transaction.atomic(using=alias):
        locked = Schedule.objects.using(alias).select_for_update().get(pk=schedule.pk)
        if Job.objects.using(alias).waiting().filter(schedule=locked, tick__isnull=True).exists():
            raise JobsError(f"a run of schedule {locked.name!r} asked for earlier is still waiting")
        return enqueue_run(locked, locked.job_function(known=True), tick=None)


def enqueue_run(schedule: Schedule, job_function: JobFunction[Any, Any], tick: datetime | None) -> Job:
    """Record (and push on commit) the schedule's run for ``tick``, with the schedule's arguments.

    Raises ``IntegrityError`` when that tick already has its run.
    """
    alias = schedule._state.db or router.db_for_write(Schedule)
    args, kwargs = decode_arguments(list(schedule.args), dict(schedule.kwargs))
    fields = {"schedule_id": schedule.pk, "tick": tick}
    return _enqueue.enqueue(job_function.using(using=alias), args, kwargs, fields=fields)
